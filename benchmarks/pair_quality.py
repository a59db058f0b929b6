"""Step-level data quality, independent of training: one iteration's search and build per recipe, each pair
judged by the task's exact step truth (`check_steps`, arith).

    python benchmarks/pair_quality.py [override ...] [--recipes mcts_dpo cpl_step_apo tpo step_dpo] [--seeds 0 1 2]

For each recipe: pairs per 1k generated tokens, and the share of pairs whose chosen step is right and rejected
step wrong (good), the reverse (reversed), both wrong, both right. A TPO ranked list counts as the pairs its
ranking implies (each higher-scored response against each lower-scored one). With `--train`, the base model
is then trained on the iteration's records and its held-out greedy accuracy is reported (`benchmarks/fix_ablation.py`). A pair's step is the first line where chosen
and rejected differ, judged by `check_steps` on the prefix plus that line: "right" means the solution is still
on a path to the right answer after it, so below an earlier slip in the prefix both sides count as wrong. Nothing is trained; the iteration-1
problems, seeds and token budget are the loop's own, so the numbers match `sisearch experiment=X iterations=1`.
Extra `key=value` arguments (before `--recipes`) are Hydra overrides for every recipe, e.g.
`search_token_budget=5000` for a quick look on a CPU.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
STEP_RECIPES = ("mcts_dpo", "cpl_step_apo", "tpo", "step_dpo")
KINDS = ("good", "reversed", "both_wrong", "both_right", "unjudged")


def step_truth(task, problem, context: str, continuation: str) -> bool | None:
    """Whether the first line that `continuation` starts (after the solution text `context`) is right.

    `context` may end inside a line (a pair's shared prefix is cut at the first differing character); the
    judged step is the line holding that cut. None where the task has no step truth.
    """
    steps = task.split_steps(context + continuation)
    index = context.count(task.step_delimiter)  # complete lines before the differing one
    labels = task.check_steps(problem, steps)
    if labels is None or index >= len(labels):
        return None
    return labels[index]


def pair_kind(chosen_ok: bool | None, rejected_ok: bool | None) -> str:
    if chosen_ok is None or rejected_ok is None:
        return "unjudged"
    if chosen_ok != rejected_ok:
        return "good" if chosen_ok else "reversed"
    return "both_right" if chosen_ok else "both_wrong"


class ImpliedPair(NamedTuple):
    problem_id: str
    prompt: str
    chosen: str
    rejected: str


def as_pairs(records) -> list:
    """Preference pairs as they are; a ranked list as every (higher-scored, lower-scored) pair of its responses."""
    pairs = []
    for record in records:
        if not hasattr(record, "responses"):
            pairs.append(record)
            continue
        texts = ["".join(steps) for steps in record.responses]
        for i, j in itertools.combinations(range(len(texts)), 2):
            if record.scores[i] != record.scores[j]:
                high, low = (i, j) if record.scores[i] > record.scores[j] else (j, i)
                pairs.append(ImpliedPair(record.problem_id, record.prompt, texts[high], texts[low]))
    return pairs


def judge_pairs(task, problems_by_id: dict, prompts_by_id: dict, pairs) -> dict[str, int]:
    counts = dict.fromkeys(KINDS, 0)
    for pair in pairs:
        problem = problems_by_id[pair.problem_id]
        context = pair.prompt[len(prompts_by_id[pair.problem_id]):]
        kind = pair_kind(step_truth(task, problem, context, pair.chosen), step_truth(task, problem, context, pair.rejected))
        counts[kind] += 1
    return counts


def measure(recipe: str, seed: int, overrides: list[str], train: bool = False) -> dict[str, float]:
    """One iteration's search and build (and, with `train`, its training and held-out evaluation)."""
    from hydra import compose, initialize_config_dir

    from sisearch.loop import Loop, build_components
    from sisearch.run_config import validate_config

    from sisearch.plugin_configs import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={recipe}", f"seed={seed}", "iterations=1",
                                                       "logger=none", "progress=false", *overrides])
    loop_cfg, typed, trainer_cfg = validate_config(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        parts = build_components(typed, loop_cfg, run_dir, [])
        loop = Loop(loop_cfg, trainer_cfg, parts, run_dir)
        directory = run_dir / "iter_01"
        directory.mkdir()
        start = time.time()
        trees, metrics = loop.search(1, loop.draw_problems(1), directory)
        records, _ = loop.build(1, trees, directory)
        trained = {**loop.train(1, records), **loop.evaluate(1)} if train else {}
    tokens = sum(t.cost.generated_tokens for t in trees)
    prompts = {t.problem_id: t.prompt for t in trees}
    pairs = as_pairs(records)
    counts = judge_pairs(parts.task, loop.problems_by_id, prompts, pairs)
    judged = max(1, sum(counts[k] for k in KINDS if k != "unjudged"))
    return {
        "pairs": len(pairs), "records": len(records), "problems": len(trees), **trained, "tokens": tokens,
        "pairs_per_1k": 1000 * len(pairs) / max(tokens, 1),
        **{k: counts[k] for k in KINDS}, **{f"{k}_share": counts[k] / judged for k in KINDS[:4]},
        "seconds": time.time() - start,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipes", nargs="+", default=list(STEP_RECIPES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="several seeds, pooled (instead of --seed)")
    args, overrides = parser.parse_known_args(argv)
    args.recipes, overrides = split_overrides(args.recipes, overrides)
    sys.path.insert(0, str(REPO))
    seeds = args.seeds or [args.seed]
    rows = [(recipe, pooled([measure(recipe, seed, overrides) for seed in seeds])) for recipe in args.recipes]
    print(f"\npair quality, iteration 1, seeds {' '.join(map(str, seeds))} (counts summed over seeds)"
          + (f", overrides {overrides}" if overrides else ""))
    print(f"{'recipe':<14}{'pairs':>7}{'tokens':>9}{'pairs/1k':>10}{'good':>14}{'reversed':>14}{'both wrong':>14}"
          f"{'both right':>14}")
    for recipe, r in rows:
        cells = [f"{r[k]} ({100 * r[k + '_share']:.0f}%)" for k in ("good", "reversed", "both_wrong", "both_right")]
        print(f"{recipe:<14}{r['pairs']:>7}{r['tokens']:>9}{r['pairs_per_1k']:>10.2f}" + "".join(f"{c:>14}" for c in cells))


def split_overrides(names: list[str] | None, overrides: list[str]) -> tuple[list[str] | None, list[str]]:
    """A list option (nargs="+") swallows the `key=value` overrides after it: hand those back to the overrides."""
    if not names:
        return names, overrides
    return [a for a in names if "=" not in a], overrides + [a for a in names if "=" in a]


def pooled(results: list[dict]) -> dict:
    """Several seeds' measurements as one: counts and tokens summed, shares and rates recomputed."""
    total = {k: sum(r[k] for r in results) for k in ("pairs", "tokens", *KINDS)}
    judged = max(1, sum(total[k] for k in KINDS if k != "unjudged"))
    return {**total, "pairs_per_1k": 1000 * total["pairs"] / max(total["tokens"], 1),
            **{f"{k}_share": total[k] / judged for k in KINDS[:4]}}


if __name__ == "__main__":
    main()
