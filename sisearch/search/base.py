"""The searcher contract: a per-problem generator of requests, plus shared settings."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generator

from sisearch.search.answers import check_rule, choose_answer
from sisearch.search.requests import Request
from sisearch.search.tree import Tree
from sisearch.tasks.base import Problem

SearchGenerator = Generator[Request, Any, None]


class Searcher(ABC):
    """Writes one problem's search as a generator; the scheduler runs all problems' generators together."""

    answer_rule: str = "highest_value"

    @abstractmethod
    def search(self, problem: Problem, tree: Tree) -> SearchGenerator:
        """Yield requests, receive their answers, grow `tree`; set the answer with `finish`."""

    def finish(self, tree: Tree) -> None:
        check_rule(self.answer_rule)
        chosen = choose_answer(tree.terminals(), self.answer_rule)
        tree.chosen = chosen
        tree.answer = chosen.verdict.answer if chosen is not None and chosen.verdict else None
