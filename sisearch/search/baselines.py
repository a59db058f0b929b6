"""Baselines: `best_of_n` (n whole solutions, scored by the rewarder) and `greedy` (one, temperature 0)."""

from __future__ import annotations

from dataclasses import dataclass

from sisearch.registry import register
from sisearch.search.answers import check_rule
from sisearch.search.base import SearchGenerator, Searcher
from sisearch.checks import require_at_least
from sisearch.search.requests import Expand, Score
from sisearch.search.tree import Tree
from sisearch.tasks.base import Problem


@dataclass
class BestOfNConfig:
    name: str = "best_of_n"
    n: int = 8  # whole solutions sampled per problem
    temperature: float = 1.0  # sampling temperature of the policy
    answer_rule: str = "highest_value"  # highest_value | majority | weighted_vote

    def __post_init__(self) -> None:
        require_at_least(self, 1, "n")
        check_rule(self.answer_rule)


@register("searcher", "best_of_n", schema=BestOfNConfig)
class BestOfN(Searcher):
    def __init__(self, cfg: BestOfNConfig):
        self.cfg = cfg
        self.answer_rule = cfg.answer_rule

    def search(self, problem: Problem, tree: Tree) -> SearchGenerator:
        children = yield Expand(tree.root, n=self.cfg.n, temperature=self.cfg.temperature, whole=True)
        scores = yield Score(children)
        for child, score in zip(children, scores):
            child.value = child.reward = child.q = score
            child.visits = 1
        tree.root.visits = len(children)


@dataclass
class GreedyConfig:
    name: str = "greedy"
    answer_rule: str = "highest_value"  # highest_value | majority | weighted_vote

    def __post_init__(self) -> None:
        check_rule(self.answer_rule)


@register("searcher", "greedy", schema=GreedyConfig)
class Greedy(Searcher):
    def __init__(self, cfg: GreedyConfig):
        self.cfg = cfg
        self.answer_rule = cfg.answer_rule

    def search(self, problem: Problem, tree: Tree) -> SearchGenerator:
        children = yield Expand(tree.root, n=1, temperature=0.0, whole=True)
        scores = yield Score(children)
        children[0].value = children[0].reward = children[0].q = scores[0]
        children[0].visits = tree.root.visits = 1
