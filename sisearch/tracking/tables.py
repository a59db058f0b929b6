"""The rows of the per-iteration W&B tables, read back from the iteration's files (pure: no W&B here).

Reading the files rather than the loop's objects lets a resumed run send the tables of an iteration that
finished just before a kill, and keeps the loop unaware of the tracker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from sisearch.data.records import read_records
from sisearch.search.tree import Tree

PROBLEM_COLUMNS = ["problem_id", "question", "chosen", "answer", "correct", "value", "generated_tokens"]
RECORD_COLUMNS = ["problem_id", "prompt", "chosen", "rejected", "margin"]
EVAL_COLUMNS = ["problem_id", "question", "output", "answer", "correct"]


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]


def first_lines(path: Path, limit: int) -> list[str]:
    if limit <= 0 or not path.is_file():
        return []
    with path.open(encoding="utf-8") as handle:
        return [line for line in islice(handle, limit) if line.strip()]


def problem_table(trees: list[Tree]) -> Table:
    """One row per searched problem: the searcher's chosen solution, its verdict and value, and the cost."""
    rows = []
    for tree in trees:
        chosen = tree.chosen
        correct = bool(chosen and chosen.verdict and chosen.verdict.correct)
        rows.append([
            tree.problem_id, tree.prompt, chosen.state if chosen else "", tree.answer, correct,
            chosen.value if chosen else None, tree.cost.generated_tokens,
        ])
    return Table(list(PROBLEM_COLUMNS), rows)


def record_row(record: Any) -> list[Any]:
    """prompt, chosen, rejected and the margin for every record kind (pairs, ranked lists, SFT, traces)."""
    kind = type(record).__name__
    if kind == "PreferencePair":
        margin = None
        if record.chosen_value is not None and record.rejected_value is not None:
            margin = record.chosen_value - record.rejected_value  # the Q gap
        return [record.problem_id, record.prompt, record.chosen, record.rejected, margin]
    if kind == "RankedList":  # best against worst of the list
        return [record.problem_id, record.prompt, "".join(record.responses[0]), "".join(record.responses[-1]),
                record.scores[0] - record.scores[-1]]
    if kind == "CorrectionTrace":  # the attempt after correction against the first one
        return [record.problem_id, record.prompt, record.second_attempt, record.first_attempt,
                record.second_reward - record.first_reward]
    completion = getattr(record, "completion", "")
    return [getattr(record, "problem_id", ""), getattr(record, "prompt", ""), completion, None, None]


def record_table(records: list[Any]) -> Table:
    return Table(list(RECORD_COLUMNS), [record_row(r) for r in records])


def eval_table(outputs: list[dict[str, Any]]) -> Table:
    return Table(list(EVAL_COLUMNS), [[o["problem_id"], o["question"], o["output"], o["answer"], o["correct"]]
                                      for o in outputs])


def read_iteration_tables(directory: Path, problems: int, records: int, evals: int) -> tuple[dict[str, Table], list[Tree]]:
    """The tables of one iteration directory (empty ones left out), and the trees of its problem table."""
    trees = [Tree.from_json(line) for line in first_lines(directory / "trees.jsonl", problems)]
    tables = {"tables/search": problem_table(trees)}
    data = directory / "data.jsonl"
    if records > 0 and data.is_file():
        tables["tables/records"] = record_table(read_records(data, limit=records))
    tables["tables/eval"] = eval_table([json.loads(line) for line in first_lines(directory / "eval.jsonl", evals)])
    return {k: t for k, t in tables.items() if t.rows}, trees
