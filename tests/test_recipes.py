"""Every recipe in conf/experiment/ runs one iteration of the loop at tiny sizes, through the CLI's composition."""

from __future__ import annotations

import pytest
from conftest import compose

from sisearch.data.records import read_records
from sisearch.loop import run

# (recipe, searcher, builder, optimizer, record kind)
RECIPES = [
    ("rft", "best_of_n", "correct_samples", "sft"),
    ("mcts_dpo", "mcts", "step_pairs", "dpo"),
    ("step_dpo", "best_first", "step_pairs", "dpo"),
    ("cpl_step_apo", "mcts", "advantage_pairs", "step_apo"),
    ("tpo", "mcts", "ranked_lists", "tpo"),
    ("score", "best_of_n", "correction_traces", "score"),
]
# Smaller searches than the recipes' defaults keep each run to seconds; the composition is what is tested.
SHRINK = {
    "mcts": ["searcher.simulations=2", "searcher.first_root_factor=2"],
    "best_first": ["searcher.children=2", "searcher.rollouts=2"],
    "best_of_n": ["searcher.n=4"],
}


@pytest.mark.parametrize("recipe,searcher,builder,optimizer", RECIPES, ids=[r[0] for r in RECIPES])
def test_recipe_runs_one_iteration(recipe, searcher, builder, optimizer, tmp_path, small_run):
    cfg = compose(small_run + [f"experiment={recipe}", "problems_per_iteration=4", *SHRINK[searcher]])
    assert (cfg.searcher.name, cfg.builder.name, cfg.optimizer.name) == (searcher, builder, optimizer)
    rows = run(cfg, tmp_path)
    assert [r["iteration"] for r in rows] == [0, 1]
    assert 0.0 <= rows[1]["eval/greedy/overall"] <= 1.0
    records = read_records(tmp_path / "iterations" / "iter_01" / "data.jsonl")
    assert rows[1]["data/records"] == len(records)
    if records:
        assert rows[1]["train/skipped"] == 0.0 and rows[1]["train/steps"] >= 1


def test_the_default_experiment_is_step_dpo_at_a_token_budget():
    cfg = compose([])
    assert (cfg.searcher.name, cfg.builder.name, cfg.optimizer.name) == ("best_first", "step_pairs", "dpo")
    assert (cfg.optimizer.lr, cfg.optimizer.nll_weight, cfg.search_token_budget) == (1e-4, 1.0, 60000)
    assert compose(["experiment=step_dpo"]) == cfg  # the recipe and the defaults are the same run
    # any one part swaps without the recipe's settings leaking into it; the builder follows the optimizer
    assert compose(["searcher=beam"]).searcher.name == "beam"
    assert compose(["optimizer=sft"]).builder.name == "correct_samples"
    rft = compose(["experiment=rft"])
    assert (rft.searcher.name, rft.builder.name, rft.optimizer.name) == ("best_of_n", "correct_samples", "sft")
