"""`gsm8k`: grade-school word problems from JSONL files (`{"question", "answer"}` per line).

GSM8K itself (OpenAI, MIT licence) ships inside the package (`sisearch/tasks/data/gsm8k/`) and is read when
`train_path` / `test_path` are null; a path given by the user is read instead (relative paths from the
working directory). The gold answer is the number after the last `####` of the reference solution.
A model's answer is the number in its first final-answer statement (`#### 18`, `\\boxed{18}`,
`**Answer:** $18`, `The answer is 18.`; see `answers.py`), else its last number, compared with math-verify.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

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
    text_field,
)
from sisearch.tasks.prompts import PromptConfig

SHIPPED = SHIPPED_DATA / "gsm8k"
NUMBER_TEXT = r"[-−]?(?:\\?\$)?[-−]?\d[\d,]*(?:\.\d+)?"
NUMBER = re.compile(NUMBER_TEXT)
# A value at the start of a statement, perhaps in math mode or a LaTeX text/bold wrapper: `$18`, `\$18.00`.
STATED_NUMBER = re.compile(
    rf"^(?:\s|\$|\\\(|\\\[|\\(?:text|textbf|mathbf|mathrm)\s*\{{)*({NUMBER_TEXT})"
)
GOLD_NUMBER = re.compile(rf"\s*({NUMBER_TEXT})\s*")
EXPECTED = 'a JSON object {"question": str, "answer": "... #### <number>"}'


CHAT_USER_TEMPLATE = "{question}\nSolve it step by step, one step per line, and end with a line '#### <answer>'."


@dataclass
class GSM8KConfig:
    name: str = "gsm8k"
    # chat or plain, system prompt, few-shot; the chat user message asks for the answer format the checker reads
    prompt: PromptConfig = field(default_factory=lambda: PromptConfig(user_template=CHAT_USER_TEMPLATE))
    train_path: str | None = None  # null: the GSM8K shipped with sisearch
    test_path: str | None = None
    train_limit: int | None = None
    test_limit: int | None = 200
    prompt_template: str = "Question: {question}\nAnswer: Let's think step by step.\n"
    max_new_tokens: int = 384
    max_steps: int = 12

    def __post_init__(self) -> None:
        check_positive(self.name, nullable=True, train_limit=self.train_limit, test_limit=self.test_limit)
        check_positive(self.name, nullable=False, max_new_tokens=self.max_new_tokens, max_steps=self.max_steps)
        check_prompt_template(self.name, self.prompt_template)


def clean_number(text: str) -> str:
    """`$1,234.50` -> `1234.5`: no currency, separators or trailing zeros, so the text reads as a number."""
    number = text.replace(",", "").replace("\\$", "").replace("$", "").replace("−", "-").rstrip(".")
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return "0" if number in ("-0", "") else number


def gold_answer(solution: str) -> str:
    if "####" not in solution:
        raise RecordError("no '#### <answer>' line")
    stated = solution.rsplit("####", 1)[1]
    match = GOLD_NUMBER.fullmatch(stated)
    if match is None:
        raise RecordError(f"the answer after '####' is not a number: {stated.strip()!r}")
    return clean_number(match.group(1))


def stated_number(statement: Statement) -> str | None:
    """The number a final-answer statement gives, if it gives one."""
    match = STATED_NUMBER.match(answers.unwrap(statement.text))
    if match is None:  # `$\boxed{18}$`: a box inside math mode
        match = STATED_NUMBER.match(answers.unwrap(re.sub(r"^\s*(?:\$\$?|\\\(|\\\[)", "", statement.text)))
    return clean_number(match.group(1)) if match else None


def extract_answer(text: str) -> str | None:
    """The number in the first final-answer statement, else the last number in `text`, else None."""
    stated = answers.first_stated(text, stated_number)
    if stated is not None:
        return stated
    numbers = NUMBER.findall(text)
    return clean_number(numbers[-1]) if numbers else None


def make_problem(record: dict, problem_id: str) -> Problem:
    question, solution = text_field(record, "question"), text_field(record, "answer")
    return Problem(problem_id, question, gold_answer(solution), "all", solution)


@register("task", "gsm8k", schema=GSM8KConfig)
class GSM8KTask(JsonlTask):
    def shipped(self, split: str) -> Path:
        return SHIPPED / f"{split}.jsonl"

    def expected(self) -> str:
        return EXPECTED

    def make_problem(self, record: dict, problem_id: str) -> Problem:
        return make_problem(record, problem_id)

    def check(self, problem: Problem, solution: str) -> Verdict:
        answer = extract_answer(solution)
        if answer is None:
            return Verdict(correct=False, answer=None, parsed=False)
        return Verdict(correct=answers.equivalent(answer, problem.answer), answer=answer, parsed=True)

    def is_terminal(self, solution: str) -> bool:
        return answers.first_stated(solution, stated_number) is not None
