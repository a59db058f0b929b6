"""Outcome-level builders: `correct_samples` (for RFT) and `outcome_pairs` (response-level DPO)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from sisearch.data.base import Builder
from sisearch.data.branches import is_complete
from sisearch.data.records import PreferencePair, SFTExample
from sisearch.registry import register
from sisearch.search.tree import Node, Tree
from sisearch.tasks.base import Problem


def finished(tree: Tree) -> tuple[list[Node], list[Node]]:
    """(correct, incorrect) finished solutions of a tree, distinct by text, in tree order."""
    correct, incorrect, seen = [], [], set()
    for node in tree.terminals():
        if node.state in seen or node.verdict is None:
            continue
        seen.add(node.state)
        (correct if node.verdict.correct else incorrect).append(node)
    return correct, incorrect


def solution_ids(tree: Tree, node: Node) -> list[int] | None:
    """The sampled token ids of a finished solution, when the tree has them."""
    return node.state_ids() if tree.prompt_ids is not None else None


@dataclass
class CorrectSamplesConfig:
    name: str = "correct_samples"
    max_per_problem: int = 4  # distinct correct solutions kept per tree, in tree order


@register("builder", "correct_samples", schema=CorrectSamplesConfig)
class CorrectSamples(Builder):
    """Every distinct verified-correct solution (up to `max_per_problem`) becomes an SFT example."""

    produces = SFTExample

    def __init__(self, cfg: CorrectSamplesConfig):
        self.cfg = cfg

    def build(self, trees: list[Tree], problems: dict[str, Problem], seed: int) -> list[SFTExample]:
        examples = []
        for tree in trees:
            correct, _ = finished(tree)
            for node in correct[: self.cfg.max_per_problem]:
                examples.append(
                    SFTExample(
                        tree.problem_id, tree.prompt, node.state, {"value": node.value},
                        prompt_ids=tree.prompt_ids, completion_ids=solution_ids(tree, node),
                    )
                )
        return examples


@dataclass
class OutcomePairsConfig:
    name: str = "outcome_pairs"
    pairs_per_problem: int = 1  # (correct, incorrect) pairs drawn per tree, no solution used twice


@register("builder", "outcome_pairs", schema=OutcomePairsConfig)
class OutcomePairs(Builder):
    """A correct and an incorrect solution of the same problem, drawn at random without reuse."""

    produces = PreferencePair

    def __init__(self, cfg: OutcomePairsConfig):
        self.cfg = cfg

    def build(self, trees: list[Tree], problems: dict[str, Problem], seed: int) -> list[PreferencePair]:
        rng = random.Random(seed)
        pairs = []
        for tree in trees:
            correct, incorrect = finished(tree)
            count = min(self.cfg.pairs_per_problem, len(correct), len(incorrect))
            for chosen, rejected in zip(rng.sample(correct, count), rng.sample(incorrect, count)):
                chosen_ids, rejected_ids = solution_ids(tree, chosen), solution_ids(tree, rejected)
                exact = chosen_ids is not None and rejected_ids is not None
                pairs.append(
                    PreferencePair(
                        tree.problem_id, tree.prompt, chosen.state, rejected.state,
                        chosen_value=chosen.value, rejected_value=rejected.value,
                        # a solution cut by the token budget did not end: no EOS is scored after it
                        chosen_complete=is_complete(chosen), rejected_complete=is_complete(rejected),
                        chosen_correct=is_complete(chosen),
                        prompt_ids=tree.prompt_ids if exact else None, chosen_ids=chosen_ids if exact else None,
                        rejected_ids=rejected_ids if exact else None,
                    )
                )
        return pairs
