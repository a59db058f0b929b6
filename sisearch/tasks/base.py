"""What every task provides: problems, prompts and an exact checker."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

from sisearch.search.tree import Verdict
from sisearch.tasks.prompts import Messages, PromptConfig, chat_messages, chat_renderer, plain_prompt

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

    # Prompt settings: a task sets this to its config's `prompt` section.
    prompt_cfg: PromptConfig = PromptConfig()
    _render_chat: Callable[[Messages], str] | None = None

    @abstractmethod
    def problems(self, split: str) -> list[Problem]: ...

    @abstractmethod
    def plain_prompt(self, question: str) -> str:
        """The prompt for a policy without a chat template: the question in the task's own format."""

    def messages(self, problem: Problem) -> Messages:
        """The conversation a chat policy answers: system prompt, few-shot examples, the question."""
        return chat_messages(self.prompt_cfg, problem.question)

    def prompt(self, problem: Problem) -> str:
        """The text the policy continues; its continuation is the solution."""
        if self._render_chat is not None:
            return self._render_chat(self.messages(problem))
        return plain_prompt(self.prompt_cfg, problem.question, self.plain_prompt)

    def use_tokenizer(self, tokenizer: Any) -> None:
        """Render prompts with the policy's chat template when `prompt.format` (auto or chat) asks for it."""
        self._render_chat = chat_renderer(self.prompt_cfg, tokenizer, getattr(getattr(self, "cfg", None), "name", "task"))

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
