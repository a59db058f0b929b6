"""The `logger` config group: which backend records the run, and what the W&B run shows."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sisearch.checks import require_choice

BACKENDS = ("wandb", "none")
WANDB_MODES = ("auto", "online", "offline")


@dataclass
class TableSizes:
    """Rows per iteration of each W&B table (0: no table)."""

    problems: int = 8  # searched problems: question, chosen answer, verdict, value, tokens, the tree as HTML
    records: int = 8  # training records: prompt, chosen, rejected, margin (Q gap)
    eval: int = 16  # held-out greedy outputs with their verdicts

    def __post_init__(self) -> None:
        if min(self.problems, self.records, self.eval) < 0:
            raise ValueError("tables: sizes must be >= 0")


@dataclass
class LoggerConfig:
    """`backend: none` keeps per-step metrics in `<run dir>/steps/metrics.csv`; `wandb` sends them, the
    iteration rows, tables and artifacts to a W&B run (offline unless W&B is configured)."""

    backend: str = "none"
    project: str = "sisearch"
    entity: str | None = None
    mode: str = "auto"  # auto | online | offline
    group: str | None = None  # null: a multirun's sweep directory, so its jobs show together
    name: str | None = None  # the run's name; null: the job's overrides (`optimizer=sft,seed=1`)
    tags: list[str] = field(default_factory=list)
    job_type: str | None = None  # null: the experiment recipe (`experiment=...`), else "default"
    artifacts: bool = True  # each iteration's data.jsonl and the final policy as W&B artifacts
    tables: TableSizes = field(default_factory=TableSizes)

    def __post_init__(self) -> None:
        require_choice("backend", self.backend, BACKENDS)
        if self.mode not in WANDB_MODES:
            raise ValueError(f"unknown mode '{self.mode}'; allowed: {', '.join(WANDB_MODES)}")


def wandb_mode(mode: str) -> str:
    """`auto` goes online only when the user has configured W&B (an API key or a login), else offline."""
    if mode not in WANDB_MODES:
        raise ValueError(f"logger 'wandb': unknown mode '{mode}'; allowed: {', '.join(WANDB_MODES)}")
    if mode != "auto":
        return mode
    configured = os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") == "online"
    netrc = Path.home() / ".netrc"
    if not configured and netrc.is_file():
        configured = "api.wandb.ai" in netrc.read_text(errors="ignore")
    return "online" if configured else "offline"
