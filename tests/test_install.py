"""sisearch as a user installs it: a non-editable wheel with its configs inside, run from an empty directory;
a plugin package built outside this repository adds a searcher and its YAML; a user's config directory adds
options to the built-in ones."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TEST_CACHE, TEST_TINY

# What pyproject.toml packages (the source is copied so that building leaves nothing in the checkout).
SOURCES = ("pyproject.toml", "README.md", "sisearch", "plugins", "hydra_plugins")
TINY_ITERATION = [
    "iterations=1", "problems_per_iteration=4", "task.test_size_per_difficulty=4", "logger=none",
    "progress=false", "trainer.accelerator=cpu", *[f"model.{k}={v}" for k, v in TEST_TINY.items()],
]
PLUGIN = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "sisearch-demo-plugin"
        version = "0.1.0"

        [project.entry-points."sisearch.plugins"]
        demo = "sisearch_demo_plugin"

        [tool.setuptools.packages.find]
        include = ["sisearch_demo_plugin*"]

        [tool.setuptools.package-data]
        "sisearch_demo_plugin" = ["conf/**/*.yaml"]
        """,
    "sisearch_demo_plugin/__init__.py": '''
        """A searcher from outside sisearch: n whole solutions at each of several temperatures."""
        from dataclasses import dataclass, field

        from sisearch.registry import register
        from sisearch.search.base import Searcher
        from sisearch.search.requests import Expand, Score


        @dataclass
        class MixedTemperatureConfig:
            name: str = "mixed_temperature"
            n: int = 2
            temperatures: list[float] = field(default_factory=lambda: [0.5, 1.0])
            answer_rule: str = "highest_value"


        @register("searcher", "mixed_temperature", schema=MixedTemperatureConfig)
        class MixedTemperature(Searcher):
            def __init__(self, cfg):
                self.cfg, self.answer_rule = cfg, cfg.answer_rule

            def search(self, problem, tree):
                children = []
                for temperature in self.cfg.temperatures:
                    children += yield Expand(tree.root, n=self.cfg.n, temperature=temperature, whole=True)
                scores = yield Score(children)
                for child, score in zip(children, scores):
                    child.value = child.reward = child.q = score
                    child.visits = 1
                tree.root.visits = len(children)
        ''',
    "sisearch_demo_plugin/conf/searcher/mixed_temperature.yaml": """
        name: mixed_temperature
        n: 1
        temperatures: [0.7, 1.0]
        answer_rule: majority
        """,
}


def check(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def build_wheel(source: Path, out: Path) -> Path:
    """A wheel built offline from `source` with the build tools already installed."""
    check([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
           "-w", str(out), str(source)], source)
    (wheel,) = out.glob("*.whl")
    return wheel


def user_env(home: Path) -> dict[str, str]:
    """The environment of a user's shell: no path into this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SISEARCH_CONFIG_DIR")}
    return {**env, "HOME": str(home), "SISEARCH_CACHE": str(TEST_CACHE), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtual environment that sees the installed dependencies, with sisearch's wheel installed."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(REPO / name, source / name)
    wheel = build_wheel(source, root / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    for packaged in ("sisearch/conf/config.yaml", "sisearch/conf/searcher/mcts.yaml",
                     "sisearch/conf/hparams_search/optuna.yaml", "sisearch/conf/hydra/launcher/slurm.yaml",
                     "plugins/example_plugin/conf/builder/shortest_correct.yaml",
                     "hydra_plugins/sisearch_searchpath/__init__.py"):
        assert packaged in names, f"{packaged} is not in {wheel.name}"
    check([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(root / "venv")], root)
    python = root / "venv" / "bin" / "python"
    check([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
           str(wheel)], root)
    return root / "venv"


def test_the_installed_wheel_runs_an_iteration_from_an_empty_directory(venv, tmp_path):
    env = user_env(tmp_path / "home")
    where = check([str(venv / "bin" / "python"), "-c", "import sisearch; print(sisearch.__file__)"], tmp_path, env)
    assert where.startswith(str(venv)), where
    work = tmp_path / "empty"
    work.mkdir()
    check([str(venv / "bin" / "sisearch"), *TINY_ITERATION, "searcher.n=2", "hydra.run.dir=run"], work, env)
    assert (work / "run" / "iterations" / "iter_01" / "metrics.json").is_file()


def test_a_plugin_outside_the_repository_adds_its_searcher_and_yaml(venv, tmp_path):
    source = tmp_path / "demo-plugin"
    for name, text in PLUGIN.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(textwrap.dedent(text).lstrip())
    wheel = build_wheel(source, tmp_path / "dist")
    check([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
           "--no-index", "-q", str(wheel)], tmp_path)
    env = user_env(tmp_path / "home")
    work = tmp_path / "empty"
    work.mkdir()
    check([str(venv / "bin" / "sisearch"), "searcher=mixed_temperature", *TINY_ITERATION, "hydra.run.dir=run"], work, env)
    saved = yaml.safe_load((work / "run" / "run_config.yaml").read_text())
    assert saved["searcher"] == {"name": "mixed_temperature", "n": 1, "temperatures": [0.7, 1.0],
                                 "answer_rule": "majority"}
    trees = (work / "run" / "iterations" / "iter_01" / "trees.jsonl").read_text().splitlines()
    assert len(trees) == 4
    listing = check([str(venv / "bin" / "sisearch-components"), "searcher"], work, env)
    assert "mixed_temperature" in listing and "temperatures" in listing


def test_a_user_config_directory_adds_options(tmp_path):
    user_conf = tmp_path / "my_conf"
    (user_conf / "searcher").mkdir(parents=True)
    (user_conf / "searcher" / "wide_beam.yaml").write_text("defaults:\n  - beam\n  - _self_\n\nbeam_size: 5\n")
    env = {**user_env(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    for args in (["--config-dir", str(user_conf)], [f"hydra.searchpath=[file://{user_conf}]"]):
        job = yaml.safe_load(check([sys.executable, "-m", "sisearch.cli", *args, "searcher=wide_beam", "--cfg", "job"],
                                   tmp_path, env))
        assert job["searcher"]["name"] == "beam" and job["searcher"]["beam_size"] == 5
        assert job["optimizer"]["name"] == "dpo"  # the built-in groups are all still there
