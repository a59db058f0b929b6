"""What a run records: per-step training curves (TRL's names) on one global step, iteration rows, W&B tables
and artifacts, read back from the offline W&B files; a CSV of the same curves without W&B; a killed run that
resumes continues the same W&B run without writing a step twice."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import REPO, SMALL_RUN, compose
from test_resume import cli_env, kill_when


from sisearch.loop import run
from sisearch.tracking.config import LoggerConfig
from sisearch.tracking.offline_files import read_offline_runs
from sisearch.tracking.identity import run_identity

# Iterative RPO on best-of-8 samples: pairs to train on in every iteration (the weak test model needs 8 to have
# right and wrong samples of one problem), so every TRL name has a value.
RPO = [o for o in SMALL_RUN if o != "logger=none"] + [
    "optimizer=rpo", "builder=for_rpo", "searcher=best_of_n", "searcher.n=8", "problems_per_iteration=8",
]
TRL_STEP_KEYS = [f"train/{k}" for k in (
    "loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
    "logps/rejected", "nll_loss", "learning_rate", "grad_norm",
)]


def step_rows(history: list[dict]) -> list[dict]:
    return [row for row in history if "train/loss" in row]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_wandb_offline_run_holds_per_step_trl_curves_tables_and_artifacts(tmp_path):
    rows = run(compose([*RPO, "logger=wandb", "logger.mode=offline", "logger.tags=[smoke]"]), tmp_path)
    wandb_run = read_offline_runs(tmp_path)
    assert wandb_run.ids == {json.loads((tmp_path / "tracking.json").read_text())["wandb_id"]}
    assert wandb_run.job_types == {"default"}  # outside a Hydra app the recipe is unknown (CLI: test below)
    steps = step_rows(wandb_run.history)
    total = int(rows[1]["train/steps"])
    assert total >= 1 and rows[1]["trainer/global_step"] == total
    assert [r["trainer/global_step"] for r in steps] == list(range(1, total + 1))
    for key in TRL_STEP_KEYS:
        assert all(key in r for r in steps), key
    # the iteration's mean of the per-step losses is the metrics.jsonl row's train/loss (one micro-batch a step)
    assert sum(r["train/loss"] for r in steps) / total == pytest.approx(rows[1]["train/loss"])
    assert steps[0]["train/rewards/accuracies"] == 0.0  # policy == reference at the first step: a tie is no hit
    iteration_rows = [r for r in wandb_run.history if "iteration" in r]
    assert [r["iteration"] for r in iteration_rows] == [0, 1]
    assert iteration_rows[1]["train_iteration/loss"] == pytest.approx(rows[1]["train/loss"])
    assert iteration_rows[1]["bstar/pass@k"] == rows[1]["bstar/pass@k"]
    for table in ("tables/search", "tables/records", "tables/eval"):
        assert iteration_rows[1][f"{table}/_type"] == "table-file", table
    assert iteration_rows[1]["tables/search/nrows"] == 8 and iteration_rows[1]["tables/eval/nrows"] == 16
    kinds = {(a["type"], tuple(sorted(a["aliases"]))) for a in wandb_run.artifacts}
    assert ("dataset", ("iter_01", "latest")) in kinds and ("model", ("final", "latest")) in kinds
    assert all(a["metadata"]["config"]["optimizer"]["name"] == "dpo" for a in wandb_run.artifacts)


def test_logger_none_keeps_the_per_step_curves_in_a_csv_of_the_run_dir(tmp_path):
    callback = "trainer.callbacks=[{_target_:lightning.pytorch.callbacks.LearningRateMonitor,logging_interval:step}]"
    rows = run(compose([*RPO, "logger=none", "iterations=2", callback]), tmp_path)
    steps = read_csv(tmp_path / "steps" / "metrics.csv")
    total = int(rows[1]["train/steps"] + rows[2]["train/steps"])
    assert [int(r["step"]) for r in steps] == list(range(1, total + 1))  # one global step across iterations
    assert [r["trainer/global_step"] for r in rows] == [0, rows[1]["train/steps"], total]
    for key in [*TRL_STEP_KEYS, "train/lr-AdamW"]:  # the configured callback logs through the same logger
        assert all(r[key] != "" for r in steps), key
    first = steps[: int(rows[1]["train/steps"])]
    assert sum(float(r["train/loss"]) for r in first) / len(first) == pytest.approx(rows[1]["train/loss"])


def own_wandb_env() -> dict[str, str]:
    """The CLI's environment without this process's W&B service: each CLI process starts its own, as a user's
    would (a shared one would still hold the killed process's run)."""
    return {k: v for k, v in cli_env().items() if k != "WANDB_SERVICE"}


def test_killed_wandb_run_resumes_the_same_run_without_duplicate_steps(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "sisearch.cli", *RPO, "iterations=2", "logger=wandb", "logger.mode=offline",
               f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(command, cwd=REPO, env=own_wandb_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_when(process, run_dir / "iterations" / "iter_02" / "eval.jsonl")  # iteration 2 trained, not finished
    assert process.returncode == -signal.SIGKILL
    resumed = subprocess.run(command, cwd=REPO, env=own_wandb_env(), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    wandb_run = read_offline_runs(run_dir)
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 2  # two processes, two segments ...
    assert len(wandb_run.ids) == 1  # ... of one W&B run
    steps = [r["trainer/global_step"] for r in step_rows(wandb_run.history)]
    assert steps == list(range(1, int(rows[-1]["trainer/global_step"]) + 1))  # every step once, in order
    assert [r["iteration"] for r in wandb_run.history if "iteration" in r] == [0, 1, 2]


def hydra_job(mode: str, sweep: str, overrides: list[str], experiment: str | None) -> SimpleNamespace:
    return SimpleNamespace(mode=mode, sweep=SimpleNamespace(dir=sweep), overrides=SimpleNamespace(task=overrides),
                           job=SimpleNamespace(override_dirname=",".join(sorted(overrides))),
                           runtime=SimpleNamespace(choices={"experiment": experiment}))


def test_multirun_jobs_share_a_group_and_are_named_from_their_swept_overrides():
    argv = ["-m", "experiment=mcts_dpo", "optimizer=sft,dpo", "seed=range(0,2)", "model.lr=3e-3"]
    job = hydra_job("RunMode.MULTIRUN", "multirun/2026-11-29/16-20-00",
                    ["experiment=mcts_dpo", "optimizer=sft", "seed=1", "model.lr=3e-3"], "mcts_dpo")
    identity = run_identity(LoggerConfig(backend="wandb"), job, argv)
    assert (identity.group, identity.name, identity.job_type) == ("multirun/2026-11-29/16-20-00", "optimizer=sft,seed=1", "mcts_dpo")
    single = run_identity(LoggerConfig(backend="wandb"), hydra_job("RunMode.RUN", "multirun/x", ["seed=1"], None), [])
    assert (single.group, single.name, single.job_type) == (None, None, "default")  # W&B names a single run
    chosen = run_identity(LoggerConfig(backend="wandb", group="g", name="n", job_type="j"), job, argv)
    assert (chosen.group, chosen.name, chosen.job_type) == ("g", "n", "j")


def test_extending_a_finished_wandb_run_sends_only_the_new_iteration(tmp_path):
    """W&B already holds iterations 0 and 1: a run extended to 2 iterations in the same directory sends
    iteration 2 alone, its steps after iteration 1's (a changed config continues only through `resume=`)."""
    run(compose([*RPO, "logger=wandb", "logger.mode=offline"]), tmp_path)
    with pytest.warns(UserWarning, match="differs from the one it started with: iterations: 1 -> 2"):
        extended = [*RPO, "logger=wandb", "logger.mode=offline", "iterations=2", f"resume={tmp_path}"]
        rows = run(compose(extended), tmp_path)
    wandb_run = read_offline_runs(tmp_path)
    assert len(wandb_run.ids) == 1 and len(list(tmp_path.glob("wandb/offline-run-*"))) == 2
    steps = [r["trainer/global_step"] for r in step_rows(wandb_run.history)]
    assert steps == list(range(1, int(rows[2]["trainer/global_step"]) + 1))
    assert [r["iteration"] for r in wandb_run.history if "iteration" in r] == [0, 1, 2]
    assert [r["_step"] for r in wandb_run.history] == sorted({r["_step"] for r in wandb_run.history})
