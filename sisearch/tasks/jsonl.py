"""File-backed tasks: where their JSONL files are, reading them with line-numbered errors, config checks.

Every file-backed task (gsm8k, math) reads one JSON object per line. A line that cannot become a problem
fails the whole read with one line of text naming the file, the line number, what is wrong and the
format the task expects, so a user fixes the data instead of debugging a half-read dataset.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sisearch.tasks.base import Problem, Task, check_split

# Datasets shipped inside the package (package data), found from any working directory.
SHIPPED_DATA = Path(__file__).resolve().parent / "data"


class RecordError(ValueError):
    """One record cannot become a problem; the reader adds the file and line number."""


def dataset_path(configured: str | None, shipped: Path) -> Path:
    """The file a task reads: `configured` if set (relative to the working directory), else `shipped`."""
    if configured is None or not configured.strip():
        return shipped
    return Path(configured).expanduser()


def text_field(record: dict[str, Any], key: str) -> str:
    """The string at `key`; numbers are taken as their text (answer fields are often bare numbers)."""
    if key not in record:
        raise RecordError(f"missing field '{key}'")
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RecordError(f"field '{key}' must be a string, got {type(value).__name__}")
    return value if isinstance(value, str) else str(value)


def optional_text_field(record: dict[str, Any], key: str) -> str | None:
    """The string at `key`, or None when the field is absent, null or blank."""
    if record.get(key) is None or (isinstance(record[key], str) and not record[key].strip()):
        return None
    return text_field(record, key)


def read_problems(
    path: Path,
    *,
    task: str,
    split: str,
    limit: int | None,
    expected: str,
    make: Callable[[dict[str, Any], str], Problem],
) -> list[Problem]:
    """The first `limit` problems of `path` (all when None); `make(record, problem_id)` builds each one and
    raises RecordError (or KeyError) for a record it cannot use. `expected` describes a good line."""
    if not path.is_file():
        where = "" if path.is_absolute() else f" (relative to the working directory {Path.cwd()})"
        raise FileNotFoundError(f"task '{task}': {split} file not found: {path}{where}")
    problems: list[Problem] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise RecordError(f"not a JSON object but {type(record).__name__}")
                problems.append(make(record, f"{split}-{len(problems)}"))
            except (json.JSONDecodeError, RecordError) as err:
                raise ValueError(
                    f"task '{task}': {path} line {line_number} is malformed ({err}); each line must be {expected}"
                ) from None
            if limit is not None and len(problems) >= limit:
                break
    if not problems:
        raise ValueError(f"task '{task}': {path} holds no problems")
    return problems


def check_positive(task: str, *, nullable: bool, **values: int | None) -> None:
    """Refuse a count below 1 (a config's `__post_init__` calls this); `nullable`: None means no limit."""
    for key, value in values.items():
        if value is None and nullable:
            continue
        if value is None or value < 1:
            allowed = "at least 1 or null (no limit)" if nullable else "at least 1"
            raise ValueError(f"task '{task}': {key} must be {allowed}, got {value}")


def check_prompt_template(task: str, template: str) -> None:
    """Refuse a prompt template that does not place the question or has other fields."""
    try:
        filled = template.format(question="\0")
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(
            f"task '{task}': prompt_template is not a valid template ({type(err).__name__}: {err}); its only field "
            "must be {question}, and literal braces are written {{ and }}"
        ) from None
    if "\0" not in filled:
        raise ValueError(f"task '{task}': prompt_template must contain {{question}}, got {template!r}")


class JsonlTask(Task):
    """A task read from local JSON-lines files, one problem per line (gsm8k, math).

    A subclass says which file ships with sisearch (`shipped`), what a line must hold (`expected`) and how a
    line becomes a Problem (`make_problem`); its config has train/test paths and limits, a text
    `prompt_template`, a `prompt` section, `max_new_tokens` and `max_steps`.
    """

    step_delimiter = "\n"

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self.prompt_cfg = cfg.prompt
        self.max_new_tokens = cfg.max_new_tokens
        self.max_steps = cfg.max_steps
        self._cache: dict[str, list[Problem]] = {}

    @abstractmethod
    def shipped(self, split: str) -> Path:
        """The file read when the split's path is not set."""

    @abstractmethod
    def expected(self) -> str:
        """What one line must hold, for the error message of a bad line."""

    @abstractmethod
    def make_problem(self, record: dict[str, Any], problem_id: str) -> Problem:
        """The problem one line describes (raise RecordError for a line that does not fit)."""

    def path(self, split: str) -> Path:
        check_split(split)
        return dataset_path(self.cfg.train_path if split == "train" else self.cfg.test_path, self.shipped(split))

    def problems(self, split: str) -> list[Problem]:
        if split not in self._cache:
            limit = self.cfg.train_limit if split == "train" else self.cfg.test_limit
            self._cache[split] = read_problems(
                self.path(split), task=self.cfg.name, split=split, limit=limit, expected=self.expected(),
                make=self.make_problem,
            )
        return self._cache[split]

    def plain_prompt(self, question: str) -> str:
        return self.cfg.prompt_template.format(question=question)
