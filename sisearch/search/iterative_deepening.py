"""`iterative_deepening`: ID-Sampling (research/algorithms.md §7), one generator per problem.

Each of `samples` (N) solutions is generated in segments whose token budgets grow geometrically,
`b_k = first_budget * growth^k`, until `max_tokens` in all. At each segment boundary that the solution did
not finish by, a reflection trigger (default `Wait:`, the tiny model's own self-correction idiom) is appended
as a node of its own, and the model continues after it. A segment cut mid-step is first completed to the
step delimiter (`boundary`), so the trigger starts a fresh line as it does in the model's training data.
The finished samples are scored by the rewarder and aggregated by the answer rule; the answer is
re-extracted from the last `A:` line, so a reflection after an answer counts with its corrected answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sisearch.registry import register
from sisearch.search.answers import check_rule
from sisearch.search.base import SearchGenerator, Searcher
from sisearch.checks import require_at_least, require_text
from sisearch.search.requests import Expand, Score
from sisearch.search.tree import Node, Tree
from sisearch.tasks.base import Problem

TRIGGER = "trigger"
REFLECTIONS = "reflections"


@dataclass
class IterativeDeepeningConfig:
    name: str = "iterative_deepening"
    samples: int = 4  # N: solutions sampled per problem
    first_budget: int = 12  # b0: tokens in the first segment
    growth: float = 2.0  # gamma: each segment's budget is this times the previous one
    max_tokens: int = 96  # B_max: token budget of one sample across its segments
    # Appended at each boundary; must match the model's own reflection idiom (arith's SFT data has Wait:<step>).
    trigger: str = "Wait:"
    boundary: str = "\n"  # a trigger follows this text (the task's step delimiter); "" inserts it anywhere
    temperature: float = 1.0  # sampling temperature of the policy
    answer_rule: str = "weighted_vote"  # highest_value | majority | weighted_vote

    def __post_init__(self) -> None:
        require_at_least(self, 1, "samples")
        require_text(self, "trigger")
        segment_budgets(self.first_budget, self.growth, self.max_tokens)  # its own check of the three
        check_rule(self.answer_rule)


def segment_budgets(first: int, growth: float, max_tokens: int) -> list[int]:
    """`b_k = round(first * growth^k)`, the last one cut so that the budgets sum to `max_tokens`."""
    if first < 1 or growth < 1.0 or max_tokens < 1:
        raise ValueError(
            f"segment_budgets: need first >= 1, growth >= 1 and max_tokens >= 1; got {first}, {growth}, {max_tokens}"
        )
    budgets: list[int] = []
    used, k = 0, 0
    while used < max_tokens:
        budget = min(int(first * growth**k + 0.5), max_tokens - used)  # round half up, not to even
        budgets.append(budget)
        used += budget
        k += 1
    return budgets


def trigger_positions(budgets: list[int]) -> list[int]:
    """Token counts at which triggers land: the running sums of all budgets but the last."""
    positions, total = [], 0
    for budget in budgets[:-1]:
        total += budget
        positions.append(total)
    return positions


def fan_out(workers: list[SearchGenerator]) -> SearchGenerator:
    """Run several request generators side by side: each round yields one list holding every live worker's
    next request, so the scheduler batches them together; returns when all workers are done."""
    pending: dict[int, Any] = {}
    for i, worker in enumerate(workers):
        try:
            pending[i] = next(worker)
        except StopIteration:
            pass
    while pending:
        order = list(pending)
        answers = yield [pending[i] for i in order]
        pending = {}
        for i, answer in zip(order, answers):
            try:
                pending[i] = workers[i].send(answer)
            except StopIteration:
                pass


@register("searcher", "iterative_deepening", schema=IterativeDeepeningConfig)
class IterativeDeepening(Searcher):
    def __init__(self, cfg: IterativeDeepeningConfig):
        self.budgets = segment_budgets(cfg.first_budget, cfg.growth, cfg.max_tokens)
        self.cfg = cfg
        self.answer_rule = cfg.answer_rule

    def search(self, problem: Problem, tree: Tree) -> SearchGenerator:
        cfg = self.cfg
        # The first segments of all samples share one prefill; then each sample goes on by itself.
        firsts = yield self._segment(tree.root, 0, cfg.samples, cfg.max_tokens)
        ends: list[Node] = []
        yield from fan_out([self._continue(first, ends) for first in firsts])
        scores = yield Score(ends)
        for end, score in zip(ends, scores):
            end.value = end.reward = end.q = score
            end.visits = 1
            end.metadata[REFLECTIONS] = sum(1 for n in end.path() if n.metadata.get(TRIGGER))
        tree.root.visits = len(ends)

    def _segment(self, node: Node, k: int, n: int, remaining: int) -> Expand:
        last = k >= len(self.budgets) - 1
        budget = max(1, min(self.budgets[min(k, len(self.budgets) - 1)], remaining))
        # The last segment is an ordinary whole continuation, so a sample always ends in a finished node.
        return Expand(node, n=n, temperature=self.cfg.temperature, whole=True, max_new_tokens=budget, segment=not last)

    def _continue(self, node: Node, ends: list[Node]) -> SearchGenerator:
        cfg = self.cfg
        used, k = node.num_tokens, 0
        while not node.terminal:
            if cfg.boundary and not node.state.endswith(cfg.boundary):
                (node,) = yield Expand(node, n=1, temperature=cfg.temperature)  # finish the cut step
                used += node.num_tokens
                if node.terminal:
                    break
            trigger = node.add_child(Node(step=cfg.trigger, state=node.state + cfg.trigger, metadata={TRIGGER: True}))
            k += 1
            (node,) = yield self._segment(trigger, k, 1, cfg.max_tokens - used)
            used += node.num_tokens
        ends.append(node)
