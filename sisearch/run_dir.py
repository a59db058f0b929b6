"""The run directory: its layout, which iterations finished, and the saved config.

```
run_config.yaml          the resolved config the run started with
metrics.jsonl            one row per finished iteration (rebuilt from the iterations' metrics.json)
iterations/iter_NN/      trees.jsonl, data.jsonl, policy/, and metrics.json, written last
failed.txt               the error, when the command that ran here failed (removed when one succeeds)
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
from sisearch.registry import ConfigError

ITERATIONS_DIR = "iterations"
DONE_FILE = "metrics.json"
CONFIG_FILE = "run_config.yaml"
METRICS_FILE = "metrics.jsonl"
FAILED_FILE = "failed.txt"


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


def finish_iteration(run_dir: Path, rows: list[dict[str, Any]], row: dict[str, Any], write: bool = True) -> None:
    """Mark iteration `row["iteration"]` finished and append its row to `rows` and `metrics.jsonl` (`write=False`,
    the other ranks of a distributed run: to `rows` only)."""
    if not write:
        rows.append(row)
        return
    atomic_write(iteration_dir(run_dir, int(row["iteration"])) / DONE_FILE, json.dumps(row, sort_keys=True))
    rows.append(row)
    write_metrics(run_dir, rows)


# Keys that change how a run is shown, how fast or where it continues, not what it computes: they may differ when a
# run is continued. `progress` is interpolated into components, so a leaf of that name counts anywhere.
DISPLAY_LEAVES = ("progress", "progress_bar", "threads")


SHOWN_DIFFERENCES = 8  # keys named in a refusal; the rest are counted


def display_only(key: str) -> bool:
    return key == "resume" or key.rsplit(".", 1)[-1] in DISPLAY_LEAVES


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A resolved config as {dotted key: leaf value}; lists (and empty mappings) are compared whole."""
    if isinstance(node, dict) and node:
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: node}


def config_differences(saved_yaml: str, new_yaml: str) -> list[str]:
    """The keys whose values differ between two resolved configs, as `key: saved -> new` (display keys aside)."""
    saved, new = (flatten(OmegaConf.to_container(OmegaConf.create(y))) for y in (saved_yaml, new_yaml))
    missing = "(absent)"
    return [
        f"{key}: {saved.get(key, missing)} -> {new.get(key, missing)}"
        for key in sorted(saved.keys() | new.keys())
        if not display_only(key) and saved.get(key, missing) != new.get(key, missing)
    ]


def record_outcome(run_dir: Path, error: str | None) -> None:
    """Mark the directory failed with `error`, or clear an earlier mark: a report tells failed runs apart by it
    (a run can fail after its last iteration, e.g. over its objective, so finished files do not tell)."""
    marker = run_dir / FAILED_FILE
    if error is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(marker, error + "\n")
    elif marker.exists():
        marker.unlink()


def shown(differences: list[str]) -> str:
    more = len(differences) - SHOWN_DIFFERENCES
    return "; ".join(differences[:SHOWN_DIFFERENCES]) + (f"; and {more} more" if more > 0 else "")


def chosen_run_dir(run_dir: Path, resume: str | None) -> Path:
    """Where a run works: the directory `resume` names, else its own (Hydra's output directory)."""
    return Path(resume) if resume else Path(run_dir)


def prepare_run_dir(cfg: DictConfig, run_dir: Path, resume: str | None) -> Path:
    """The directory to run in (the `resume` one if given), with the resolved config saved in it.

    A directory that already holds a run of another config is refused unless `resume` names it: running
    there would mix two runs' iterations and overwrite the record of the first one's config.
    """
    run_dir = chosen_run_dir(run_dir, resume)
    if resume and not run_dir.is_dir():
        raise FileNotFoundError(f"resume: run directory not found: {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / CONFIG_FILE
    resolved = OmegaConf.to_yaml(cfg, resolve=True)
    if saved.is_file() and (run_dir / ITERATIONS_DIR).exists():
        differences = config_differences(saved.read_text(), resolved)
        if differences and not resume:
            raise ConfigError(
                f"run directory {run_dir} holds a run of another config ({shown(differences)}); "
                f"use a new directory, or continue that run with resume={run_dir}"
            )
        if differences:
            warnings.warn(
                f"resuming {run_dir} with a config that differs from the one it started with: {shown(differences)}"
            )
    atomic_write(saved, resolved)
    return run_dir
