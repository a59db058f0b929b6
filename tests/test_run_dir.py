"""A run directory belongs to one config: another config's run there is refused unless `resume=` names it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO, SMALL_RUN, compose
from omegaconf import OmegaConf

from sisearch.registry import ConfigError
from sisearch.run_dir import CONFIG_FILE, config_differences, prepare_run_dir


def holding_a_run(tmp_path, overrides: list[str]):
    """A directory as a run of `overrides` leaves it: its config saved, an iteration started."""
    run_dir = tmp_path / "run"
    (run_dir / "iterations" / "iter_00").mkdir(parents=True)
    (run_dir / CONFIG_FILE).write_text(OmegaConf.to_yaml(compose(overrides), resolve=True))
    return run_dir


def test_differences_name_each_key_with_both_values_and_ignore_display_keys():
    saved = "seed: 0\nprogress: true\nresume: null\nsearcher: {name: beam, width: 2}\ntrainer: {progress_bar: true}"
    new = "seed: 1\nprogress: false\nresume: /r\nsearcher: {name: beam, width: 4}\ntrainer: {progress_bar: false}\nx: 1"
    assert config_differences(saved, new) == ["searcher.width: 2 -> 4", "seed: 0 -> 1", "x: (absent) -> 1"]


def test_another_configs_run_is_refused_naming_the_keys_and_left_untouched(tmp_path):
    run_dir = holding_a_run(tmp_path, SMALL_RUN)
    before = (run_dir / CONFIG_FILE).read_text()
    with pytest.raises(ConfigError) as err:
        prepare_run_dir(compose([*SMALL_RUN, "seed=3", "searcher.n=5"]), run_dir, None)
    message = str(err.value)
    assert message.startswith(f"run directory {run_dir} holds a run of another config (")
    assert "seed: 0 -> 3" in message and "searcher.n: " in message and f"resume={run_dir}" in message
    assert "model." not in message and "task.test_size" not in message  # only the keys that differ
    assert (run_dir / CONFIG_FILE).read_text() == before


def test_the_same_config_continues_and_resume_accepts_another_with_a_warning(tmp_path):
    run_dir = holding_a_run(tmp_path, SMALL_RUN)
    assert prepare_run_dir(compose([*SMALL_RUN, "progress=true"]), run_dir, None) == run_dir
    with pytest.warns(UserWarning, match=r"differs from the one it started with: iterations: 1 -> 2"):
        prepare_run_dir(compose([*SMALL_RUN, "iterations=2", f"resume={run_dir}"]), tmp_path / "other", str(run_dir))
    assert "iterations: 2" in (run_dir / CONFIG_FILE).read_text()


def test_the_command_line_refuses_with_one_line_and_exit_code_2(tmp_path):
    run_dir = holding_a_run(tmp_path, SMALL_RUN)
    done = subprocess.run(
        [sys.executable, "-m", "sisearch.cli", *SMALL_RUN, "seed=4", f"hydra.run.dir={run_dir}"],
        cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("sisearch: error:")]
    assert len(errors) == 1 and "seed: 0 -> 4" in errors[0], done.stderr[-2000:]


def test_a_resumed_run_records_its_outcome_in_the_directory_it_resumed(tmp_path):
    from sisearch.cli import outcome_dir

    hydra_dir, resumed = tmp_path / "new", tmp_path / "old"
    hydra_dir.mkdir()
    resumed.mkdir()
    assert outcome_dir(hydra_dir, str(resumed)) == resumed  # failed.txt marks (and is cleared in) the run resumed
    assert outcome_dir(hydra_dir, None) == hydra_dir
    assert outcome_dir(hydra_dir, str(tmp_path / "missing")) == hydra_dir  # the failure to find it is this job's
