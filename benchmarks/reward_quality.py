"""How well each rewarder tells right from wrong, and picks the right sample of a problem, against arith's truth.

    python benchmarks/reward_quality.py [--model default|test] [--problems 10] [--samples 16] [--seeds 0 1 2]
        [--rewarders NAME ...] [--train KEY=VALUE ...]

The policy (the default tiny model, or the small test model with `--model test`) samples `--samples` solutions
per held-out test problem (`--problems` per difficulty, ops 2, 4, 6). Every step prefix of every sample becomes
a node, and each rewarder scores all nodes in one call. For each rewarder the table gives:

- step AUROC: telling right from wrong steps, pooled (a prefix is right if the solution is still on a correct
  path after its last step: `task.check_steps`, exact for arith);
- answer AUROC: telling right from wrong finished solutions, pooled over all problems (the checker's verdict);
- within-problem AUROC: the answer AUROC inside each problem, averaged over problems with both right and wrong
  samples. This is what selection needs: a pooled AUROC also rewards knowing which problems are hard;
- best-of-N: accuracy of the highest-scored of the N samples per problem (ties: the first sample), and its
  difference from majority vote of the same N samples, in points;
- weighted vote: accuracy of the answer with the largest summed score (each sample votes with its reward);
- cost: tokens the rewarder generates per scored solution (rollouts), and tokens generated once to train it.

Each seed draws its own test problems' samples and trains its own heads; the table gives mean ± sd over seeds.
Trained heads (orm/prm `trained`) use the rewarder config's `train:` defaults (override with `--train`), are
trained on the policy's own samples of train-split problems, and cached under ~/.cache/sisearch/reward_heads
(keyed by model and settings). Reference rows: mean sample accuracy, majority vote and pass@N (an oracle).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# name -> rewarder config (validated through the registry). Trained heads take their `train:` settings from the
# schema defaults (= sisearch/conf/rewarder/*.yaml) plus --train overrides; "gold labels" rows read the task's
# exact step truth at training time (an upper bound for Monte-Carlo labels, not usable where no truth exists).
REWARDERS: dict[str, dict] = {
    "orm (verifier)": {"name": "orm", "mode": "verifier"},
    "orm (trained)": {"name": "orm", "mode": "trained"},
    "prm (trained)": {"name": "prm", "mode": "trained", "aggregate": "min"},
    "prm (trained, exact gold labels)": {"name": "prm", "mode": "trained", "aggregate": "min", "train": {"labels": "exact"}},
    "prm (mc, soft, min)": {"name": "prm", "mode": "mc", "rollouts": 4, "label": "soft", "aggregate": "min"},
    "pav (Bo4 prover)": {"name": "pav", "rollouts": 4, "prover": "best_of_k", "k": 4, "alpha": 1.0},
    "self_judge": {"name": "self_judge"},
    "self_judge (per step, min)": {"name": "self_judge", "per_step": True, "aggregate": "min"},
    "follow_up": {"name": "follow_up"},
    "composite (orm trained + 0.5 self_judge)": {
        "name": "composite",
        "components": [
            {"name": "orm", "mode": "trained", "weight": 1.0},
            {"name": "self_judge", "weight": 0.5},
        ],
    },
}
# rows whose training reads gold step truth (the rewarder's own uses_gold covers scoring time only)
GOLD_IN_TRAINING = {"prm (trained, exact gold labels)"}


def rewarder_config(name: str, train: dict, seed: int) -> dict:
    """The named config with `train` overrides and the seed merged into every trained head's `train:`."""
    import copy

    cfg = copy.deepcopy(REWARDERS[name])

    def merge(c: dict) -> None:
        if c.get("mode") == "trained" or c.get("estimator") == "trained":
            c["train"] = {**c.get("train", {}), **train, "seed": seed, "progress": False}

    merge(cfg)
    for component in cfg.get("components", []):
        merge(component)
    return cfg


def parse_train(pairs: list[str]) -> dict:
    """KEY=VALUE pairs for HeadTrainConfig, typed by YAML rules (4 -> int, 0.5 -> float, true -> bool)."""
    from dataclasses import fields

    import yaml

    from sisearch.rewards.heads import HeadTrainConfig

    allowed = {f.name for f in fields(HeadTrainConfig)} - {"seed", "progress"}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in allowed:
            raise SystemExit(f"--train {pair!r}: expected KEY=VALUE with KEY one of: {', '.join(sorted(allowed))}")
        out[key] = yaml.safe_load(value)
    return out


def load_model(which: str, wait_s: float, model_dir: str | None):
    from sisearch.models.policy import load_policy
    from sisearch.models.tiny import DONE_MARKER, TinyConfig, cache_key, ensure_tiny

    if model_dir:
        return load_policy(model_dir, device="cpu"), f"model directory {model_dir}"
    if which == "test":
        sys.path.insert(0, str(REPO / "tests"))
        from conftest import TEST_TINY

        return load_policy(ensure_tiny(TinyConfig(**TEST_TINY), progress_bar=False), device="cpu"), "small test model"
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from sisearch.plugin_configs import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config")
    model = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k != "lora"}
    model["device"] = "cpu"
    tiny = TinyConfig(**model)
    directory = Path(os.path.expanduser(tiny.cache_dir)) / f"tiny-{cache_key(tiny)}"
    deadline = time.time() + wait_s
    while not (directory / DONE_MARKER).is_file():
        if time.time() > deadline:
            raise TimeoutError(f"the default tiny model is not cached at {directory}; train it with `sisearch iterations=0`")
        time.sleep(10)
    return load_policy(directory, device="cpu"), f"default tiny model ({directory.name})"


def sample_nodes(task, engine, problems, samples: int):
    """Per sample: its step-prefix nodes (the last one finished, with a verdict) and per-step truth."""
    from sisearch.rewards.base import ScoreItem
    from sisearch.search.tree import Node

    prompts = [task.prompt(p) for p in problems]
    outputs = engine.generate(prompts, n=samples, max_new_tokens=task.max_new_tokens, temperature=1.0)
    items, step_truth, finals = [], [], []  # finals: (problem index, item index of its finished node, verdict)
    for pi, (problem, prompt, outs) in enumerate(zip(problems, prompts, outputs)):
        for sample in outs:
            steps = task.split_steps(sample.text)
            if not steps:
                steps = [""]
            truth = task.check_steps(problem, steps) if steps != [""] else [False]
            root = Node()
            node = root
            for h, step in enumerate(steps):
                last = h == len(steps) - 1
                child = Node(step=step, state=node.state + step, terminal=last)
                if last:
                    child.verdict = task.check(problem, child.state)
                node = node.add_child(child)
                items.append(ScoreItem(problem, prompt, node))
                step_truth.append(bool(truth[h]))
            finals.append((pi, len(items) - 1, node.verdict.correct))
    return items, step_truth, finals


def majority_vote(by_problem: dict[int, list[tuple[bool, str | None]]]) -> float:
    """Share of problems whose most frequent parsed answer (first seen wins ties) is right."""
    right = 0
    for outs in by_problem.values():
        votes = Counter(a for _, a in outs if a is not None)
        if votes:
            top = votes.most_common(1)[0][0]
            right += any(c for c, a in outs if a == top)
    return right / len(by_problem)


def evaluate(scores, step_truth, finals, num_problems: int, answers=None) -> dict[str, float]:
    from sisearch.rewards.scoring import auroc, weighted_vote, within_problem_auroc

    final_scores = [scores[i] for _, i, _ in finals]
    final_truth = [c for _, _, c in finals]
    best: dict[int, tuple[float, bool]] = {}
    for (pi, i, correct) in finals:
        if pi not in best or scores[i] > best[pi][0]:
            best[pi] = (scores[i], correct)
    within, _ = within_problem_auroc(final_scores, final_truth, [pi for pi, _, _ in finals])
    voted = 0
    if answers is not None:  # reward-weighted majority vote over each problem's samples
        for pi in best:
            idx = [k for k, f in enumerate(finals) if f[0] == pi]
            pick = weighted_vote([answers[k] for k in idx], [final_scores[k] for k in idx])
            voted += finals[idx[pick]][2]
    return {
        "weighted_vote": voted / num_problems,
        "step_auroc": auroc(scores, step_truth),
        "answer_auroc": auroc(final_scores, final_truth),
        "within_auroc": within,
        "best_of_n": sum(c for _, c in best.values()) / num_problems,
    }


def run_seed(args, seed: int, policy, train: dict) -> dict[str, dict[str, float]]:
    """Sample, build and score every rewarder for one seed; name -> metrics (references under '(...)' names)."""
    from sisearch import registry
    from sisearch.engines.hf import HFEngine, HFEngineConfig
    from sisearch.tasks.arith import ArithConfig, ArithTask

    start = time.time()
    task = ArithTask(ArithConfig(test_size_per_difficulty=args.problems, seed=seed))
    engine = HFEngine(HFEngineConfig(seed=seed), policy)
    problems = task.problems("test")
    items, step_truth, finals = sample_nodes(task, engine, problems, args.samples)
    by_problem: dict[int, list[tuple[bool, str | None]]] = {}
    for pi, i, correct in finals:
        by_problem.setdefault(pi, []).append((correct, items[i].node.verdict.answer))
    majority = majority_vote(by_problem)
    n = args.samples
    print(
        f"seed {seed}: {len(problems)} test problems x {n} samples; {len(items)} step nodes "
        f"({sum(step_truth)} right); sampled in {time.time() - start:.0f}s",
        flush=True,
    )
    out: dict[str, dict[str, float]] = {
        "(mean sample accuracy)": {"best_of_n": sum(c for _, _, c in finals) / len(finals)},
        f"(majority vote of {n})": {"best_of_n": majority},
        f"(pass@{n}, oracle)": {"best_of_n": sum(any(c for c, _ in o) for o in by_problem.values()) / len(problems)},
    }
    for name in args.rewarders:
        t = time.time()
        cfg = registry.validate("rewarder", rewarder_config(name, train, seed))
        tokens0 = engine.stats.generated_tokens
        rewarder = registry.build("rewarder", cfg, task=task, engine=engine)
        built = time.time() - t
        tokens1 = engine.stats.generated_tokens
        engine.reseed(seed + 1)
        scores = rewarder.score(items)
        answers = [items[i].node.verdict.answer for _, i, _ in finals]
        result = evaluate(scores, step_truth, finals, len(problems), answers)
        result.update(
            vs_majority=100 * (result["best_of_n"] - majority),
            score_tokens=(engine.stats.generated_tokens - tokens1) / len(finals),
            train_tokens=float(tokens1 - tokens0),  # 0 when the head came from the cache
            gold=float(rewarder.uses_gold or name in GOLD_IN_TRAINING),
            build_s=built,
            score_s=time.time() - t - built,
        )
        out[name] = result
        shown = {k: round(v, 3) for k, v in result.items()}
        print(f"  {name}: {shown}", flush=True)
    return out


def spread(values: list[float], digits: int = 3) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["default", "test"], default="default")
    parser.add_argument("--problems", type=int, default=10, help="test problems per difficulty (ops 2, 4, 6)")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--rewarders", nargs="*", default=list(REWARDERS))
    parser.add_argument("--train", nargs="*", default=[], metavar="KEY=VALUE", help="trained heads' train settings")
    parser.add_argument("--model-dir", default=None, help="any HF model directory instead (overrides --model)")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the default model's cache")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--save", default=None, help="also write the per-seed results here (JSON)")
    parser.add_argument("--combine", nargs="+", default=None, metavar="JSON",
                        help="print one table from runs saved with --save (e.g. one process per seed), run nothing")
    args = parser.parse_args()
    if args.combine:
        runs = [json.loads(Path(f).read_text()) for f in args.combine]
        print_table([seed for run in runs for seed in run["per_seed"]], runs[0]["rewarders"],
                    [s for run in runs for s in run["seeds"]], runs[0]["problems"], runs[0]["samples"])
        return
    unknown = [r for r in args.rewarders if r not in REWARDERS]
    if unknown:
        choices = "\n  ".join(REWARDERS)
        parser.error(f"unknown rewarder(s) {', '.join(map(repr, unknown))}; choose from:\n  {choices}")
    train = parse_train(args.train)

    import torch

    torch.set_num_threads(args.threads)
    start = time.time()
    policy, model_name = load_model(args.model, args.wait, args.model_dir)
    print(f"model: {model_name}; seeds {args.seeds}; train overrides {train or 'none'}", flush=True)
    per_seed = [run_seed(args, seed, policy, train) for seed in args.seeds]

    if args.save:
        Path(args.save).write_text(json.dumps({
            "per_seed": per_seed, "rewarders": args.rewarders, "seeds": args.seeds, "problems": args.problems,
            "samples": args.samples, "train": train,
        }))
    print_table(per_seed, args.rewarders, args.seeds, args.problems, args.samples)
    print(f"\ntotal {time.time() - start:.0f}s")


def print_table(per_seed: list[dict], rewarders: list[str], seeds: list[int], problems: int, n: int) -> None:
    print()
    print(f"{len(seeds)} seed(s) {seeds}, mean ± sd; {problems * 3} test problems x {n} samples each")
    print()
    print(
        f"| rewarder | uses gold | step AUROC | answer AUROC | within-problem AUROC | best-of-{n} | vs majority (pts) "
        "| weighted vote | gen. tokens / scored solution | gen. tokens to train | build s | score s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in rewarders:
        rows = [r[name] for r in per_seed]
        col = lambda k, d=3: spread([r[k] for r in rows], d)  # noqa: E731
        print(
            f"| {name} | {'yes' if rows[0]['gold'] else 'no'} | {col('step_auroc')} | {col('answer_auroc')} | "
            f"{col('within_auroc')} | {col('best_of_n')} | {col('vs_majority', 1)} | "
            f"{spread([r.get('weighted_vote', math.nan) for r in rows])} | {col('score_tokens', 0)} | "
            f"{col('train_tokens', 0)} | {col('build_s', 0)} | {col('score_s', 0)} |"
        )
    for name in [k for k in per_seed[0] if k.startswith("(")]:
        print(f"| {name} | - | - | - | - | {spread([r[name]['best_of_n'] for r in per_seed])} | - | - | - | - | - | - |")


if __name__ == "__main__":
    main()
