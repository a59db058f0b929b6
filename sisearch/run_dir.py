"""The run directory: its layout, which iterations finished, and the saved config.

```
run_config.yaml          the resolved config the run started with
metrics.jsonl            one row per finished iteration (rebuilt from the iterations' metrics.json)
iterations/iter_NN/      trees.jsonl, data.jsonl, policy/, and metrics.json, written last
```
An iteration is finished when its `metrics.json` exists; an unfinished one is redone on resume.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sisearch.files import atomic_write, write_jsonl

ITERATIONS_DIR = "iterations"
DONE_FILE = "metrics.json"
CONFIG_FILE = "run_config.yaml"
METRICS_FILE = "metrics.jsonl"


def iteration_dir(run_dir: Path, t: int) -> Path:
    return run_dir / ITERATIONS_DIR / f"iter_{t:02d}"


def finished_iterations(run_dir: Path) -> list[dict[str, Any]]:
    """Metrics rows of the finished iterations, in order, stopping at the first unfinished one."""
    rows, t = [], 0
    while (iteration_dir(run_dir, t) / DONE_FILE).is_file():
        rows.append(json.loads((iteration_dir(run_dir, t) / DONE_FILE).read_text()))
        t += 1
    return rows


def write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """`metrics.jsonl` rewritten whole, so it never holds a half-written or duplicated line."""
    write_jsonl(run_dir / METRICS_FILE, [json.dumps(row, sort_keys=True) for row in rows])


def finish_iteration(run_dir: Path, rows: list[dict[str, Any]], row: dict[str, Any]) -> None:
    """Mark iteration `row["iteration"]` finished and append its row to `rows` and `metrics.jsonl`."""
    atomic_write(iteration_dir(run_dir, int(row["iteration"])) / DONE_FILE, json.dumps(row, sort_keys=True))
    rows.append(row)
    write_metrics(run_dir, rows)


def same_run(saved_yaml: str, new_yaml: str) -> bool:
    """Whether two resolved configs describe the same run (`resume` itself may differ)."""
    saved, new = OmegaConf.create(saved_yaml), OmegaConf.create(new_yaml)
    for c in (saved, new):
        c.pop("resume", None)
    return saved == new


def prepare_run_dir(cfg: DictConfig, run_dir: Path, resume: str | None) -> Path:
    """The directory to run in (the `resume` one if given), with the resolved config saved in it."""
    run_dir = Path(resume) if resume else Path(run_dir)
    if resume and not run_dir.is_dir():
        raise FileNotFoundError(f"resume: run directory not found: {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / CONFIG_FILE
    resolved = OmegaConf.to_yaml(cfg, resolve=True)
    if saved.is_file() and (run_dir / ITERATIONS_DIR).exists() and not same_run(saved.read_text(), resolved):
        warnings.warn(f"resuming {run_dir} with a config that differs from the one it started with")
    atomic_write(saved, resolved)
    return run_dir
