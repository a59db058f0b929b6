"""`beam`: AlphaMath's step-level beam search (research/algorithms.md §6), one generator per problem.

Keep `beam_size` (B1) beams. At step 0 sample B1*B2 first steps; afterwards B2 next steps per beam (all beams
expand in one batched round). Score every new child with the rewarder and keep the top B1 of the pooled
children; a kept child that finishes the solution leaves the beam, and B1 shrinks by one. Stop when the beam
is empty or after `max_steps` steps. The answer is picked among the finished beams by the answer rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from sisearch.registry import register
from sisearch.search.answers import check_rule, choose_answer
from sisearch.search.base import SearchGenerator, Searcher
from sisearch.checks import require_at_least
from sisearch.search.requests import Expand, Score
from sisearch.search.tree import Node, Tree
from sisearch.tasks.base import Problem

FINISHED = "beam_finished"
PRUNED = "beam_pruned"


@dataclass
class BeamConfig:
    name: str = "beam"
    beam_size: int = 3  # B1: beams kept after each step
    expansions: int = 5  # B2: next steps sampled per beam (B1 * B2 at the first step)
    max_steps: int = 10  # steps before the search stops with the beams it has
    temperature: float = 1.0  # sampling temperature of the policy
    answer_rule: str = "highest_value"  # highest_value | majority | weighted_vote, over the finished beams

    def __post_init__(self) -> None:
        require_at_least(self, 1, "beam_size", "expansions", "max_steps")
        check_rule(self.answer_rule)


@dataclass
class Pruned:
    """The outcome of one pruning round, as indices into the candidate list."""

    active: list[int]  # kept and unfinished: the next beams
    finished: list[int]  # kept and finished: they leave the beam
    dropped: list[int]  # not kept
    width: int  # B1 after the finished ones left


def prune(scores: list[float], terminal: list[bool], width: int) -> Pruned:
    """Keep the `width` best-scored candidates (ties: the earlier one); the finished ones among them leave.

    Kept candidates are listed best first.
    """
    if len(scores) != len(terminal):
        raise ValueError(f"prune: {len(scores)} scores but {len(terminal)} terminal flags")
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # sorted() is stable: ties keep their order
    kept, dropped = order[:width], sorted(order[width:])
    finished = [i for i in kept if terminal[i]]
    active = [i for i in kept if not terminal[i]]
    return Pruned(active, finished, dropped, width - len(finished))


@register("searcher", "beam", schema=BeamConfig)
class Beam(Searcher):
    def __init__(self, cfg: BeamConfig):
        self.cfg = cfg
        self.answer_rule = cfg.answer_rule

    def search(self, problem: Problem, tree: Tree) -> SearchGenerator:
        cfg = self.cfg
        width = cfg.beam_size
        beams: list[Node] = []
        for step in range(cfg.max_steps):
            if step == 0:
                candidates = yield Expand(tree.root, n=cfg.beam_size * cfg.expansions, temperature=cfg.temperature)
            else:
                grown = yield [Expand(b, n=cfg.expansions, temperature=cfg.temperature) for b in beams]
                candidates = [child for children in grown for child in children]
            scores = yield Score(candidates)
            for node, score in zip(candidates, scores):
                node.value = node.reward = node.q = score
                node.visits = 1
            result = prune(scores, [c.terminal for c in candidates], width)
            for i in result.finished:
                candidates[i].metadata[FINISHED] = True
            for i in result.dropped:
                candidates[i].metadata[PRUNED] = True
            beams, width = [candidates[i] for i in result.active], result.width
            if not beams or width == 0:
                break
        tree.metadata["beam_unfinished"] = len(beams)

    def finish(self, tree: Tree) -> None:
        """The answer comes from the finished beams only (pruned solutions stay in the tree for builders)."""
        check_rule(self.answer_rule)
        finished = [n for n in tree.root.walk() if n.metadata.get(FINISHED)]
        tree.chosen = choose_answer(finished, self.answer_rule)
        tree.answer = tree.chosen.verdict.answer if tree.chosen is not None and tree.chosen.verdict else None
