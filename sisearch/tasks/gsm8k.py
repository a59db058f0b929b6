"""`gsm8k`: grade-school word problems from local JSONL files (`{"question", "answer"}` per line).

The gold answer is the text after the last `####` of the reference solution. A model's answer is read
from its own `#### N` line, else from "The answer is N", else from its last number, and compared with
math-verify (under a timeout, since its symbolic comparison can be slow on adversarial text).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from math_verify import parse, verify

from sisearch.registry import register
from sisearch.search.tree import Verdict
from sisearch.tasks.base import Problem, Task, check_split

STRICT = re.compile(r"####\s*(-?[$0-9.,]+)")
SENTENCE = re.compile(r"[Tt]he answer is\s*:?\s*\$?(-?[0-9.,]+)")
NUMBER = re.compile(r"-?[$0-9.,]*[0-9]")
CHECK_TIMEOUT_S = 5


@dataclass
class GSM8KConfig:
    name: str = "gsm8k"
    train_path: str = "../shared/data/gsm8k/train.jsonl"
    test_path: str = "../shared/data/gsm8k/test.jsonl"
    train_limit: int | None = None
    test_limit: int | None = 200
    prompt_template: str = "Question: {question}\nAnswer: Let's think step by step.\n"
    max_new_tokens: int = 384
    max_steps: int = 12


def clean_number(text: str) -> str:
    return text.replace(",", "").replace("$", "").rstrip(".")


def gold_answer(solution: str) -> str:
    if "####" not in solution:
        raise ValueError("the reference solution has no '#### <answer>' line")
    return clean_number(solution.rsplit("####", 1)[1].strip())


def extract_answer(text: str) -> str | None:
    for pattern in (STRICT, SENTENCE):
        match = pattern.search(text)
        if match:
            return clean_number(match.group(1))
    numbers = NUMBER.findall(text)
    return clean_number(numbers[-1]) if numbers else None


def answers_match(predicted: str, gold: str) -> bool:
    try:
        return bool(
            verify(
                parse(gold, parsing_timeout=CHECK_TIMEOUT_S),
                parse(predicted, parsing_timeout=CHECK_TIMEOUT_S),
                timeout_seconds=CHECK_TIMEOUT_S,
            )
        )
    except Exception:  # math-verify raises on timeouts and unparsable text; either way: not a match
        return predicted == gold


def read_problems(path: Path, split: str, limit: int | None) -> list[Problem]:
    if not path.is_file():
        raise FileNotFoundError(f"task 'gsm8k': {split} file not found: {path}")
    problems: list[Problem] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                question, solution = record["question"], record["answer"]
                answer = gold_answer(solution)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                detail = f"missing key {err}" if isinstance(err, KeyError) else str(err)
                raise ValueError(
                    f"task 'gsm8k': {path} line {line_number} is malformed ({detail}); each line must be a "
                    'JSON object {"question": str, "answer": "... #### <number>"}'
                ) from None
            problems.append(Problem(f"{split}-{len(problems)}", question, answer, "all", solution))
            if limit is not None and len(problems) >= limit:
                break
    if not problems:
        raise ValueError(f"task 'gsm8k': {path} holds no problems")
    return problems


@register("task", "gsm8k", schema=GSM8KConfig)
class GSM8KTask(Task):
    step_delimiter = "\n"

    def __init__(self, cfg: GSM8KConfig):
        for key in ("train_limit", "test_limit"):
            limit = getattr(cfg, key)
            if limit is not None and limit < 1:
                raise ValueError(f"task 'gsm8k': {key} must be at least 1 or null (no limit), got {limit}")
        self.cfg = cfg
        self.max_new_tokens = cfg.max_new_tokens
        self.max_steps = cfg.max_steps
        self._cache: dict[str, list[Problem]] = {}

    def problems(self, split: str) -> list[Problem]:
        check_split(split)
        if split not in self._cache:
            path = self.cfg.train_path if split == "train" else self.cfg.test_path
            limit = self.cfg.train_limit if split == "train" else self.cfg.test_limit
            self._cache[split] = read_problems(Path(path), split, limit)
        return self._cache[split]

    def prompt(self, problem: Problem) -> str:
        return self.cfg.prompt_template.format(question=problem.question)

    def check(self, problem: Problem, solution: str) -> Verdict:
        answer = extract_answer(solution)
        if answer is None:
            return Verdict(correct=False, answer=None, parsed=False)
        return Verdict(correct=answers_match(answer, problem.answer), answer=answer, parsed=True)

    def is_terminal(self, solution: str) -> bool:
        return STRICT.search(solution) is not None or SENTENCE.search(solution) is not None
