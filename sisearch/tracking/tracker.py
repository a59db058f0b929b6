"""Where a run's numbers go: per-step training curves, one row per iteration, tables and artifacts.

Every run keeps its per-step curves in `<run dir>/steps/metrics.csv` (Lightning's CSVLogger) and its iteration
rows in `metrics.jsonl`. With `logger=wandb`, a W&B run mirrors both (through Lightning's WandbLogger), with
per-iteration tables and artifacts. Its id is kept in the run directory (`tracking.json`), so a resumed run
continues the same W&B run.

A killed process's W&B data is lost from an unpredictable point on (W&B buffers). So a resumed run asks W&B how
far it got (the server's step online, the offline files offline) and sends what is missing from the files on
disk; rows W&B already has are not sent again. W&B's own step counter orders the rows: it is the run's global
optimizer step plus the number of iteration rows before the row, so an iteration row (at the global step where
its iteration ended) never shares a W&B step with another row.
"""

from __future__ import annotations

import csv
import logging
import uuid
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sisearch import registry
from sisearch.run_dir import iteration_dir
from sisearch.tracking.config import LoggerConfig, wandb_mode
from sisearch.tracking.identity import hydra_job, run_identity
from sisearch.tracking.offline_files import last_step
from sisearch.tracking.state import TrackingState
from sisearch.tracking.steps import StepSink

log = logging.getLogger("sisearch")

GLOBAL_STEP = "trainer/global_step"  # Lightning's name for the x-axis of every W&B chart
STEPS_DIR = "steps"
StepRows = list[tuple[int, dict[str, float]]]


def logger_config(cfg: Any) -> LoggerConfig:
    return registry.to_typed(LoggerConfig, cfg or {}, "logger config")


def finished_step(rows: list[dict[str, Any]]) -> int:
    """The run's global step at the end of its last finished iteration (0 for a fresh run)."""
    return int(rows[-1].get(GLOBAL_STEP, 0)) if rows else 0


def read_csv_rows(path: Path, upto: int) -> StepRows:
    """(step, metrics) of each row of a CSVLogger file up to step `upto`; empty cells left out."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept = []
    for row in rows:
        step = int(float(row.pop("step")))
        if step <= upto:
            kept.append((step, {k: float(v) for k, v in row.items() if v not in ("", None)}))
    return kept


def open_steps_csv(run_dir: Path, upto: int) -> tuple[Any, StepRows]:
    """The run's per-step CSV logger, holding the rows up to step `upto` (a killed iteration's later rows are
    dropped: the iteration runs again and writes them again), and those rows."""
    from lightning.pytorch.loggers import CSVLogger

    kept = read_csv_rows(Path(run_dir) / STEPS_DIR / "metrics.csv", upto)
    logger = CSVLogger(str(run_dir), name="", version=STEPS_DIR, flush_logs_every_n_steps=1)
    writer = logger.experiment  # making the writer empties the old file; the kept rows go back in
    for step, row in kept:
        writer.log_metrics(row, step)
    logger.save()
    return logger, kept


class Tracker:
    """The run's per-step CSV, and the W&B mirror when `logger=wandb`."""

    def __init__(self, run_dir: Path, rows: list[dict[str, Any]], mirror: "WandbMirror | None" = None):
        start = finished_step(rows)
        self.csv, kept = open_steps_csv(run_dir, start)
        self.mirror = mirror
        writers = [lambda metrics, step: self.csv.log_metrics(metrics, step=step)]
        if mirror is not None:
            mirror.catch_up(run_dir, rows, kept)
            writers.append(mirror.write_step)
        self.steps = StepSink(writers, start_step=start)

    def stamp(self, row: dict[str, Any]) -> dict[str, Any]:
        """The iteration's row with the run's global step at its end (where a resumed run continues)."""
        return {**row, GLOBAL_STEP: self.steps.global_step}

    def log_iteration(self, run_dir: Path, row: dict[str, Any]) -> None:
        if self.mirror is not None:
            self.mirror.write_iteration(run_dir, row)

    def finish(self, status: str) -> None:
        self.csv.finalize(status)
        if self.mirror is not None:
            self.mirror.finish(status)


class WandbMirror:
    """One W&B run per run directory: per-step rows, iteration rows with tables, artifacts."""

    def __init__(self, cfg: LoggerConfig, run_dir: Path, config: dict[str, Any], last_iteration: int):
        import wandb
        from lightning.pytorch.loggers import WandbLogger

        self.cfg, self.config, self.last_iteration = cfg, config, last_iteration
        state = TrackingState.load(run_dir)
        if state.wandb_id is None:
            state.wandb_id = uuid.uuid4().hex[:12]  # W&B ids: lowercase letters and digits
            state.save(run_dir)
        self.id = state.wandb_id
        on_disk = last_step(run_dir, self.id)  # what earlier offline segments hold (read before a new one starts)
        identity = run_identity(cfg, hydra_job())
        self.backend = WandbLogger(
            project=cfg.project, entity=cfg.entity, save_dir=str(run_dir),
            offline=wandb_mode(cfg.mode) == "offline", id=self.id, resume="allow",
            group=identity.group, name=identity.name, job_type=identity.job_type, tags=list(cfg.tags),
            settings=wandb.Settings(quiet=True),  # W&B's essentials only: the run's own lines tell the story
        )
        # Lightning always passes W&B's retired `anonymous` setting, and W&B warns about it on every run.
        getattr(self.backend, "_wandb_init", {}).pop("anonymous", None)
        self.backend.log_hyperparams(config)
        self.run = self.backend.experiment
        # A resumed online run's step counter continues after the server's last row.
        self.floor = max(on_disk, int(getattr(self.run, "step", 0) or 0) - 1)
        self.iteration_rows = 0  # iteration rows sent or skipped so far: part of each row's W&B step


    def send(self, metrics: dict[str, Any], global_step: int, wandb_step: int) -> bool:
        if wandb_step <= self.floor:  # W&B has it from a killed process
            return False
        self.run.log({**metrics, GLOBAL_STEP: global_step}, step=wandb_step)
        return True

    def write_step(self, metrics: dict[str, float], step: int) -> None:
        self.send(metrics, step, step + self.iteration_rows)

    def write_iteration(self, run_dir: Path, row: dict[str, Any]) -> None:
        """The row (its train/* means as train_iteration/*: train/* are the per-step curves), the iteration's
        tables, its data.jsonl and, after the last iteration, the final policy as artifacts."""
        t, global_step = int(row["iteration"]), int(row.get(GLOBAL_STEP, 0))
        self.iteration_rows += 1
        directory = iteration_dir(run_dir, t)
        if global_step + self.iteration_rows <= self.floor:
            return
        metrics = {iteration_key(k): v for k, v in row.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k != GLOBAL_STEP}
        metrics.update(self.tables(directory))
        self.send(metrics, global_step, global_step + self.iteration_rows)
        if self.cfg.artifacts and (directory / "data.jsonl").is_file():
            self.log_artifact("data", "dataset", directory / "data.jsonl", [f"iter_{t:02d}"])
        if self.cfg.artifacts and t == self.last_iteration and t > 0:
            if (directory / "policy").is_dir():
                self.log_artifact("policy", "model", directory / "policy", ["final"])
            else:
                log.info("no saved policy in %s (save_checkpoints=false): no policy artifact", directory)

    def catch_up(self, run_dir: Path, rows: list[dict[str, Any]], steps: StepRows) -> None:
        """Send what W&B lacks of the finished iterations, from the files: their steps and their rows, in order."""
        pending = list(steps)
        for row in rows:
            while pending and pending[0][0] <= int(row.get(GLOBAL_STEP, 0)):
                self.write_step(pending[0][1], pending[0][0])
                pending.pop(0)
            self.write_iteration(run_dir, row)

    def tables(self, directory: Path) -> dict[str, Any]:
        import wandb

        from sisearch.search.render import render_html
        from sisearch.tracking.tables import read_iteration_tables

        sizes = self.cfg.tables
        tables, trees = read_iteration_tables(directory, sizes.problems, sizes.records, sizes.eval)
        out = {}
        for key, table in tables.items():
            columns, rows = table.columns, table.rows
            if key == "tables/search":  # the tree itself, foldable, in the table's cell
                columns = [*columns, "tree"]
                rows = [[*r, wandb.Html(render_html(tree), inject=False)] for r, tree in zip(rows, trees)]
            out[key] = wandb.Table(columns=columns, data=rows)
        return out

    def log_artifact(self, kind: str, artifact_type: str, path: Path, aliases: list[str]) -> None:
        import wandb

        artifact = wandb.Artifact(f"{kind}-{self.id}", type=artifact_type, metadata={"config": self.config})
        if path.is_dir():
            artifact.add_dir(str(path))
        else:
            artifact.add_file(str(path))
        self.run.log_artifact(artifact, aliases=aliases)

    def finish(self, status: str) -> None:
        """Close the W&B run, marked failed on a crash (a crash must not leave it open)."""
        import wandb

        try:
            self.backend.finalize(status)
        finally:
            wandb.finish(exit_code=0 if status == "success" else 1)


def iteration_key(key: str) -> str:
    return "train_iteration/" + key.removeprefix("train/") if key.startswith("train/") else key


class SilentTracker:
    """The tracker of a distributed run's other ranks: rank 0 alone writes the curves and talks to W&B."""

    steps = None  # no step sink: their Trainers log nothing

    def stamp(self, row: dict[str, Any]) -> dict[str, Any]:
        return row

    def log_iteration(self, run_dir: Path, row: dict[str, Any]) -> None:
        pass

    def finish(self, status: str) -> None:
        pass


def start_tracking(cfg: DictConfig, run_dir: Path, rows: list[dict[str, Any]], write: bool = True) -> Tracker:
    if not write:
        return SilentTracker()  # type: ignore[return-value] -- the same three calls
    logger_cfg = logger_config(cfg.get("logger"))
    mirror = None
    if logger_cfg.backend == "wandb":
        mirror = WandbMirror(logger_cfg, run_dir, OmegaConf.to_container(cfg, resolve=True), int(cfg.iterations))
    return Tracker(run_dir, rows, mirror)
