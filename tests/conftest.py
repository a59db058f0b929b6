"""Shared fixtures: a small tiny model (trained once, cached), the arith task, an engine, configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "sisearch" / "conf"


def config_dirs() -> list[Path]:
    """sisearch's configs and those the installed plugins ship beside their code (the example plugin's)."""
    from sisearch.plugin_configs import plugin_config_dirs

    return [CONF, *plugin_config_dirs()]


TEST_CACHE = Path(os.environ.get("SISEARCH_TEST_CACHE", REPO / ".pytest_cache" / "sisearch-models"))

# A deliberately small tiny model for component tests: quick to train, imperfect, but it writes the format.
TEST_TINY = dict(
    hidden_size=64, num_layers=2, num_heads=4, intermediate_size=192, sft_steps=120, batch_size=32, lr=3e-3,
    cache_dir=str(TEST_CACHE), device="cpu",
)
# Loop overrides that keep an end-to-end run to seconds.
SMALL_RUN = [
    "experiment=rft",  # the component defaults (best_of_n -> correct_samples -> sft); tests swap parts of it
    "logger=none",
    "progress=false",
    "iterations=1",
    "problems_per_iteration=8",
    "task.test_size_per_difficulty=8",
    "trainer.progress_bar=false",
    "trainer.accelerator=cpu",
    *[f"model.{k}={v}" for k, v in TEST_TINY.items()],
]


@pytest.fixture(scope="session")
def tiny_cfg():
    from sisearch.models.tiny import TinyConfig

    return TinyConfig(**TEST_TINY)


@pytest.fixture(scope="session")
def tiny_dir(tiny_cfg) -> Path:
    from sisearch.models.tiny import ensure_tiny

    return ensure_tiny(tiny_cfg, progress_bar=False)


@pytest.fixture()
def tiny_policy(tiny_dir):
    """A fresh copy of the small tiny model for each test (tests may train it)."""
    from sisearch.models.policy import load_policy

    return load_policy(tiny_dir, device="cpu")


@pytest.fixture()
def arith_task():
    from sisearch.tasks.arith import ArithConfig, ArithTask

    return ArithTask(ArithConfig(train_size=200, test_size_per_difficulty=10))


@pytest.fixture()
def engine(tiny_policy):
    from sisearch.engines.hf import HFEngine, HFEngineConfig

    return HFEngine(HFEngineConfig(), tiny_policy)


def compose(overrides: list[str]):
    """The run config that `sisearch <overrides>` would get."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


@pytest.fixture()
def small_run():
    return list(SMALL_RUN)
