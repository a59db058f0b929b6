"""The rewarder contract: score a batch of nodes (partial or finished solutions) of many problems at once."""

from __future__ import annotations

from abc import ABC, abstractmethod
import string
from collections.abc import Sequence
from dataclasses import dataclass

from sisearch.search.tree import Node
from sisearch.tasks.base import Problem


@dataclass
class ScoreItem:
    problem: Problem
    prompt: str
    node: Node

    @property
    def text(self) -> str:
        """The prompt and the solution so far."""
        return self.prompt + self.node.state


class Rewarder(ABC):
    #: whether scoring reads the gold answer (then it is usable at training time only)
    uses_gold: bool = False

    @abstractmethod
    def score(self, items: list[ScoreItem]) -> list[float]:
        """One score per item, higher is better."""


# A rewarder's config checks its own values in `__post_init__`; a message there names the field, not the
# component (`registry.to_typed` puts `rewarder 'name': ` in front).


def template_fields(template: str) -> set[str]:
    """The `{field}` names a format string uses."""
    return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}


def check_template_fields(template: str, allowed: Sequence[str], what: str) -> None:
    """Refuse `{field}`s in a prompt template that the rewarder will not fill, naming the allowed ones."""
    names = template_fields(template)
    unknown = sorted(names - set(allowed))
    if unknown:
        raise ValueError(f"{what} field(s) {unknown}; allowed: {', '.join(allowed)}")
