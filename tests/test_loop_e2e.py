"""One end-to-end run of the loop at tiny sizes, through the same config composition as the CLI."""

import json

from conftest import compose

from sisearch.loop import run


def test_loop_runs_end_to_end_and_writes_every_iteration(tmp_path, small_run):
    cfg = compose(small_run + ["iterations=2"])
    rows = run(cfg, tmp_path)
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    for key in ("eval/greedy/ops_2", "eval/greedy/ops_4", "eval/greedy/ops_6", "eval/greedy/overall", "eval/chance"):
        assert 0.0 <= rows[-1][key] <= 1.0
    assert rows[1]["search/solutions"] == 8 * 8  # best_of_n: n=8 whole solutions per problem
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [0, 1, 2]
    for t in (1, 2):
        directory = tmp_path / "iterations" / f"iter_{t:02d}"
        assert (directory / "trees.jsonl").is_file() and (directory / "data.jsonl").is_file()
        assert (directory / "policy" / "config.json").is_file()
        assert len((directory / "trees.jsonl").read_text().splitlines()) == 8


def test_dpo_optimizer_runs_in_the_loop(tmp_path, small_run):
    rows = run(compose(small_run + ["optimizer=dpo"]), tmp_path)
    assert rows[-1]["iteration"] == 1
    # outcome_pairs came in with optimizer=dpo; either pairs were trained on or the skip is recorded
    assert rows[-1]["train/skipped"] in (0.0, 1.0)
    if rows[-1]["train/skipped"] == 0.0:
        assert "train/rewards/accuracies" in rows[-1]
