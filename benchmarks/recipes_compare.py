"""Held-out greedy accuracy per difficulty after T iterations of each recipe and of RFT, at equal token budgets.

    python benchmarks/recipes_compare.py [--iterations 3] [--budget 60000] [--seeds 0 1 2] [--steps N] [--jobs 2]

Every run uses the default tiny model (sisearch/conf/model/tiny.yaml, cached under ~/.cache/sisearch), the embedded
arith task and, for each of `--seeds`, the same seed for every recipe. Each iteration may generate `--budget`
tokens: the search takes training problems in the same order for every recipe until its share is spent
(`search_token_budget`); `score`
also samples on-policy while training, so its search gets what its training leaves of the budget
(measured in a first pass, see `score_split`). The table reports what each recipe actually spent.
`--steps N` trains every recipe for exactly N optimizer steps per iteration (cycling through its records), so
recipes that build many records do not also train longer. Over several `--seeds`, a row gives the mean per
difficulty and the overall mean ± standard deviation. Rows are printed as one table at the end; each run's
metrics also stay in its run directory.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Iterator

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent

# name -> overrides; "rft" is rejection-sampling fine-tuning (best_of_n -> correct_samples -> sft).
RECIPES: dict[str, list[str]] = {
    "rft": ["experiment=rft"],
    "iterative_rpo": ["experiment=iterative_rpo"],  # instance-level pairs: DPO + NLL on (correct, incorrect)
    "mcts_dpo": ["experiment=mcts_dpo"],
    "step_dpo": ["experiment=step_dpo"],
    "cpl_step_apo": ["experiment=cpl_step_apo"],
    "tpo": ["experiment=tpo"],
    "score": ["experiment=score"],
}


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from sisearch.plugin_configs import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def wait_for_model(timeout_s: float) -> Path:
    """The default tiny model's cached directory; another process may still be training it."""
    from sisearch.models.tiny import DONE_MARKER, TinyConfig, cache_key

    model = default_tiny_config()
    directory = Path(os.path.expanduser(model["cache_dir"])) / f"tiny-{cache_key(TinyConfig(**model))}"
    deadline = time.time() + timeout_s
    while not (directory / DONE_MARKER).is_file():
        if time.time() > deadline:
            raise TimeoutError(f"the default tiny model is not cached at {directory} (train it with `sisearch iterations=0`)")
        time.sleep(10)
    return directory


def default_tiny_config() -> dict:
    """sisearch/conf/model/tiny.yaml's values, so the cache key matches the model every run here loads."""
    from omegaconf import OmegaConf

    cfg = compose([])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    return {k: v for k, v in model.items() if k != "lora"}


def run_recipe(name: str, common: list[str], out: Path, extra: list[str] = ()) -> dict:
    from sisearch.loop import run

    cfg = compose(common + RECIPES[name] + list(extra))
    start = time.time()
    rows = run(cfg, out / name)
    last = rows[-1]
    searched = sum(r.get("search/generated_tokens", 0.0) for r in rows[1:])
    trained = sum(r.get("train/generated_tokens", 0.0) for r in rows[1:])
    return {
        "recipe": name,
        "base": rows[0],
        "last": last,
        "tokens": searched + trained,
        "search_tokens": searched,
        "train_tokens": trained,
        "problems": [r.get("search/problems", 0.0) for r in rows[1:]],
        "records": [r.get("data/records", 0.0) for r in rows[1:]],
        "steps": [r.get("train/steps", 0.0) for r in rows[1:]],
        "seconds": time.time() - start,
    }


def score_split(common: list[str], out: Path, budget: int) -> list[str]:
    """Search budget for `score`: its training samples on-policy too, so one probe iteration measures the
    training tokens per searched token and the search gets the share that keeps search + training = budget."""
    one_iteration = [o for o in common if not o.startswith("iterations=")] + ["iterations=1"]
    probe = run_recipe("score", one_iteration, out / "score_probe", [f"search_token_budget={budget // 4}"])
    ratio = probe["train_tokens"] / max(probe["search_tokens"], 1.0)
    search = max(1, int(budget / (1.0 + ratio)))
    print(f"[recipes_compare] score: {ratio:.2f} training tokens per search token -> search budget {search}",
          file=sys.stderr, flush=True)
    return [f"search_token_budget={search}"]


def equal_steps(steps: int | None) -> list[str]:
    """Overrides that make every iteration's training exactly `steps` optimizer steps (none: the recipe's epochs).

    The epochs are set so high that the step cap always binds; Lightning then cycles through the records."""
    return [] if steps is None else [f"optimizer.max_steps={steps}", "optimizer.epochs=100000"]


def run_job(name: str, seed: int, common: list[str], out: Path, budget: int, threads: int | None) -> dict:
    """One recipe at one seed (a worker process's job when `--jobs` > 1)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    print(f"[recipes_compare] running {name}, seed {seed} ...", file=sys.stderr, flush=True)
    common = common + [f"seed={seed}"]
    out = out / f"seed{seed}"
    extra = score_split(common, out, budget) if name == "score" else [f"search_token_budget={budget}"]
    result = run_recipe(name, common, out, extra)
    result["seed"] = seed
    print(f"[recipes_compare] {name}, seed {seed}: {result['last']['eval/greedy/overall']:.3f} "
          f"in {result['seconds']:.0f} s", file=sys.stderr, flush=True)
    return result


def run_jobs(jobs: list[tuple[str, int]], workers: int, common: list[str], out: Path, budget: int) -> Iterator[dict]:
    """Each (recipe, seed) job's result, in job order: here one after another, or in `workers` processes of one
    thread each."""
    if workers == 1:
        yield from (run_job(name, seed, common, out, budget, None) for name, seed in jobs)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_job, name, seed, common, out, budget, 1) for name, seed in jobs]
        yield from (future.result() for future in futures)


def mean(values: list[float]) -> float:
    return statistics.fmean(values)


def spread(values: list[float]) -> float:
    """Sample standard deviation (0 for one value)."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def per_iteration_mean(runs: list[dict], key: str) -> float:
    """Mean of a per-iteration list (problems, records, steps) over every iteration of every run."""
    return mean([x for r in runs for x in r[key]])


def print_table(results: list[dict], iterations: int) -> None:
    """One row per recipe: per-difficulty accuracy (mean over seeds), overall mean ± standard deviation and by
    seed, and what an iteration spent (means over iterations and seeds)."""
    keys = sorted(k for k in results[0]["last"] if k.startswith("eval/greedy/") and k != "eval/greedy/overall")
    keys.append("eval/greedy/overall")
    seeds = sorted({r["seed"] for r in results})
    head = (["recipe"] + [k.split("/")[-1] for k in keys[:-1]] + ["overall (mean ± sd)", "by seed"]
            + ["tokens/iter", "problems/iter", "records/iter", "steps/iter", "seconds/run"])
    lines = [head]
    base = [r["base"] for r in results if r["seed"] == seeds[0]][0]
    lines.append(["base (iter 0)"] + [f"{base[k]:.2f}" for k in keys] + ["-"] * 6)
    for name in dict.fromkeys(r["recipe"] for r in results):
        runs = sorted((r for r in results if r["recipe"] == name), key=lambda r: r["seed"])
        overall = [r["last"]["eval/greedy/overall"] for r in runs]
        per_iter = partial(per_iteration_mean, runs)
        lines.append(
            [f"{name} (iter {iterations})"]
            + [f"{mean([r['last'][k] for r in runs]):.2f}" for k in keys[:-1]]
            + [f"{mean(overall):.2f} ± {spread(overall):.2f}", " / ".join(f"{x:.2f}" for x in overall)]
            + [f"{mean([r['tokens'] for r in runs]) / iterations:.0f}", f"{per_iter('problems'):.0f}",
               f"{per_iter('records'):.0f}", f"{per_iter('steps'):.0f}", f"{mean([r['seconds'] for r in runs]):.0f}"]
        )
    print_rows(lines)


def print_rows(lines: list[list[str]]) -> None:
    """Left-aligned columns, the first row a header underlined with dashes."""
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    for i, row in enumerate(lines):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--budget", type=int, default=60000, help="generated tokens per iteration (search + training)")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps per iteration for every recipe (default: each recipe's own epochs)")
    parser.add_argument("--max-problems", type=int, default=2048, help="training problems an iteration may search")
    parser.add_argument("--test-size", type=int, default=100, help="held-out problems per difficulty")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process on one thread")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "recipes_compare")
    parser.add_argument("--wait", type=float, default=900.0, help="seconds to wait for the cached tiny model")
    parser.add_argument("--model", choices=("default", "test"), default="default",
                        help="default: sisearch/conf/model/tiny.yaml; test: the small tiny model of tests/conftest.py (quick, weak)")
    args = parser.parse_args()

    model_overrides: list[str] = []
    if args.model == "test":
        sys.path.insert(0, str(REPO / "tests"))
        from conftest import TEST_TINY

        model_overrides = [f"model.{k}={v}" for k, v in TEST_TINY.items()]
    else:
        wait_for_model(args.wait)
    common = model_overrides + [
        "logger=none", "progress=false", "trainer.progress_bar=false", "save_checkpoints=false",
        f"iterations={args.iterations}", f"problems_per_iteration={args.max_problems}",
        f"task.test_size_per_difficulty={args.test_size}", *equal_steps(args.steps),
    ]
    out = args.out / time.strftime("%Y%m%d-%H%M%S")
    jobs = [(name, seed) for seed in args.seeds for name in args.recipes]
    results = []
    for result in run_jobs(jobs, args.jobs, common, out, args.budget):
        results.append(result)
        (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True))
    training = f"{args.steps} optimizer steps per iteration" if args.steps else "each recipe's own epochs"
    print(f"\nheld-out greedy accuracy after {args.iterations} iterations ({args.model} tiny model); {args.budget} "
          f"generated tokens per iteration; {training}; {args.test_size} test problems per difficulty; "
          f"seeds {' '.join(map(str, args.seeds))}")
    print_table(results, args.iterations)
    print(f"\nrun directories: {out}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
