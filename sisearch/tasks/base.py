"""What every task provides: problems, prompts and an exact checker."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from sisearch.search.tree import Verdict

SPLITS = ("train", "test")


@dataclass
class Problem:
    id: str
    question: str
    answer: str  # the gold final answer, as text
    difficulty: str = "all"  # the group that accuracy is reported by
    solution: str | None = None  # a gold step-by-step solution, where the task has one
    metadata: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    """A source of problems with a checker. Steps are separated by `step_delimiter`."""

    step_delimiter: str = "\n"
    # A full solution's generation budget and step cap, used by searchers and evaluation.
    max_new_tokens: int = 256
    max_steps: int = 16
    # Probability that a uniformly guessed answer is right, reported beside accuracy (None: unknown).
    chance_rate: float | None = None

    @abstractmethod
    def problems(self, split: str) -> list[Problem]: ...

    @abstractmethod
    def prompt(self, problem: Problem) -> str: ...

    @abstractmethod
    def check(self, problem: Problem, solution: str) -> Verdict:
        """Whether the final answer in `solution` (the text after the prompt) is right."""

    @abstractmethod
    def is_terminal(self, solution: str) -> bool:
        """Whether `solution` already states a final answer."""

    def check_steps(self, problem: Problem, steps: list[str]) -> list[bool] | None:
        """Per-step truth (is the solution still on a correct path after each step); None if unknown."""
        return None

    def split_steps(self, solution: str) -> list[str]:
        """Split a solution into steps, each keeping its delimiter."""
        parts = solution.split(self.step_delimiter)
        steps = [p + self.step_delimiter for p in parts[:-1]]
        if parts[-1]:
            steps.append(parts[-1])
        return steps


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; allowed: {', '.join(SPLITS)}")
