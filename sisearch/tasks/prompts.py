"""How a task's question becomes the policy's prompt: a chat conversation or a plain text template.

A task builds messages (an optional system prompt, optional few-shot examples, the question); a policy with
a chat template renders them (`apply_chat_template(..., add_generation_prompt=True)`), so the model answers
as the assistant, and what it writes after the prompt is the solution that searchers expand and builders
train on. A policy without a chat template (the embedded `tiny`) gets the task's plain template, with the
few-shot examples written before it in the same format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

PROMPT_FORMATS = ("auto", "chat", "plain")

Messages = list[dict[str, str]]

# A backslash and `n` that cannot start a LaTeX macro (`\neq`, `\nu`): what a command-line override leaves
# where a line break was meant.
LITERAL_NEWLINE = re.compile(r"\\n(?![a-z])")


@dataclass
class FewShot:
    """A worked example shown before the question."""

    question: str = "???"
    solution: str = "???"


@dataclass
class PromptConfig:
    """A task config's `prompt` section (`task.prompt.format=chat`)."""

    # auto: the chat template when the policy's tokenizer has one, else the plain template
    format: str = "auto"
    system: str = ""  # chat: the system message ("" = none: the chat template's own default)
    user_template: str = "{question}"  # chat: the user message
    few_shot: list[FewShot] = field(default_factory=list)  # examples before the question, in either format

    def __post_init__(self) -> None:
        if self.format not in PROMPT_FORMATS:
            raise ValueError(f"unknown prompt.format '{self.format}'; allowed: {', '.join(PROMPT_FORMATS)}")
        if "{question}" not in self.user_template:
            raise ValueError(f"prompt.user_template must contain {{question}}, got {self.user_template!r}")
        for i, shot in enumerate(self.few_shot):
            if "\n" not in shot.solution and LITERAL_NEWLINE.search(shot.solution):
                raise ValueError(
                    f"prompt.few_shot[{i}].solution has no line break but a literal '\\n' (backslash, n): a "
                    "command-line override does not turn \\n into a line break; write the examples in a YAML "
                    "file, where a double-quoted \"...\\n...\" is one (as in sisearch/conf/task/arith_small.yaml)"
                )


def chat_messages(cfg: PromptConfig, question: str) -> Messages:
    messages = [{"role": "system", "content": cfg.system}] if cfg.system else []
    for shot in cfg.few_shot:
        messages.append({"role": "user", "content": cfg.user_template.format(question=shot.question)})
        messages.append({"role": "assistant", "content": shot.solution})
    messages.append({"role": "user", "content": cfg.user_template.format(question=question)})
    return messages


def plain_prompt(cfg: PromptConfig, question: str, template: Callable[[str], str]) -> str:
    """The plain template for the question, after each few-shot example written the same way."""
    shots = "".join(f"{template(shot.question)}{shot.solution.rstrip()}\n\n" for shot in cfg.few_shot)
    return shots + template(question)


def chat_renderer(cfg: PromptConfig, tokenizer: Any, task: str) -> Callable[[Messages], str] | None:
    """The tokenizer's chat template as a function of the messages, or None for the plain format."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if cfg.format == "plain" or (cfg.format == "auto" and not has_template):
        return None
    if not has_template:
        raise ValueError(
            f"task '{task}': prompt.format is 'chat' but the policy's tokenizer has no chat template; "
            "use task.prompt.format=plain (or auto: chat only when the tokenizer has a template)"
        )
    return lambda messages: tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
