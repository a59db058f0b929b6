"""Reading run directories: the resolved config, the metrics rows, what the user chose, and the outcome."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from sisearch.run_dir import CONFIG_FILE, FAILED_FILE, METRICS_FILE, flatten

HYDRA_OVERRIDES = Path(".hydra") / "overrides.yaml"


@dataclass
class Run:
    directory: Path
    config: dict[str, Any]  # the resolved config, flattened to dotted keys
    overrides: dict[str, str] | None  # Hydra's command-line choices (`optimizer=sft`), when Hydra ran it
    rows: list[dict[str, Any]]  # metrics.jsonl: one row per finished iteration, 0 = the base policy
    failed: str | None  # the error of a failed run (failed.txt)

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def finished(self) -> bool:
        """Every iteration the config asked for has its row (and nothing failed afterwards)."""
        wanted = int(self.config.get("iterations", -1))
        return self.failed is None and bool(self.rows) and int(self.rows[-1]["iteration"]) == wanted


def run_directories(paths: list[Path]) -> list[Path]:
    """Each path that is a run directory, and every run directory below the others (a multirun's jobs)."""
    found: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise FileNotFoundError(f"not a directory: {path}")
        below = [path] if (path / CONFIG_FILE).is_file() else sorted(p.parent for p in path.rglob(CONFIG_FILE))
        if not below:
            raise FileNotFoundError(f"no run under {path} (a run directory holds {CONFIG_FILE})")
        found += [p for p in below if p not in found]
    return sorted(found, key=natural_key)


def natural_key(path: Path) -> list[Any]:
    """Multirun job directories 0, 1, ..., 10 in numeric order."""
    return [int(part) if part.isdigit() else part for part in path.parts]


def parse_overrides(lines: list[str]) -> dict[str, str]:
    """Hydra's override strings as {key: value}, parsed by Hydra's own grammar (`+key=v`, quoting, ...)."""
    parsed = OverridesParser.create().parse_overrides(overrides=lines)
    return {o.get_key_element().lstrip("+~"): o.get_value_element_as_str() for o in parsed}


def read_run(directory: Path) -> Run:
    config = flatten(OmegaConf.to_container(OmegaConf.load(directory / CONFIG_FILE)))
    overrides_file = directory / HYDRA_OVERRIDES
    overrides = parse_overrides(list(OmegaConf.load(overrides_file))) if overrides_file.is_file() else None
    metrics = directory / METRICS_FILE
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] if metrics.is_file() else []
    failed = (directory / FAILED_FILE).read_text().strip() if (directory / FAILED_FILE).is_file() else None
    return Run(directory, config, overrides, rows, failed)


def read_runs(paths: list[Path]) -> list[Run]:
    return [read_run(directory) for directory in run_directories(paths)]
