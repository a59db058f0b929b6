"""Where metrics go: W&B through Lightning's WandbLogger (offline unless configured), and the console."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

LOGGERS = ("wandb", "none")
WANDB_MODES = ("auto", "online", "offline")


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


class RunLogger:
    """Logs one row of metrics per iteration, with the iteration as the step."""

    def __init__(self, cfg: Any, run_dir: Path, config: dict[str, Any]):
        name = (cfg or {}).get("name", "none")
        if name not in LOGGERS:
            raise ValueError(f"unknown logger '{name}'; allowed: {', '.join(LOGGERS)}")
        self.backend = None
        if name == "wandb":
            from lightning.pytorch.loggers import WandbLogger

            self.backend = WandbLogger(
                project=cfg.get("project", "sisearch"),
                entity=cfg.get("entity"),
                save_dir=str(run_dir),
                offline=wandb_mode(cfg.get("mode", "auto")) == "offline",
                tags=list(cfg.get("tags") or []),
            )
            self.backend.log_hyperparams(config)

    def log(self, row: dict[str, Any]) -> None:
        if self.backend is not None:
            metrics = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "iteration"}
            self.backend.log_metrics(metrics, step=int(row["iteration"]))

    def finish(self, status: str = "success") -> None:
        """Close the W&B run; `status` "failed" marks it so (a crash must not leave it open)."""
        if self.backend is not None:
            self.backend.finalize(status)
            import wandb

            wandb.finish(exit_code=0 if status == "success" else 1)


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
