"""Each step-level fix of the recipes seen alone: one iteration with the fix reverted (or an option added), on the
same problems, seed and token budget as the recipe itself.

    python benchmarks/fix_ablation.py [--seed 0] [--only mcts_dpo ...] [override ...]

For every variant: one iteration's search and build from the base model (pair quality judged by the task's
exact step truth, as in `benchmarks/pair_quality.py`), then training of the base model on those records and
its held-out greedy accuracy. A variant differs from its recipe's row in one setting only (the "original"
rows revert them all), so its row shows what that one fix does to the data and to one iteration's training.
Extra `key=value` arguments are Hydra overrides for every variant (e.g. `search_token_budget=5000`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pair_quality import measure, split_overrides  # noqa: E402
from recipes_compare import print_rows  # noqa: E402

# The reverted settings are the recipes' values before the fixes (README, "Results on the embedded default").
MCTS_DPO_ORIGINAL = [
    "rewarder=composite", "searcher.outcome=score", "searcher.complete_at_depth_limit=false",
    "builder.require_correct=false", "optimizer.nll_on=all",
]
# (recipe, label, overrides): the first row of each recipe is the recipe as configured
VARIANTS: list[tuple[str, str, list[str]]] = [
    ("mcts_dpo", "as configured (all fixes)", []),
    ("mcts_dpo", "- forced completion at the depth limit (1)", ["searcher.complete_at_depth_limit=false"]),
    ("mcts_dpo", "- outcome from the verdict: O = 2s-1 of composite (2)", ["rewarder=composite", "searcher.outcome=score"]),
    ("mcts_dpo", "- correct-trajectory filter (3)", ["builder.require_correct=false"]),
    ("mcts_dpo", "- NLL only on verified-correct chosen (4)", ["optimizer.nll_on=all"]),
    ("mcts_dpo", "+ hinted critic, gold in the prompt (5)", ["rewarder.template='{reference}\n{prompt}{solution}'"]),
    ("mcts_dpo", "+ ground-truth injection (6)", ["searcher.include_gt=true"]),
    ("mcts_dpo", "original (1-4 reverted)", MCTS_DPO_ORIGINAL),
    ("cpl_step_apo", "as configured (all fixes)", []),
    ("cpl_step_apo", "- 64 simulations: 16 (7)", ["searcher.simulations=16"]),
    ("cpl_step_apo", "- mean backup: visit_weighted (7)", ["searcher.backup=visit_weighted"]),
    ("cpl_step_apo", "- single-step pairs: extended (7)", ["builder.extend_only_children=true"]),
    ("cpl_step_apo", "original (7 reverted)", ["searcher.simulations=16", "searcher.backup=visit_weighted",
                                               "builder.extend_only_children=true"]),
    ("tpo", "as configured (ranked by outcome)", []),
    ("tpo", "- ranked by visit-weighted Q (7)", ["builder.score=q"]),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", default=None, help="recipes to run (default: all)")
    args, overrides = parser.parse_known_args(argv)
    args.only, overrides = split_overrides(args.only, overrides)
    quiet = ["trainer.progress_bar=false", *overrides]
    rows = [["recipe", "variant", "problems", "tokens", "pairs", "pairs/1k tok.", "good", "reversed", "both wrong", "both right",
             "accuracy after 1 iteration"]]
    for recipe, label, variant in VARIANTS:
        if args.only and recipe not in args.only:
            continue
        print(f"[fix_ablation] {recipe}: {label}", file=sys.stderr, flush=True)
        r = measure(recipe, args.seed, quiet + variant, train=True)
        share = [f"{100 * r[k + '_share']:.0f}%" for k in ("good", "reversed", "both_wrong", "both_right")]
        rows.append([recipe, label, str(r["problems"]), str(r["tokens"]), str(r["pairs"]), f"{r['pairs_per_1k']:.1f}", *share,
                     f"{r.get('eval/greedy/overall', float('nan')):.2f}"])
    print(f"\none iteration from the base model, seed {args.seed}" + (f", overrides {overrides}" if overrides else ""))
    print_rows(rows)


if __name__ == "__main__":
    main()
