"""Accuracy against compute for every searcher on held-out arith: generated tokens per problem and wall seconds.

    python benchmarks/compute_curves.py [--problems 64] [--png benchmarks/compute_curves.png] [--threads 1]

The setting is benchmarks/search_compare.py's (the default tiny model, held-out 6-operation arith problems,
the policy's own likelihood as the rewarder, no gold answer guiding the search), swept over sizes: greedy;
best_of_n for n = 2..64 (its answer: the highest-likelihood sample); majority vote over the same best_of_n
samples (same tokens and seconds: only the answer rule differs); beam, mcts, best_first and
iterative_deepening at two sizes each (answer: majority vote over their finished solutions, as in
search_compare). Writes one PNG (accuracy against tokens per problem, and against wall seconds) and prints one
table. Headline: each tree searcher's wall seconds per generated token over best_of_n(16)'s (at the size whose
budget is closest to best_of_n(16)'s; goal <= 2x), and each searcher's accuracy there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's sisearch

import torch  # noqa: E402
from search_compare import build, held_out_setting  # noqa: E402
from search_throughput import REPO  # noqa: E402

from sisearch.search.answers import choose_answer  # noqa: E402
from sisearch.search.scheduler import run_search  # noqa: E402

# Two sizes per tree searcher: about half of best_of_n(16)'s budget (~650 tokens per 6-op problem, ~40 tokens a
# solution) and about all of it. mcts explores to the end (depth_limit null): with the default depth limit its
# deduplicated children stop it near 300 tokens whatever the number of simulations.
SIZES = {
    "greedy": [{}],
    "best_of_n": [{"n": n} for n in (2, 4, 8, 16, 32, 64)],
    "beam": [{"beam_size": 2, "expansions": 4}, {"beam_size": 4, "expansions": 4}],
    "mcts": [
        {"simulations": s, "first_root_factor": 2, "depth_limit": None, "width": 4, "root_width": 4} for s in (4, 8)
    ],
    "best_first": [{"children": 2, "rollouts": 1}, {"children": 3, "rollouts": 1}],
    "iterative_deepening": [{"samples": s, "first_budget": 12, "growth": 2.0, "max_tokens": 96} for s in (6, 12)],
}
TREE_SEARCHERS = ("beam", "mcts", "best_first", "iterative_deepening")


def correct(node) -> bool:
    return node is not None and node.verdict is not None and node.verdict.correct


def sweep(names: list[str], problems, ctx, threshold: float) -> list[dict]:
    """One row per (searcher, size): accuracy, generated tokens per problem, wall seconds."""
    rows = []
    for name in names:
        for sizes in SIZES[name]:
            rule = "highest_value" if name == "best_of_n" else "majority"
            searcher = build(name, threshold, sizes, answer_rule=rule)
            ctx.engine.reseed(0)
            start = time.perf_counter()
            trees = run_search(searcher, problems, ctx)
            seconds = time.perf_counter() - start
            tokens = sum(t.cost.generated_tokens for t in trees) / len(trees)
            label = ", ".join(f"{k}={v}" for k, v in sizes.items() if k in ("n", "beam_size", "expansions",
                              "simulations", "children", "rollouts", "samples")) or "-"
            acc = sum(correct(t.chosen) for t in trees) / len(trees)
            rows.append(dict(searcher=name, size=label, accuracy=acc, tokens=tokens, seconds=seconds))
            if name == "best_of_n":  # the same samples, answered by majority vote
                votes = sum(correct(choose_answer(t.terminals(), "majority")) for t in trees) / len(trees)
                rows.append(dict(searcher="majority_vote", size=label, accuracy=votes, tokens=tokens, seconds=seconds))
            print(f"done {name} {label}: {seconds:.1f} s", flush=True)
    return rows


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in dict.fromkeys(r["searcher"] for r in rows):
        mine = sorted((r for r in rows if r["searcher"] == name), key=lambda r: r["tokens"])
        style = "o-" if len(mine) > 1 else "*"
        axes[0].plot([r["tokens"] for r in mine], [r["accuracy"] for r in mine], style, label=name)
        axes[1].plot([r["seconds"] for r in mine], [r["accuracy"] for r in mine], style, label=name)
    for ax, xlabel in zip(axes, ("generated tokens per problem", "wall seconds (all problems)")):
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", type=int, default=64, help="held-out 6-operation problems")
    parser.add_argument("--model", choices=("default", "test"), default="default",
                        help="the default tiny model (trained and cached if missing) or the small test model")
    parser.add_argument("--png", default=str(REPO / "benchmarks" / "compute_curves.png"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--only", nargs="*", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    which, ctx, problems, threshold = held_out_setting(args.model, args.problems)
    rows = sweep(args.only, problems, ctx, threshold)

    title = f"{which}, {len(problems)} held-out 6-op arith problems, likelihood rewarder"
    plot(rows, Path(args.png), title)
    print(f"\n{title}; cpu threads {torch.get_num_threads()}; plot: {args.png}\n")
    print("| searcher | size | accuracy | tokens/problem | wall s | ms per 1k tokens |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['searcher']} | {r['size']} | {r['accuracy']:.3f} | {r['tokens']:.0f} | {r['seconds']:.1f} | "
              f"{1e6 * r['seconds'] / (r['tokens'] * len(problems)):.0f} |")

    reference = next((r for r in rows if r["searcher"] == "best_of_n" and r["size"] == "n=16"), None)
    if reference is None:
        return
    per_token = reference["seconds"] / reference["tokens"]
    print(f"\nat best_of_n(16)'s budget ({reference['tokens']:.0f} tokens/problem; accuracy {reference['accuracy']:.3f}, "
          f"majority vote {next(r['accuracy'] for r in rows if r['searcher'] == 'majority_vote' and r['size'] == 'n=16'):.3f}):")
    heads = []
    for name in TREE_SEARCHERS:
        mine = [r for r in rows if r["searcher"] == name]
        if not mine:
            continue
        near = min(mine, key=lambda r: abs(r["tokens"] - reference["tokens"]))
        ratio = (near["seconds"] / near["tokens"]) / per_token
        heads.append(f"{name} {ratio:.2f}x")
        print(f"  {name} ({near['size']}, {near['tokens']:.0f} tokens/problem): accuracy {near['accuracy']:.3f}, "
              f"wall time per token {ratio:.2f}x best_of_n(16)'s")
    print(f"headline: wall time per generated token / best_of_n(16)'s: {'; '.join(heads)} (goal <= 2x)")


if __name__ == "__main__":
    main()
