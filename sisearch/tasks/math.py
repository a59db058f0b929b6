"""`math`: competition mathematics (MATH-style) from JSONL files, answers compared with math-verify.

Each line holds a problem and a worked solution whose last `\\boxed{...}` is the answer, as in the MATH
dataset (Hendrycks et al., 2021): `{"problem": ..., "solution": "... \\boxed{\\frac{3}{4}}",
"level": "Level 2", "type": "Prealgebra"}`. An `answer` field, where a record has one, is the gold answer
instead (then `solution` may be absent). Field names are configurable, so MATH-500, AIME or a user's own set
are read as they are. Accuracy is reported per `level` (or per `type`, or overall).

sisearch ships only a small hand-written sample (`sisearch/tasks/data/math/sample.jsonl`), read when
`train_path` / `test_path` are null; point them at MATH JSONL files for real runs.

A model's answer is the value of its first final-answer statement (`\\boxed{...}`, `The final answer is
$...$`, `**Answer:** ...`, `#### ...`; see `answers.py`). Unlike gsm8k there is no last-number fallback:
a bare number somewhere in a derivation is too often not the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sisearch.registry import register
from sisearch.search.tree import Verdict
from sisearch.tasks import answers
from sisearch.tasks.answers import Statement
from sisearch.tasks.base import Problem
from sisearch.tasks.jsonl import (
    SHIPPED_DATA,
    JsonlTask,
    RecordError,
    check_positive,
    check_prompt_template,
    optional_text_field,
    text_field,
)
from sisearch.tasks.prompts import PromptConfig

SHIPPED_SAMPLE = SHIPPED_DATA / "math" / "sample.jsonl"
GROUP_BY = ("level", "type", "none")
# An answer in math mode at the start of a statement: `$...$`, `$$...$$`, `\(...\)`, `\[...\]`.
MATH_MODE = re.compile(r"^(?:\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\])")
# An answer written without math mode must look like one: a number, a sign, a bracket, a LaTeX command or a
# single letter (`x = 3`, `B`), not a word ("the answer is not obvious").
PLAIN_ANSWER = re.compile(r"^(?:[-−+(\[{\\.\d]|[a-zA-Z](?![a-zA-Z]))")
CURRENCY = re.compile(r"^\\?\$(?=\s*\d)")
SENTENCE_END = re.compile(r"\.(?:\s|$)|\s+I hope\b")


CHAT_USER_TEMPLATE = "{question}\nSolve it step by step and put the final answer in \\boxed{{}}."


@dataclass
class MathConfig:
    name: str = "math"
    # chat or plain, system prompt, few-shot; the chat user message asks for the answer format the checker reads
    prompt: PromptConfig = field(default_factory=lambda: PromptConfig(user_template=CHAT_USER_TEMPLATE))
    train_path: str | None = None  # null: the small hand-written sample shipped with sisearch
    test_path: str | None = None
    problem_field: str = "problem"
    solution_field: str = "solution"  # the gold answer is its last \boxed{...}...
    answer_field: str = "answer"  # ...unless a record has this field
    level_field: str = "level"
    type_field: str = "type"
    group_by: str = "level"  # what accuracy is reported by: level | type | none
    train_limit: int | None = None
    test_limit: int | None = 500
    prompt_template: str = (
        "Problem: {question}\nSolution: Let's think step by step, and put the final answer in \\boxed{{}}.\n"
    )
    max_new_tokens: int = 1024
    max_steps: int = 24

    def __post_init__(self) -> None:
        check_positive(self.name, nullable=True, train_limit=self.train_limit, test_limit=self.test_limit)
        check_positive(self.name, nullable=False, max_new_tokens=self.max_new_tokens, max_steps=self.max_steps)
        check_prompt_template(self.name, self.prompt_template)
        if self.group_by not in GROUP_BY:
            raise ValueError(f"task '{self.name}': unknown group_by '{self.group_by}'; allowed: {', '.join(GROUP_BY)}")
        for key in ("problem_field", "solution_field", "answer_field", "level_field", "type_field"):
            if not getattr(self, key).strip():
                raise ValueError(f"task '{self.name}': {key} must name a JSON field, got an empty string")


def clean_expression(text: str) -> str | None:
    """An answer without surrounding blanks, bold or final punctuation; None when nothing is left."""
    text = text.strip()
    while True:
        trimmed = text.removesuffix("**").rstrip(" .,;:").strip()
        if trimmed == text:
            return text or None
        text = trimmed


def stated_expression(statement: Statement) -> str | None:
    """The answer a final-answer statement gives, as LaTeX, if it gives one."""
    text = answers.unwrap(statement.text)
    if statement.kind == "boxed":
        return clean_expression(text)
    math_mode = MATH_MODE.match(text)
    if math_mode:
        inner = next(group for group in math_mode.groups() if group is not None)
        return clean_expression(answers.unwrap(inner))
    text = CURRENCY.sub("", text, count=1)  # `**Answer:** $18`: a dollar sign that opens no math mode
    if not PLAIN_ANSWER.match(text):
        return None
    return clean_expression(SENTENCE_END.split(text, maxsplit=1)[0])


def extract_answer(text: str) -> str | None:
    """The answer in the first final-answer statement of `text`, or None."""
    return answers.first_stated(text, stated_expression)


def gold_answer(record: dict[str, Any], cfg: MathConfig) -> tuple[str, str | None]:
    """The gold answer and the reference solution (None when the record has only an answer)."""
    solution = optional_text_field(record, cfg.solution_field)
    given = optional_text_field(record, cfg.answer_field)
    if given is not None:
        math_mode = MATH_MODE.fullmatch(given.strip())  # `"$\\frac{1}{2}$"` is `\frac{1}{2}`
        inner = next(g for g in math_mode.groups() if g is not None) if math_mode else given
        return inner.strip(), solution
    if solution is None:
        raise RecordError(f"missing field '{cfg.solution_field}' (needed when there is no '{cfg.answer_field}')")
    boxed = answers.last_boxed(solution)
    if boxed is None or not boxed.strip():
        raise RecordError(f"no \\boxed{{...}} answer in field '{cfg.solution_field}' and no '{cfg.answer_field}' field")
    return boxed.strip(), solution


def group_name(value: str | None) -> str:
    """`Level 3` -> `level_3`: a metric-name-friendly difficulty group."""
    if value is None:
        return "all"
    return re.sub(r"[^a-z0-9]+", "_", value.lower()).strip("_") or "all"


@register("task", "math", schema=MathConfig)
class MathTask(JsonlTask):
    def shipped(self, split: str) -> Path:
        return SHIPPED_SAMPLE

    def make_problem(self, record: dict[str, Any], problem_id: str) -> Problem:
        cfg = self.cfg
        question = text_field(record, cfg.problem_field)
        answer, solution = gold_answer(record, cfg)
        metadata = {
            key: value
            for key, field in (("level", cfg.level_field), ("type", cfg.type_field))
            if (value := optional_text_field(record, field)) is not None
        }
        difficulty = "all" if cfg.group_by == "none" else group_name(metadata.get(cfg.group_by))
        return Problem(problem_id, question, answer, difficulty, solution, metadata)

    def expected(self) -> str:
        cfg = self.cfg
        return (
            f'a JSON object {{"{cfg.problem_field}": str, "{cfg.solution_field}": "... \\boxed{{<answer>}}"}} '
            f'(or an "{cfg.answer_field}" field instead of the box), optionally "{cfg.level_field}" and '
            f'"{cfg.type_field}"'
        )

    def check(self, problem: Problem, solution: str) -> Verdict:
        answer = extract_answer(solution)
        if answer is None:
            return Verdict(correct=False, answer=None, parsed=False)
        # In math mode, so that math-verify reads the text as LaTeX (a bare `\dfrac{3}{4}` is not found).
        return Verdict(correct=answers.equivalent(f"${answer}$", f"${problem.answer}$"), answer=answer, parsed=True)

    def is_terminal(self, solution: str) -> bool:
        return answers.first_stated(solution, stated_expression) is not None
