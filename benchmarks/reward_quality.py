"""How well each rewarder tells right from wrong, measured against arith's exact truth.

    python benchmarks/reward_quality.py [--model default|test] [--problems 24] [--samples 16] [--rewarders ...]

The policy (the default tiny model, or the small test model with `--model test`) samples `--samples` solutions
per held-out test problem. Every step prefix of every sample becomes a node, and each rewarder scores all nodes
in one call. For each rewarder the table gives:

- step AUROC: telling right from wrong steps (a prefix is right if the solution is still on a correct path
  after its last step: `task.check_steps`, exact for arith);
- answer AUROC: telling right from wrong finished solutions (the checker's verdict);
- best-of-N: accuracy of the highest-scored of the N samples per problem (ties: the first sample).

Trained heads (orm/prm `trained`) are trained on the policy's own samples of train-split problems, with
the sizes below, and cached under ~/.cache/sisearch/reward_heads (keyed by model and settings). Reference rows:
mean sample accuracy, majority vote and
pass@N (an oracle).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# training-set sizes for the heads (kept small: the whole benchmark should take minutes on 2 CPU cores)
HEAD_TRAIN = dict(problems=32, samples_per_problem=4, rollouts=4, epochs=4.0, batch_size=16, progress=False)

# name -> (rewarder config, whether it needs a trained head); configs are validated through the registry
REWARDERS: dict[str, dict] = {
    "orm (verifier)": {"name": "orm", "mode": "verifier"},
    "orm (trained)": {"name": "orm", "mode": "trained", "train": HEAD_TRAIN},
    "prm (trained, mc_soft)": {"name": "prm", "mode": "trained", "aggregate": "min", "train": HEAD_TRAIN},
    "prm (mc, soft, min)": {"name": "prm", "mode": "mc", "rollouts": 4, "label": "soft", "aggregate": "min"},
    "pav (Bo4 prover)": {"name": "pav", "rollouts": 4, "prover": "best_of_k", "k": 4, "alpha": 1.0},
    "self_judge": {"name": "self_judge"},
    "self_judge (per step, min)": {"name": "self_judge", "per_step": True, "aggregate": "min"},
    "follow_up": {"name": "follow_up"},
    "composite (orm trained + 0.5 self_judge)": {
        "name": "composite",
        "components": [
            {"name": "orm", "mode": "trained", "train": HEAD_TRAIN, "weight": 1.0},
            {"name": "self_judge", "weight": 0.5},
        ],
    },
}


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

    with initialize_config_dir(config_dir=str(REPO / "sisearch" / "conf"), version_base="1.3"):
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


def evaluate(scores, step_truth, finals, num_problems: int) -> dict[str, float]:
    from sisearch.rewards.scoring import auroc

    final_scores = [scores[i] for _, i, _ in finals]
    final_truth = [c for _, _, c in finals]
    best: dict[int, tuple[float, bool]] = {}
    for (pi, i, correct) in finals:
        if pi not in best or scores[i] > best[pi][0]:
            best[pi] = (scores[i], correct)
    return {
        "step_auroc": auroc(scores, step_truth),
        "answer_auroc": auroc(final_scores, final_truth),
        "best_of_n": sum(c for _, c in best.values()) / num_problems,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["default", "test"], default="default")
    parser.add_argument("--problems", type=int, default=8, help="test problems per difficulty (ops 2, 4, 6)")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--rewarders", nargs="*", default=list(REWARDERS))
    parser.add_argument("--model-dir", default=None, help="any HF model directory instead (overrides --model)")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the default model's cache")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from sisearch import registry
    from sisearch.engines.hf import HFEngine, HFEngineConfig
    from sisearch.tasks.arith import ArithConfig, ArithTask

    start = time.time()
    policy, model_name = load_model(args.model, args.wait, args.model_dir)
    task = ArithTask(ArithConfig(test_size_per_difficulty=args.problems, seed=args.seed))
    engine = HFEngine(HFEngineConfig(seed=args.seed), policy)
    problems = task.problems("test")
    items, step_truth, finals = sample_nodes(task, engine, problems, args.samples)
    n = args.samples
    by_problem: dict[int, list[tuple[bool, str | None]]] = {}
    for pi, i, correct in finals:
        by_problem.setdefault(pi, []).append((correct, items[i].node.verdict.answer))
    majority = 0
    for pi, outs in by_problem.items():
        votes = Counter(a for _, a in outs if a is not None)
        if votes:
            top = votes.most_common(1)[0][0]
            majority += any(c for c, a in outs if a == top)
    print(
        f"model: {model_name}; {len(problems)} test problems x {n} samples; {len(items)} step nodes "
        f"({sum(step_truth)} right); sampled in {time.time() - start:.0f}s",
        flush=True,
    )
    rows = []
    for name in args.rewarders:
        t = time.time()
        cfg = registry.validate("rewarder", dict(REWARDERS[name]))
        rewarder = registry.build("rewarder", cfg, task=task, engine=engine)
        built = time.time() - t
        engine.reseed(args.seed + 1)
        scores = rewarder.score(items)
        result = evaluate(scores, step_truth, finals, len(problems))
        rows.append((name, rewarder.uses_gold, result, built, time.time() - t - built))
        print(f"  {name}: {result} (build {built:.0f}s, score {rows[-1][4]:.0f}s)", flush=True)

    mean_acc = sum(c for _, _, c in finals) / len(finals)
    pass_n = sum(any(c for c, _ in outs) for outs in by_problem.values()) / len(problems)
    print()
    print(f"| rewarder | uses gold | step AUROC | answer AUROC | best-of-{n} acc | build s | score s |")
    print("|---|---|---|---|---|---|---|")
    for name, gold, r, built, scored in rows:
        print(
            f"| {name} | {'yes' if gold else 'no'} | {r['step_auroc']:.3f} | {r['answer_auroc']:.3f} | "
            f"{r['best_of_n']:.3f} | {built:.0f} | {scored:.0f} |"
        )
    print(f"| (mean sample accuracy) | - | - | - | {mean_acc:.3f} | - | - |")
    print(f"| (majority vote of {n}) | no | - | - | {majority / len(problems):.3f} | - | - |")
    print(f"| (pass@{n}, oracle) | yes | - | - | {pass_n:.3f} | - | - |")
    print(f"\ntotal {time.time() - start:.0f}s")


if __name__ == "__main__":
    main()
