"""A run killed at any moment continues from its last finished iteration, leaving finished files untouched,
and ends with the same metrics as a run that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, SMALL_RUN, compose

from sisearch.loop import run

OVERRIDES = [*SMALL_RUN, "iterations=2", "problems_per_iteration=4", "searcher.n=4", "task.test_size_per_difficulty=4"]


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not (k.endswith("seconds") or "per_second" in k)} for row in rows]


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def finished_files(run_dir: Path, iterations: range) -> dict[str, bytes]:
    files = {}
    for t in iterations:
        directory = run_dir / "iterations" / f"iter_{t:02d}"
        assert (directory / "metrics.json").is_file()
        files.update({str(p.relative_to(run_dir)): p.read_bytes() for p in directory.rglob("*") if p.is_file()})
    return files


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> list[dict]:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    run(compose(OVERRIDES), run_dir)
    return metrics(run_dir)


def sisearch_command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "sisearch.cli", *OVERRIDES, f"hydra.run.dir={run_dir}"]


def cli_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false"}


def kill_when(process: subprocess.Popen, path: Path, timeout: float = 600.0) -> None:
    """SIGKILL `process` as soon as `path` exists (no clean-up code of the run gets to run)."""
    deadline = time.time() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the run ended (code {process.returncode}) before {path} appeared")
        if time.time() > deadline:
            process.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_killed_run_resumes_with_the_same_command(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    command = sisearch_command(run_dir)
    process = subprocess.Popen(command, cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_when(process, run_dir / "iterations" / "iter_02" / "trees.jsonl")
    assert process.returncode == -signal.SIGKILL
    # Killed inside iteration 2: its search is written, the iteration is not finished.
    assert not (run_dir / "iterations" / "iter_02" / "metrics.json").exists()
    before = finished_files(run_dir, range(2))
    assert [r["iteration"] for r in metrics(run_dir)] == [0, 1]

    resumed = subprocess.run(command, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert finished_files(run_dir, range(2)) == before
    assert without_timing(metrics(run_dir)) == without_timing(uninterrupted)
    # The resumed run started over inside iteration 2 and did not redo the finished ones.
    assert f"resuming {run_dir} after iteration 1" in resumed.stdout + resumed.stderr
    # The per-step CSV holds every optimizer step once: the killed iteration's rows were written again, not twice.
    steps = [line.split(",")[0] for line in (run_dir / "steps" / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == [str(s) for s in range(1, int(metrics(run_dir)[-1]["trainer/global_step"]) + 1)]


def test_resume_dir_continues_an_interrupted_run(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    run(compose([*OVERRIDES, "iterations=1"]), run_dir)
    before = finished_files(run_dir, range(2))
    # What a kill leaves behind in the unfinished iteration: some of its files and a temporary one.
    partial = run_dir / "iterations" / "iter_02"
    partial.mkdir(parents=True)
    (partial / "trees.jsonl").write_text('{"half": ')
    (partial / ".data.jsonl.tmp").write_text("")
    # A kill between iteration 1's metrics.json and the rewrite of metrics.jsonl leaves the latter a row short.
    jsonl = run_dir / "metrics.jsonl"
    jsonl.write_text(jsonl.read_text().splitlines(keepends=True)[0])

    # `resume=DIR` wins over the directory the run would otherwise use; iterations=2 extends the run.
    with pytest.warns(UserWarning, match="differs from the one it started with"):
        rows = run(compose([*OVERRIDES, f"resume={run_dir}"]), tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    assert finished_files(run_dir, range(2)) == before
    assert not (partial / ".data.jsonl.tmp").exists()
    assert without_timing(metrics(run_dir)) == without_timing(uninterrupted)


def test_resume_of_a_missing_directory_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="resume: run directory not found"):
        run(compose([*OVERRIDES, f"resume={tmp_path / 'nope'}"]), tmp_path / "run")


def test_resume_without_the_last_checkpoint_is_refused(tmp_path, monkeypatch):
    """Continuing from the base model after a finished training iteration would silently mix two runs."""
    run_dir = tmp_path / "run"
    (run_dir / "iterations" / "iter_00").mkdir(parents=True)
    (run_dir / "iterations" / "iter_01").mkdir(parents=True)
    for t in (0, 1):
        (run_dir / "iterations" / f"iter_{t:02d}" / "metrics.json").write_text(json.dumps({"iteration": t}))
    monkeypatch.setattr("sisearch.models.tiny.TinyModel.load", lambda *a, **k: pytest.fail("model loaded"))
    with pytest.raises(FileNotFoundError) as err:
        run(compose([*OVERRIDES, "save_checkpoints=false"]), run_dir)
    assert str(err.value).startswith(f"cannot resume {run_dir}: iteration 1 finished without a saved policy")
