"""The builder contract: searched trees in, training records out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from sisearch.search.tree import Tree
from sisearch.tasks.base import Problem


class Builder(ABC):
    #: the record type built (an optimizer must consume it)
    produces: type

    @abstractmethod
    def build(self, trees: list[Tree], problems: dict[str, Problem], seed: int) -> list[Any]:
        ...
