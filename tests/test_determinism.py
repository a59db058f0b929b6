"""On CPU, the same seed and config give identical metrics, trees, training data and weights."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import compose

from sisearch.loop import run

# Small enough for seconds per run, big enough that search, training and evaluation all do real work.
SIZES = ["problems_per_iteration=4", "searcher.n=4", "task.test_size_per_difficulty=4"]


def without_timing(rows: list[dict]) -> list[dict]:
    """Metrics minus wall-clock measurements (`*/seconds`, `*per_second*`), the only things allowed to vary."""
    return [{k: v for k, v in row.items() if not (k.endswith("seconds") or "per_second" in k)} for row in rows]


def iteration_files(run_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted((run_dir / "iterations").rglob("*"))
        if p.is_file() and p.name != "metrics.json"  # metrics.json holds the timings; compared above
    }


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param([], id="best_of_n-sft"),
        pytest.param(["optimizer=dpo", "eval.samples=2"], id="best_of_n-dpo-sampled_eval"),
    ],
)
def test_same_seed_and_config_give_identical_runs(tmp_path, small_run, overrides):
    cfg = compose(small_run + SIZES + overrides)
    first = run(cfg, tmp_path / "a")
    second = run(cfg, tmp_path / "b")
    assert without_timing(first) == without_timing(second)
    assert [r["iteration"] for r in first] == [0, 1]
    files_a, files_b = iteration_files(tmp_path / "a"), iteration_files(tmp_path / "b")
    for name in ("iterations/iter_01/trees.jsonl", "iterations/iter_01/data.jsonl",
                 "iterations/iter_01/policy/model.safetensors"):
        assert name in files_a
    assert files_a.keys() == files_b.keys()
    assert [k for k in files_a if files_a[k] != files_b[k]] == []
    assert (tmp_path / "a" / "iterations" / "iter_01" / "trees.jsonl").read_text().count("\n") == 4


def test_a_different_seed_gives_different_searches(tmp_path, small_run):
    """The control: the comparison above could not pass by ignoring the seed."""
    run(compose(small_run + SIZES + ["iterations=1"]), tmp_path / "a")
    run(compose(small_run + SIZES + ["iterations=1", "seed=1"]), tmp_path / "b")
    trees = [(tmp_path / d / "iterations" / "iter_01" / "trees.jsonl").read_bytes() for d in ("a", "b")]
    assert trees[0] != trees[1]
