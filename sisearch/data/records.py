"""Training records that builders produce and optimizers consume; JSONL on disk."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Sequence

from sisearch.files import write_jsonl


@dataclass
class SFTExample:
    """A completion to imitate (rejection-sampling fine-tuning)."""

    problem_id: str
    prompt: str
    completion: str
    metadata: dict[str, Any] = field(default_factory=dict)
    # token-exact: the ids the engine read and sampled (None: the optimizer tokenizes the text)
    prompt_ids: list[int] | None = None
    completion_ids: list[int] | None = None


@dataclass
class PreferencePair:
    """A chosen and a rejected continuation of the same context.

    `prompt` is the whole context (the task prompt plus any shared solution prefix); only the continuations'
    tokens enter the loss. Values and visit counts are filled in by searchers that have them.

    Token-exact records also carry the ids the engine read and sampled; the optimizer scores those ids, cut
    into prompt and continuations at the first differing token. The texts are the same continuations for
    reading (their cut is at the first differing character, which can lie a few characters off).
    """

    problem_id: str
    prompt: str
    chosen: str
    rejected: str
    chosen_value: float | None = None
    rejected_value: float | None = None
    chosen_visits: int | None = None
    rejected_visits: int | None = None
    # whether each continuation ends the solution (then EOS is part of what is scored)
    chosen_complete: bool = True
    rejected_complete: bool = True
    # whether the chosen continuation ends in a verified-correct, untruncated solution (None: not known)
    chosen_correct: bool | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    prompt_ids: list[int] | None = None  # None: the optimizer tokenizes the texts
    chosen_ids: list[int] | None = None
    rejected_ids: list[int] | None = None


RECORD_TYPES: dict[str, type] = {"sft": SFTExample, "pair": PreferencePair}


def record_kind(record_type: type) -> str:
    for kind, cls in RECORD_TYPES.items():
        if cls is record_type:
            return kind
    raise ValueError(f"{record_type.__name__} is not a registered record type")


def register_record_type(kind: str, cls: type) -> None:
    RECORD_TYPES[kind] = cls


def write_records(path: Path, records: Sequence[Any]) -> None:
    """Training records as JSON lines, written atomically (each line carries its record kind)."""
    write_jsonl(path, [json.dumps({"kind": record_kind(type(r)), **asdict(r)}, sort_keys=True) for r in records])


def read_records(path: Path, limit: int | None = None) -> list[Any]:
    """The records of a data.jsonl file (its first `limit` only, when given)."""
    records = []
    with Path(path).open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if limit is not None and len(records) >= limit:
                break
            data = json.loads(line)
            kind = data.pop("kind", None)
            if kind not in RECORD_TYPES:
                raise ValueError(f"{path} line {line_number}: unknown record kind {kind!r}; known: {list(RECORD_TYPES)}")
            cls = RECORD_TYPES[kind]
            known = {f.name for f in fields(cls)}
            records.append(cls(**{k: v for k, v in data.items() if k in known}))
    return records


def iter_kinds(records: Iterable[Any]) -> set[str]:
    return {record_kind(type(r)) for r in records}
