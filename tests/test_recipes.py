"""Every recipe in sisearch/conf/experiment/ runs one iteration of the loop at tiny sizes, through the CLI's composition."""

from __future__ import annotations

import pytest
from conftest import compose

from sisearch.data.records import read_records
from sisearch.loop import run

# (recipe, searcher, builder, optimizer, record kind)
RECIPES = [
    ("rft", "best_of_n", "correct_samples", "sft"),
    ("iterative_rpo", "best_of_n", "outcome_pairs", "dpo"),
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


def test_the_default_experiment_is_iterative_rpo_at_a_token_budget():
    cfg = compose([])
    assert (cfg.searcher.name, cfg.builder.name, cfg.optimizer.name) == ("best_of_n", "outcome_pairs", "dpo")
    assert (cfg.optimizer.lr, cfg.optimizer.nll_weight, cfg.search_token_budget) == (1e-4, 1.0, 60000)
    assert compose(["experiment=iterative_rpo"]) == cfg  # the recipe and the defaults are the same run
    # any one part swaps without a recipe's settings leaking into it; the builder follows the optimizer
    assert compose(["optimizer=sft"]).builder.name == "correct_samples"
    assert compose(["experiment=rft"]).optimizer.name == "sft"
    step_dpo = compose(["experiment=step_dpo"])
    assert (step_dpo.searcher.name, step_dpo.builder.name, step_dpo.searcher.rollouts) == ("best_first", "step_pairs", 1)
    beam = compose(["experiment=step_dpo", "searcher=beam"])  # the recipe's searcher settings stay behind
    assert beam.searcher.name == "beam" and "rollouts" not in beam.searcher


def test_step_level_recipes_set_the_papers_options():
    mcts_dpo = compose(["experiment=mcts_dpo"])
    # every simulation ends in a checked answer; O from the verdict, C from a critic-only rewarder
    assert mcts_dpo.searcher.complete_at_depth_limit and mcts_dpo.searcher.outcome == "verifier"
    assert mcts_dpo.rewarder.name == "self_judge" and mcts_dpo.searcher.step_weight == 1.0
    assert mcts_dpo.optimizer.nll_on == "correct"  # no SFT on chosen steps of near-neutral pairs
    assert mcts_dpo.builder.require_correct and mcts_dpo.builder.min_q_gap == 0.0  # --filter, no gap threshold
    for recipe in ("cpl_step_apo", "tpo"):  # ORM-only: no critic, so the outcome is not counted twice
        cfg = compose([f"experiment={recipe}"])
        assert (cfg.rewarder.name, cfg.searcher.step_weight, cfg.searcher.outcome) == ("orm", 0.0, "verifier")
    cpl = compose(["experiment=cpl_step_apo"])
    assert cpl.searcher.simulations >= 64 and cpl.searcher.backup == "mean"  # CPL: 100-200, AlphaMath's mean
    assert not cpl.builder.extend_only_children  # a pair is one plan step
    assert compose(["experiment=tpo"]).builder.score == "outcome"  # ranked by outcome, not visit-weighted Q
