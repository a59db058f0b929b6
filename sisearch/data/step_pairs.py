"""Step-level preference pairs from searched trees.

`step_pairs` (MCTS-DPO, Step-DPO): at a node with two or more children, the best-Q child against a worse
sibling; the shared prefix is the prompt, so only the differing continuation is scored.
`advantage_pairs` (CPL's Step-APO): every sibling pair on either side of a Q threshold; each pair carries
both Q values, whose gap is the advantage gap the Step-APO loss uses as a margin.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from sisearch.data.base import Builder
from sisearch.data.branches import (
    Branch,
    branch,
    branching_nodes,
    check_node_set,
    chosen_is_correct,
    ends_correct,
    split_common_prefix,
)
from sisearch.data.records import PreferencePair
from sisearch.registry import register
from sisearch.checks import require_at_least, require_choice
from sisearch.search.tree import Node, Tree
from sisearch.tasks.base import Problem

REJECT_RULES = ("worst", "random")


def make_pair(
    tree: Tree, parent: Node, chosen: Branch, rejected: Branch, *, trim: bool, source: str,
    chosen_value: float, rejected_value: float,
) -> PreferencePair:
    """`chosen` over `rejected`, two children of `parent`, with their values; `trim` moves their shared
    prefix into the prompt."""
    prompt = tree.prompt + parent.state
    chosen_text, rejected_text = chosen.text, rejected.text
    if trim:
        shared, chosen_text, rejected_text = split_common_prefix(chosen_text, rejected_text)
        prompt += shared
    context = parent.state_ids() if tree.prompt_ids is not None else None
    ids: dict[str, list[int] | None] = {"prompt_ids": None, "chosen_ids": None, "rejected_ids": None}
    if context is not None and chosen.ids is not None and rejected.ids is not None:
        shared_ids, chosen_ids, rejected_ids = chosen.ids[:0], chosen.ids, rejected.ids
        if trim:  # at the first differing token: what the engine sampled, not a re-tokenization
            shared_ids, chosen_ids, rejected_ids = split_common_prefix(chosen.ids, rejected.ids)
        ids = {"prompt_ids": tree.prompt_ids + context + list(shared_ids), "chosen_ids": list(chosen_ids),
               "rejected_ids": list(rejected_ids)}
    return PreferencePair(
        problem_id=tree.problem_id,
        prompt=prompt,
        chosen=chosen_text,
        rejected=rejected_text,
        chosen_value=chosen_value,
        rejected_value=rejected_value,
        chosen_visits=chosen.node.visits,
        rejected_visits=rejected.node.visits,
        chosen_complete=chosen.complete,
        rejected_complete=rejected.complete,
        chosen_correct=ends_correct(chosen.last),
        metadata={"source": source, "depth": parent.depth, "q_gap": chosen_value - rejected_value},
        **ids,
    )


@dataclass
class StepPairsConfig:
    name: str = "step_pairs"
    nodes: str = "chosen_path"  # chosen_path (MCTS-DPO's committed trajectory) | all (every branching node)
    rejected: str = "worst"  # worst (lowest Q) | random (a uniformly drawn worse sibling, as MCTS-DPO's code)
    extend_only_children: bool = True  # a candidate's text runs on through a chain of only-children
    trim_common_prefix: bool = True  # score from the first character where chosen and rejected differ
    min_q_gap: float = 0.0  # the chosen Q must exceed the rejected Q by more than this
    max_pairs_per_tree: int = 8  # pairs taken from one tree, shallow branching nodes first
    require_correct: bool = False  # MCTS-DPO's --filter: use a tree only if its chosen solution is right

    def __post_init__(self) -> None:
        require_choice("rejected rule", self.rejected, REJECT_RULES)
        require_at_least(self, 1, "max_pairs_per_tree")
        require_at_least(self, 0, "min_q_gap")
        check_node_set(self.nodes)


@register("builder", "step_pairs", schema=StepPairsConfig)
class StepPairs(Builder):
    produces = PreferencePair

    def __init__(self, cfg: StepPairsConfig):
        self.cfg = cfg

    def build(self, trees: list[Tree], problems: dict[str, Problem], seed: int) -> list[PreferencePair]:
        rng = random.Random(seed)
        pairs: list[PreferencePair] = []
        for tree in trees:
            if self.cfg.require_correct and not chosen_is_correct(tree):
                continue
            taken = 0
            for parent in branching_nodes(tree, self.cfg.nodes):
                if taken >= self.cfg.max_pairs_per_tree:
                    break
                pair = self.pair_at(tree, parent, rng)
                if pair is not None:
                    pairs.append(pair)
                    taken += 1
        return pairs

    def pair_at(self, tree: Tree, parent: Node, rng: random.Random) -> PreferencePair | None:
        branches = [branch(c, self.cfg.extend_only_children) for c in parent.children]
        # max() keeps the first of equals, so ties go to the earlier (usually more visited) child.
        best = max(branches, key=lambda b: (b.node.q, b.node.visits, b.node.value))
        worse = [
            b for b in branches
            if best.node.q - b.node.q > self.cfg.min_q_gap and b.text != best.text
        ]
        if not worse:
            return None
        if self.cfg.rejected == "worst":
            rejected = min(worse, key=lambda b: (b.node.q, b.node.visits))
        else:
            rejected = rng.choice(worse)
        return make_pair(
            tree, parent, best, rejected, trim=self.cfg.trim_common_prefix, source="step_pairs",
            chosen_value=best.node.q, rejected_value=rejected.node.q,
        )


@dataclass
class AdvantagePairsConfig:
    name: str = "advantage_pairs"
    nodes: str = "all"  # all (CPL: every expanded node) | chosen_path
    # pairs (i, j) with Q_i > threshold > Q_j (CPL: the sign of Q, for Q in [-1, 1]; use 0.5 for 0/1 rewards)
    threshold: float = 0.0
    # finished-solution siblings give one pair, (argmax, argmin), their Q values scaled by this (CPL's sw)
    solution_scale: float = 0.3
    extend_only_children: bool = True  # a candidate's text runs on through a chain of only-children
    trim_common_prefix: bool = True  # score from the first character where chosen and rejected differ
    max_pairs_per_node: int = 4  # the largest Q gaps are kept
    max_pairs_per_tree: int = 16

    def __post_init__(self) -> None:
        require_at_least(self, 1, "max_pairs_per_node", "max_pairs_per_tree")
        if self.solution_scale <= 0:
            raise ValueError(f"solution_scale must be > 0, got {self.solution_scale}")
        check_node_set(self.nodes)


@register("builder", "advantage_pairs", schema=AdvantagePairsConfig)
class AdvantagePairs(Builder):
    produces = PreferencePair

    def __init__(self, cfg: AdvantagePairsConfig):
        self.cfg = cfg

    def build(self, trees: list[Tree], problems: dict[str, Problem], seed: int) -> list[PreferencePair]:
        rng = random.Random(seed)
        pairs: list[PreferencePair] = []
        for tree in trees:
            tree_pairs: list[PreferencePair] = []
            for parent in branching_nodes(tree, self.cfg.nodes):
                tree_pairs.extend(self.pairs_at(tree, parent, rng))
                if len(tree_pairs) >= self.cfg.max_pairs_per_tree:
                    break
            pairs.extend(tree_pairs[: self.cfg.max_pairs_per_tree])
        return pairs

    def pairs_at(self, tree: Tree, parent: Node, rng: random.Random) -> list[PreferencePair]:
        branches = [branch(c, self.cfg.extend_only_children) for c in parent.children]
        t = self.cfg.threshold
        if all(b.complete for b in branches):
            # Finished-solution siblings: only the extremes, on a reduced Q scale (CPL keeps step and
            # solution pairs comparable this way).
            hi = max(branches, key=lambda b: b.node.q)
            lo = min(branches, key=lambda b: b.node.q)
            if not (hi.node.q > t > lo.node.q) or hi.text == lo.text:
                return []
            scale = self.cfg.solution_scale
            return [
                make_pair(
                    tree, parent, hi, lo, trim=self.cfg.trim_common_prefix, source="advantage_pairs",
                    chosen_value=scale * hi.node.q, rejected_value=scale * lo.node.q,
                )
            ]
        candidates = [
            (w, l) for w, l in itertools.product(branches, branches)
            if w.node.q > t > l.node.q and w.text != l.text
        ]
        if len(candidates) > self.cfg.max_pairs_per_node:
            # Keep the largest gaps (the "critical" steps Step-APO pushes hardest); ties at random.
            rng.shuffle(candidates)
            candidates.sort(key=lambda p: p[0].node.q - p[1].node.q, reverse=True)
            candidates = candidates[: self.cfg.max_pairs_per_node]
        return [
            make_pair(
                tree, parent, w, l, trim=self.cfg.trim_common_prefix, source="advantage_pairs",
                chosen_value=w.node.q, rejected_value=l.node.q,
            )
            for w, l in candidates
        ]
