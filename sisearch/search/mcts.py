"""`mcts`: MCTS-DPO's tree search (research/algorithms.md §1.1), one generator per problem.

An iteration descends by PUCT (length-penalised step prior) to a leaf, then repeatedly expands the leaf
(`width` sampled steps, scored by the rewarder), PUCT-selects one of the new children and goes on, until
a finished solution or `depth_limit` steps below the search root (with `complete_at_depth_limit`, an unfinished
node there is completed in one whole continuation, so the backup carries a checked outcome); finally it backs up along the path with
MCTS-DPO's visit-weighted rule. With `commit`, the search moves root by root like AlphaZero: `simulations`
iterations (times `first_root_factor` at the first root), then commit to one child and search again from it.
The math lives in `puct.py`.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

from sisearch.registry import register
from sisearch.search import puct
from sisearch.search.answers import check_rule
from sisearch.search.base import SearchGenerator, Searcher
from sisearch.checks import require_at_least, require_choice
from sisearch.search.requests import Expand, Score
from sisearch.search.tree import Node, Tree, Verdict
from sisearch.tasks.base import Problem


@dataclass
class MCTSConfig:
    name: str = "mcts"
    simulations: int = 8  # K: iterations per move with `commit`, or in total without (MCTS-DPO on math: 64)
    first_root_factor: int = 4  # MCTS-DPO gives the episode's first root 4K iterations
    width: int = 2  # n_actions: sampled children per expansion
    root_width: int = 2  # n_init_actions: children of the empty solution
    depth_limit: int | None = 3  # d: an iteration stops this many steps below the search root (None: at the end)
    force_after: int | None = None  # a state with more steps than this is completed by one whole continuation
    # an iteration that stops at depth_limit on an unfinished node completes it in one whole continuation and
    # backs up the checked outcome (MCTS-DPO's --force_terminating_on_depth_limit)
    complete_at_depth_limit: bool = False
    c_puct: float = 1.0  # w_exp: weight of the prior term in PUCT
    length_penalty: float = 1.25  # lambda in p = exp(sum logp / L^lambda)
    gamma: float = 1.0  # discount in the backup Q = r + gamma * V (visit_weighted)
    # visit_weighted (MCTS-DPO: V = visit-weighted mean of the children's Q) | mean (AlphaMath, CPL: Q = the
    # mean of the leaf values backed up through the node)
    backup: str = "visit_weighted"
    commit: bool = True  # move-by-move commitment (AlphaZero style)
    commit_temperature: float = 0.0  # 0: argmax of (N(div+1), Q, V); > 0: sample by (e^Q (children+1))^(1/tau)
    outcome: str = "verifier"  # O of a finished solution: verifier (+1/-1 by its verdict) | score (2s - 1, the old rule)
    outcome_weight: float = 1.0  # weight of the outcome O of finished solutions
    step_weight: float = 1.0  # weight of the critic C (the rewarder's depth-damped score); 0: no critic
    damp_after: int | None = 3  # C' = C / max(depth_parent - damp_after, 1); None: no damping
    inherit_on_zero: bool = True  # an unfinished child with C' = 0 takes its parent's value
    dedup: bool = True  # drop a new child whose step text repeats a sibling's
    # MCTS-DPO's ground-truth injection: where the path so far is a prefix of the gold solution, the rest of it
    # joins the expansion as one more (finished) child. It uses gold solutions: not pure self-improvement.
    include_gt: bool = False
    dirichlet_alpha: float = 0.3  # concentration of the root noise
    dirichlet_fraction: float = 0.0  # root noise weight; 0 turns it off
    temperature: float = 1.0  # sampling temperature of the policy
    answer_rule: str = "highest_value"  # highest_value | majority | weighted_vote
    seed: int = 0  # root noise and sampled commitment

    def __post_init__(self) -> None:
        require_at_least(self, 1, "simulations", "first_root_factor", "width", "root_width")
        require_at_least(self, 1, "depth_limit", null_ok=True)
        require_at_least(self, 0, "force_after", null_ok=True)
        if not 0.0 <= self.dirichlet_fraction <= 1.0 or self.dirichlet_alpha <= 0:
            raise ValueError("dirichlet_fraction must be in [0, 1] and dirichlet_alpha > 0")
        require_at_least(self, 0, "c_puct", "commit_temperature")
        check_rule(self.answer_rule)
        require_choice("outcome", self.outcome, puct.OUTCOME_RULES)
        require_choice("backup", self.backup, puct.BACKUP_RULES)


@register("searcher", "mcts", schema=MCTSConfig)
class MCTS(Searcher):
    def __init__(self, cfg: MCTSConfig):
        self.cfg = cfg
        self.answer_rule = cfg.answer_rule

    def search(self, problem: Problem, tree: Tree) -> SearchGenerator:
        cfg = self.cfg
        if cfg.include_gt and problem.solution is None:
            raise ValueError(f"searcher 'mcts': include_gt needs gold solutions; problem {problem.id} has none")
        rng = random.Random(cfg.seed * 1_000_003 + zlib.crc32(problem.id.encode()))
        root = tree.root
        root.metadata.setdefault(puct.V_KEY, 0.0)
        iterations = cfg.simulations * cfg.first_root_factor if cfg.commit else cfg.simulations
        committed: list[Node] = []
        while True:
            noise = None
            for _ in range(iterations):
                if noise is None and cfg.dirichlet_fraction > 0 and root.children:
                    noise = puct.dirichlet(cfg.dirichlet_alpha, len(root.children), rng)
                yield from self._iterate(root, tree, noise, problem)
            if not cfg.commit or root.terminal or not root.children:
                break
            if cfg.commit_temperature > 0:
                probs = puct.commit_probabilities(root, cfg.commit_temperature)
                index = rng.choices(range(len(root.children)), weights=probs)[0]
            else:
                index = puct.commit_index(root)
            root = root.children[index]
            root.metadata["committed"] = True
            committed.append(root)
            if root.terminal:
                break
            iterations = cfg.simulations
        tree.metadata["committed_depth"] = len(committed)

    # -- one iteration ------------------------------------------------------------------------------
    def _within(self, node: Node, root: Node) -> bool:
        limit = self.cfg.depth_limit
        return not node.terminal and (limit is None or node.depth - root.depth < limit)

    def _select(self, node: Node, root: Node, noise: list[float] | None) -> Node:
        priors = None
        if node is root and noise is not None and len(noise) == len(node.children):
            own = [puct.step_prior(c.prior_logprob, c.num_tokens, self.cfg.length_penalty) for c in node.children]
            priors = puct.mix_priors(own, noise, self.cfg.dirichlet_fraction)
        index = puct.select_child(node, c_puct=self.cfg.c_puct, length_penalty=self.cfg.length_penalty, priors=priors)
        return node.children[index]

    def _iterate(self, root: Node, tree: Tree, noise: list[float] | None, problem: Problem) -> SearchGenerator:
        path, node = [root], root
        while node.children and self._within(node, root):
            node = self._select(node, root, noise)
            path.append(node)
        while self._within(node, root):
            yield from self._expand(node, tree, problem)
            if not node.children:
                break
            node = self._select(node, root, noise)
            path.append(node)
        if self.cfg.complete_at_depth_limit and not node.terminal and not self._within(node, root):
            # Finish the solution so the backup carries a checked outcome, not a judge's guess at a
            # half-done one. The completion stays as the node's only child; later visits select it again.
            if not node.children:
                yield from self._expand(node, tree, problem, whole=True)
            if node.children:
                node = self._select(node, root, noise)
                path.append(node)
        if len(path) > 1 and self.cfg.backup == "mean":
            puct.mean_backup(path)
        elif len(path) > 1:
            puct.backup(path, self.cfg.gamma)
        else:  # a finished root or an empty expansion: only the visit counts
            root.visits += 1

    def _expand(self, node: Node, tree: Tree, problem: Problem, whole: bool = False) -> SearchGenerator:
        cfg = self.cfg
        if whole or (cfg.force_after is not None and node.depth > cfg.force_after):
            new = yield Expand(node, n=1, temperature=cfg.temperature, whole=True)
        else:
            n = cfg.root_width if node is tree.root else cfg.width
            new = yield Expand(node, n=n, temperature=cfg.temperature)
        if cfg.dedup:
            new = drop_duplicate_steps(node, new)
        if cfg.include_gt:
            new += gold_continuation(node, problem)
        scores = yield Score(new)
        for child, score in zip(new, scores):
            value = puct.node_value(
                score, terminal=child.terminal, correct=None if child.verdict is None else child.verdict.correct,
                parent_value=node.value, parent_depth=node.depth, outcome=cfg.outcome,
                outcome_weight=cfg.outcome_weight, step_weight=cfg.step_weight, damp_after=cfg.damp_after,
                inherit_on_zero=cfg.inherit_on_zero,
            )
            puct.init_child_stats(child, value)
            child.metadata["score"] = score


GOLD = "gold"  # metadata flag of an injected gold continuation


def gold_continuation(node: Node, problem: Problem) -> list[Node]:
    """The rest of the gold solution as a new finished child of `node`, where `node`'s state is a proper prefix
    of it and no child already says it; else nothing.

    The injected child was not sampled: it has no token ids and log-prob 0, so its PUCT prior is 1.
    """
    gold = problem.solution
    if gold is None or not gold.startswith(node.state) or gold == node.state:
        return []
    rest = gold[len(node.state) :]
    if any(c.step == rest for c in node.children):
        return []
    child = Node(step=rest, state=gold, terminal=True, verdict=Verdict(True, problem.answer), metadata={GOLD: True})
    return [node.add_child(child)]


def drop_duplicate_steps(parent: Node, new: list[Node]) -> list[Node]:
    """Detach each new child whose step text an earlier sibling already has; returns the kept ones."""
    seen = {c.step for c in parent.children if all(c is not m for m in new)}
    kept = []
    for child in new:
        if child.step in seen:
            # by identity: Node is a dataclass, so == would match an equal-looking sibling
            parent.children = [c for c in parent.children if c is not child]
            child.parent = None
        else:
            seen.add(child.step)
            kept.append(child)
    return kept
