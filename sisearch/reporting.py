"""What the console shows of a run's results: one line per finished iteration, and a table at the end."""

from __future__ import annotations

import logging
from typing import Any

from rich.console import Console
from rich.table import Table

log = logging.getLogger("sisearch")

ACCURACY = "eval/greedy/overall"


def iteration_line(row: dict[str, Any], base: dict[str, Any] | None = None) -> str:
    """`iteration 2: accuracy 0.412 (base 0.388), 60012 tokens searched, 312 records, 45.2 s`."""
    parts = [f"iteration {int(row['iteration'])}: accuracy {row.get(ACCURACY, float('nan')):.3f}"]
    if base is not None and base is not row and ACCURACY in base:
        parts[0] += f" (base {base[ACCURACY]:.3f})"
    if "search/generated_tokens" in row:
        parts.append(f"{int(row['search/generated_tokens'])} tokens searched")
    if "data/records" in row:
        parts.append(f"{int(row['data/records'])} records")
    if "iteration/seconds" in row:
        parts.append(f"{row['iteration/seconds']:.1f} s")
    return ", ".join(parts)


def report_iteration(rows: list[dict[str, Any]]) -> None:
    log.info("%s", iteration_line(rows[-1], rows[0]))


def print_summary(rows: list[dict[str, Any]], console: Console | None = None) -> None:
    """A table of held-out greedy accuracy per iteration and difficulty."""
    if not rows:
        return
    keys = sorted({k for row in rows for k in row if k.startswith("eval/greedy/")}, key=lambda k: (k.endswith("overall"), k))
    table = Table(title="held-out greedy accuracy")
    table.add_column("iteration", justify="right")
    for key in keys:
        table.add_column(key.removeprefix("eval/greedy/"), justify="right")
    table.add_column("train records", justify="right")
    for row in rows:
        records = row.get("data/records")
        table.add_row(
            str(row["iteration"]),
            *[f"{row[k]:.3f}" if k in row else "-" for k in keys],
            "-" if records is None else str(int(records)),
        )
    (console or Console()).print(table)
