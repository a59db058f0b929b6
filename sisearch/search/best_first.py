"""`best_first`: Tree-PLV's best-first tree construction (research/algorithms.md §5), one generator per problem.

At the current node, sample `children` (k) next steps. Score each child by look-ahead: the fraction of
`rollouts` (N) completions from it that the REWARDER judges correct (score >= `correct_threshold`); a
child that already finishes the solution is judged on its own score. Expand the best child (ties: the
earlier one) and repeat until the chain finishes. Every child keeps its look-ahead value and its rollouts
in `metadata`, so builders can form Tree-PLV's sibling pairs (R(y+) - R(y-) >= alpha).
"""

from __future__ import annotations

from dataclasses import dataclass

from sisearch.registry import register
from sisearch.search.answers import check_rule
from sisearch.search.base import SearchGenerator, Searcher
from sisearch.checks import require_at_least
from sisearch.search.requests import Expand, Rollout, Score
from sisearch.search.tree import Node, Tree
from sisearch.tasks.base import Problem

LOOKAHEAD = "lookahead"
ROLLOUTS = "rollouts"
EXPANDED = "best_first_expanded"


@dataclass
class BestFirstConfig:
    name: str = "best_first"
    children: int = 4  # k next steps sampled at each expanded node
    rollouts: int = 8  # N completions per child for its look-ahead value (Tree-PLV: 8)
    correct_threshold: float = 0.5  # a rollout counts as correct when the rewarder scores it at least this
    max_steps: int = 16  # expansions along the chain
    keep_rollouts: bool = True  # store each rollout's text and score on its child (for builders)
    temperature: float = 1.0  # sampling temperature of the policy (steps and rollouts)
    answer_rule: str = "highest_value"  # highest_value | majority | weighted_vote

    def __post_init__(self) -> None:
        require_at_least(self, 1, "children", "rollouts", "max_steps")
        check_rule(self.answer_rule)


def lookahead_value(scores: list[float], threshold: float) -> float:
    """`R = (1/N) * #{rollouts scored >= threshold}`."""
    if not scores:
        raise ValueError("lookahead_value: no rollout scores")
    return sum(1 for s in scores if s >= threshold) / len(scores)


def best_index(values: list[float]) -> int:
    """The index of the highest value; the first of equals."""
    return max(range(len(values)), key=lambda i: values[i])


@register("searcher", "best_first", schema=BestFirstConfig)
class BestFirst(Searcher):
    def __init__(self, cfg: BestFirstConfig):
        self.cfg = cfg
        self.answer_rule = cfg.answer_rule

    def search(self, problem: Problem, tree: Tree) -> SearchGenerator:
        cfg = self.cfg
        node = tree.root
        for _ in range(cfg.max_steps):
            children = yield Expand(node, n=cfg.children, temperature=cfg.temperature)
            if not children:
                break
            open_children = [c for c in children if not c.terminal]
            results = (yield [Rollout(c, cfg.rollouts, cfg.temperature) for c in open_children]) if open_children else []
            # A rollout's end is judged by the rewarder through a detached finished node: it points at its
            # child (so the rewarder sees the whole path) but is not attached to the tree.
            ends = {
                id(c): [
                    Node(step=r.text, state=c.state + r.text, prior_logprob=r.logprob, num_tokens=r.num_tokens,
                         terminal=True, verdict=r.verdict, parent=c)
                    for r in rollouts
                ]
                for c, rollouts in zip(open_children, results)
            }
            finished = [c for c in children if c.terminal]
            to_score = finished + [e for c in open_children for e in ends[id(c)]]
            scores = yield Score(to_score)
            by_node = dict(zip(map(id, to_score), scores))
            values = []
            for child in children:
                judged = [by_node[id(child)]] if child.terminal else [by_node[id(e)] for e in ends[id(child)]]
                value = lookahead_value(judged, cfg.correct_threshold)
                child.value = child.q = value
                child.reward = by_node[id(child)] if child.terminal else 0.0
                child.visits = len(judged)
                child.metadata[LOOKAHEAD] = value
                if cfg.keep_rollouts and not child.terminal:
                    child.metadata[ROLLOUTS] = [
                        {"text": e.step, "score": by_node[id(e)], "num_tokens": e.num_tokens} for e in ends[id(child)]
                    ]
                values.append(value)
            node.visits += sum(c.visits for c in children)
            node = children[best_index(values)]
            node.metadata[EXPANDED] = True
            if node.terminal:
                break
