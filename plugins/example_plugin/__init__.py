"""An in-repo plugin: a builder registered only through the registry, without touching `sisearch/`.

`shortest_correct` keeps, per problem, the shortest verified-correct solutions: a common variant of
rejection-sampling fine-tuning that counters the drift towards longer outputs.

Use it with `sisearch 'plugins=[plugins.example_plugin]' builder=shortest_correct` (also loaded through the
`sisearch.plugins` entry point when the package is installed).
"""

from __future__ import annotations

from dataclasses import dataclass

from sisearch.data.base import Builder
from sisearch.data.outcome import finished
from sisearch.data.records import SFTExample
from sisearch.registry import register
from sisearch.search.tree import Tree
from sisearch.tasks.base import Problem


@dataclass
class ShortestCorrectConfig:
    name: str = "shortest_correct"
    per_problem: int = 1


@register("builder", "shortest_correct", schema=ShortestCorrectConfig)
class ShortestCorrect(Builder):
    produces = SFTExample

    def __init__(self, cfg: ShortestCorrectConfig):
        if cfg.per_problem < 1:
            raise ValueError(f"builder 'shortest_correct': per_problem must be at least 1, got {cfg.per_problem}")
        self.cfg = cfg

    def build(self, trees: list[Tree], problems: dict[str, Problem], seed: int) -> list[SFTExample]:
        examples = []
        for tree in trees:
            correct, _ = finished(tree)
            for node in sorted(correct, key=lambda n: len(n.state))[: self.cfg.per_problem]:
                examples.append(SFTExample(tree.problem_id, tree.prompt, node.state))
        return examples
