"""Sweeps as a user runs them: a multirun whose failing job does not stop the others, its report, the
objective returned to a sweeper (Optuna), and the SLURM launcher's config."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SMALL_RUN, TEST_CACHE
from PIL import Image

from sisearch.objective import objective_value
from sisearch.registry import ConfigError
from sisearch.report.cli import main as report_main

TINY_RUN = [o for o in SMALL_RUN if not o.startswith("iterations=")]


def sisearch(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "SISEARCH_CACHE": str(TEST_CACHE),
           "PYTHONPATH": str(REPO)}  # this checkout's sisearch, whichever one is installed
    return subprocess.run([sys.executable, "-m", "sisearch.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_objective_is_the_last_rows_metric_and_a_missing_one_lists_what_was_logged():
    rows = [{"iteration": 0, "eval/greedy/overall": 0.2}, {"iteration": 1, "eval/greedy/overall": 0.5, "train/loss": 1.5}]
    assert objective_value(rows, "eval/greedy/overall") == 0.5
    assert objective_value(rows, "train/loss") == 1.5
    with pytest.raises(ConfigError, match=r"objective 'train/los' was not logged .*: eval/greedy/overall, train/loss$"):
        objective_value(rows, "train/los")


def test_a_failing_job_leaves_the_multirun_going_and_the_report_has_the_other_three(tmp_path):
    # 2x2: the job with iterations=0 and a search metric as objective fails (iteration 0 searches nothing).
    sweep = tmp_path / "multirun"
    done = sisearch(["-m", *TINY_RUN, "iterations=0,2", "objective=eval/greedy/overall,search/generated_tokens",
                     f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("sisearch: error:")]
    assert len(errors) == 1 and f"{sweep / '1'}: objective 'search/generated_tokens' was not logged" in errors[0]
    assert "Traceback" not in done.stderr
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0", "1", "2", "3"]
    assert [(sweep / j / "failed.txt").exists() for j in jobs] == [False, True, False, False]
    for job in ("2", "3"):  # the jobs after the failing one ran to their end
        assert (sweep / job / "iterations" / "iter_02" / "metrics.json").is_file()

    assert report_main([str(sweep), "--out", str(tmp_path / "report")]) == 0
    with (tmp_path / "report" / "report.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 3
    assert [(r["iterations"], r["objective"]) for r in table] == [
        ("0", "eval/greedy/overall"), ("2", "eval/greedy/overall"), ("2", "search/generated_tokens")]
    assert {"ops_2_mean", "overall_mean", "overall_sd", "generated_tokens_mean", "seconds_mean"} <= set(table[0])
    assert float(table[0]["generated_tokens_mean"]) == 0 and float(table[1]["generated_tokens_mean"]) > 0
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert markdown.count("\n| `") == 3 and f"`{sweep / '1'}`: objective" in markdown
    for name in ("eval_greedy_overall_vs_iteration.png", "eval_greedy_overall_vs_tokens.png"):
        with Image.open(tmp_path / "report" / name) as image:
            assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200
            image.verify()


def test_the_report_averages_seeds_into_one_row_per_configuration(tmp_path):
    sweep = tmp_path / "multirun"
    done = sisearch(["-m", *TINY_RUN, "iterations=1", "seed=0,1", "searcher.n=2,3", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert report_main([str(sweep)]) == 0
    with (sweep / "report" / "report.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [(r["searcher.n"], r["seeds"], r["runs"]) for r in table] == [("2", "0 1", "2"), ("3", "0 1", "2")]
    assert all(r["overall_sd"] != "" for r in table)


def test_optuna_runs_two_trials_and_gets_each_runs_objective(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="hydra-optuna-sweeper is not installed")
    sweep = tmp_path / "optuna"
    tiny = [o for o in TINY_RUN if o != "experiment=rft"]  # the default recipe: the search space is DPO's
    done = sisearch(["hparams_search=optuna", "hydra.sweeper.n_trials=2", "iterations=1", "searcher.n=2", *tiny,
                     f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    trials = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(trials) == 2
    objectives = [yaml.safe_load((t / "metrics.jsonl").read_text().splitlines()[-1])["eval/greedy/overall"] for t in trials]
    assert results["best_value"] == max(objectives)
    learning_rates = {yaml.safe_load((t / ".hydra" / "overrides.yaml").read_text())[0] for t in trials}
    assert len(learning_rates) == 2 and set(results["best_params"]) == {"optimizer.lr", "optimizer.beta"}


def test_the_slurm_launcher_config_composes(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher is not installed")
    done = sisearch(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    launcher = yaml.safe_load(done.stdout)["hydra"]["launcher"]
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher["partition"] == "gpu" and launcher["gpus_per_node"] == 1 and launcher["timeout_min"] == 120
