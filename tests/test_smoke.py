"""Smoke tests as a user runs sisearch: progress bars on, in a terminal and piped.

Every option of every config group below (discovered from `sisearch/conf/` and the plugins' `conf/`, so a new YAML file is covered without
editing this file) runs one tiny iteration of the loop twice: once with output on a pseudo-terminal and
once with output to a plain file. A crash hid for a whole wave behind tests that switch progress off.
The console scripts and the benchmarks each start and exit 0 with `--help`.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import rich
from conftest import CONF, REPO, TEST_CACHE, TEST_TINY, compose, config_dirs
from omegaconf import DictConfig, ListConfig, open_dict

from sisearch import registry
from sisearch.loop import run
from sisearch.run_config import validate_config

GROUPS = ("searcher", "rewarder", "builder", "optimizer", "experiment", "engine", "logger")
OPTIONS = [
    f"{group}={path.stem}" for group in GROUPS for conf in config_dirs() for path in sorted((conf / group).glob("*.yaml"))
]

# One tiny iteration: progress stays on (the default), sizes shrink.
BASE = [
    "iterations=1",
    "problems_per_iteration=2",
    "task.test_size_per_difficulty=2",
    "logger=none",
    "trainer.accelerator=cpu",
    *[f"model.{k}={v}" for k, v in TEST_TINY.items()],
]
# Caps on search and labelling sizes, applied wherever a composed component has such a key.
CAPS = {
    "n": 2, "samples": 2, "simulations": 2, "first_root_factor": 1, "children": 2, "rollouts": 2, "beam_size": 2,
    "expansions": 2, "max_steps": 4, "problems": 4, "samples_per_problem": 2, "k": 2,
}


def shrink(node: DictConfig | ListConfig) -> None:
    items = node.items() if isinstance(node, DictConfig) else enumerate(node)
    for key, value in list(items):
        if isinstance(value, (DictConfig, ListConfig)):
            shrink(value)
        elif key in CAPS and isinstance(value, int) and not isinstance(value, bool) and value > CAPS[key]:
            node[key] = CAPS[key]


def smoke_config(option: str) -> DictConfig:
    """The config of `sisearch <option>` at tiny sizes; a builder gets an optimizer that trains on its records."""
    cfg = compose(BASE + [option])
    if option.startswith("builder="):
        produces = registry.lookup("builder", cfg.builder.name).cls.produces
        if registry.lookup("optimizer", cfg.optimizer.name).cls.consumes is not produces:
            fitting = [
                path.stem for path in sorted((CONF / "optimizer").glob("*.yaml"))
                if registry.lookup("optimizer", compose(BASE + [f"optimizer={path.stem}"]).optimizer.name).cls.consumes
                is produces
            ]
            cfg = compose(BASE + [f"optimizer={fitting[0]}", option])
    with open_dict(cfg):
        for kind in ("searcher", "rewarder", "builder", "optimizer"):
            shrink(cfg[kind])
    return cfg


@contextmanager
def console_output(kind: str, log: Path) -> Iterator[None]:
    """stdout and stderr on a pseudo-terminal ("tty", drained by a thread) or on a plain file ("pipe")."""
    saved_console = rich._console
    rich._console = None  # rich's global console decides once whether it is a terminal: make it look again
    if kind == "pipe":
        with log.open("w") as out, redirect_stdout(out), redirect_stderr(out):
            yield
    else:
        master, slave = pty.openpty()
        received: list[bytes] = []

        def drain() -> None:
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    return
                if not data:
                    return
                received.append(data)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        out = os.fdopen(slave, "w", buffering=1, encoding="utf-8")
        try:
            assert out.isatty()
            with redirect_stdout(out), redirect_stderr(out):
                yield
        finally:
            out.close()
            reader.join(timeout=10)
            os.close(master)
            log.write_bytes(b"".join(received))
    rich._console = saved_console


@pytest.mark.parametrize("output", ["tty", "pipe"])
@pytest.mark.parametrize("option", OPTIONS)
def test_every_group_option_runs_an_iteration_with_progress_on(option, output, tmp_path, monkeypatch):
    monkeypatch.setattr("sisearch.rewards.labelling.HEAD_CACHE", str(tmp_path / "heads"))  # heads train afresh
    cfg = smoke_config(option)
    try:
        validate_config(cfg)
    except registry.ConfigError as err:  # an optional package (vLLM) that this machine lacks: named at start
        assert "pip install" in str(err), str(err)
        pytest.skip(f"needs an optional package: {err}")
    assert cfg.progress and cfg.trainer.progress_bar
    with console_output(output, tmp_path / "console.log"):
        rows = run(cfg, tmp_path / "run")
    assert [row["iteration"] for row in rows] == [0, 1]
    if output == "tty":  # the bars were drawn on the terminal (each shows at least its last frame)
        shown = (tmp_path / "console.log").read_text(errors="replace")
        assert "search (" in shown, shown[-2000:]
        assert "training" in shown or rows[1]["train/skipped"] == 1.0, shown[-2000:]


def cli(args: list[str], tmp_path: Path, terminal: bool) -> tuple[int, str]:
    """`sisearch args` in a subprocess, its output on a pseudo-terminal or a pipe; (exit code, output)."""
    env = {**os.environ, "HOME": str(tmp_path / "home"), "SISEARCH_CACHE": str(TEST_CACHE)}
    command = [sys.executable, "-c", "from sisearch.cli import main; main()", *args]
    if not terminal:
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        return done.returncode, done.stdout + done.stderr
    master, slave = pty.openpty()
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    received = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        received.append(data)
    os.close(master)
    return process.wait(timeout=600), b"".join(received).decode(errors="replace")


@pytest.mark.parametrize("terminal", [True, False], ids=["tty", "pipe"])
def test_trained_prm_first_use_from_the_command_line(terminal, tmp_path):
    """The bug report's command: the prm head trains on first use inside the run's progress display."""
    args = [
        "rewarder=prm", "iterations=1", "logger=none", "problems_per_iteration=2", "task.test_size_per_difficulty=2",
        "searcher.n=2", "rewarder.train.problems=4", "rewarder.train.samples_per_problem=2",
        "rewarder.train.rollouts=2", f"hydra.run.dir={tmp_path / 'run'}",
        *[f"model.{k}={v}" for k, v in TEST_TINY.items()],
    ]
    code, output = cli(args, tmp_path, terminal)
    assert code == 0, output[-3000:]
    assert "Traceback" not in output
    assert (tmp_path / "run" / "iterations" / "iter_01" / "metrics.json").is_file()


def entry_points() -> list[list[str]]:
    """Each console script of pyproject.toml and each benchmark script, as a command line with `--help`."""
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    commands = [[sys.executable, "-c", f"import sys; from {target.replace(':', ' import ')}; sys.exit({target.split(':')[1]}())"]
                for target in scripts.values()]
    commands += [[sys.executable, str(path)] for path in sorted((REPO / "benchmarks").glob("*.py"))]
    return commands


def test_console_scripts_and_benchmarks_answer_help(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}
    processes = [
        (command, subprocess.Popen([*command, "--help"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True))
        for command in entry_points()
    ]
    assert len(processes) >= 2 + 5
    for command, process in processes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, f"{command} --help exited {process.returncode}: {output[-2000:]}"
        assert "usage" in output.lower() or "help" in output.lower(), output[-500:]
