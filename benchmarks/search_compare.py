"""Held-out accuracy of every searcher on arith problems with 6 operations, at a matched token budget.

    python benchmarks/search_compare.py [--problems 100] [--budget 320] [--model default|test]

Each searcher's sizes are set so that it spends about `--budget` generated tokens per problem (greedy, which
cannot scale, spends what one solution takes); the table reports what each actually spent. No gold answer
guides the search: the rewarder is the policy's own likelihood, `exp(mean token log-prob)` of the solution
so far (a test-time signal read off the tokens' log-probs, no extra model call), and the final answer of every
searcher is the majority vote over the solutions it finished. Accuracy is then checked against the gold answer.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from search_throughput import choose_model  # noqa: E402

from sisearch import registry  # noqa: E402
from sisearch.engines.hf import HFEngine, HFEngineConfig  # noqa: E402
from sisearch.models.policy import load_policy  # noqa: E402
from sisearch.plugin_configs import CONF_DIR  # noqa: E402
from sisearch.rewards.base import Rewarder, ScoreItem  # noqa: E402
from sisearch.search.scheduler import SearchContext, run_search  # noqa: E402
from sisearch.search.tree import Node  # noqa: E402
from sisearch.tasks.arith import ArithConfig, ArithTask  # noqa: E402

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class LikelihoodRewarder(Rewarder):
    """`exp(sum of the path's token log-probs / its token count)`: the policy's per-token confidence.

    Reads only the log-probs the engine returned with each step (Node.prior_logprob, Node.num_tokens);
    nodes without generated tokens (a reflection trigger) add nothing.
    """

    uses_gold = False

    def score(self, items: list[ScoreItem]) -> list[float]:
        scores = []
        for item in items:
            path = item.node.path() or [item.node]
            tokens = sum(n.num_tokens for n in path)
            logprob = sum(n.prior_logprob for n in path)
            scores.append(math.exp(logprob / tokens) if tokens else 0.0)
        return scores


# Sizes chosen so that each searcher spends roughly the same tokens per 6-op problem (~40 tokens a solution).
SETTINGS = {
    "greedy": {},
    "best_of_n": {"n": 8},
    "beam": {"beam_size": 2, "expansions": 4},
    "mcts": {"simulations": 8, "first_root_factor": 2, "depth_limit": 3, "width": 4, "root_width": 4},
    "best_first": {"children": 2, "rollouts": 1},  # correct_threshold: calibrated, see calibrate_threshold
    "iterative_deepening": {"samples": 6, "first_budget": 12, "growth": 2.0, "max_tokens": 96},
}


def calibrate_threshold(engine, task, rewarder, count: int = 32, n: int = 4) -> float:
    """The median likelihood of sampled solutions to 6-op TRAIN problems: best_first counts a rollout as judged
    right when its likelihood is above the typical one (no test problem or gold answer is used)."""
    problems = [p for p in task.problems("train") if p.difficulty == "ops_6"][:count]
    outputs = engine.generate([task.prompt(p) for p in problems], n=n, max_new_tokens=task.max_new_tokens)
    items = [
        ScoreItem(p, task.prompt(p), Node(state=s.text, prior_logprob=s.logprob, num_tokens=s.num_tokens))
        for p, samples in zip(problems, outputs)
        for s in samples
    ]
    scores = sorted(rewarder.score(items))
    return scores[len(scores) // 2]


def build(name: str, threshold: float, sizes: dict | None = None, answer_rule: str = "majority"):
    """The searcher `name` at `sizes` (default: SETTINGS[name]), its answers picked by `answer_rule`."""
    sizes = dict(SETTINGS[name] if sizes is None else sizes)
    if name == "best_first":
        sizes["correct_threshold"] = threshold
    conf = OmegaConf.merge(OmegaConf.load(CONF_DIR / "searcher" / f"{name}.yaml"), sizes)
    conf.answer_rule = answer_rule
    return registry.build("searcher", registry.validate("searcher", conf))


def held_out_setting(model: str, count: int):
    """(model description, search context, the first `count` held-out 6-op problems, best_first's threshold)."""
    directory, which = choose_model(model)
    engine = HFEngine(HFEngineConfig(), load_policy(directory, device="cpu"))
    task = ArithTask(ArithConfig(test_ops=[6]))
    problems = [p for p in task.problems("test") if p.difficulty == "ops_6"][:count]
    rewarder = LikelihoodRewarder()
    ctx = SearchContext(task, engine, rewarder, step_max_new_tokens=32, progress=False)
    engine.reseed(1)
    return which, ctx, problems, calibrate_threshold(engine, task, rewarder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--model", choices=("default", "test"), default="default",
                        help="the default tiny model (trained and cached if missing) or the small test model")
    # One thread: on a shared, busy CPU torch's thread pool can be many times slower than a single thread.
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--only", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    which, ctx, problems, threshold = held_out_setting(args.model, args.problems)
    engine = ctx.engine

    rows = []
    for name in args.only:
        searcher = build(name, threshold)
        engine.reseed(0)
        start = time.time()
        trees = run_search(searcher, problems, ctx)
        seconds = time.time() - start
        right = sum(1 for t in trees if t.chosen is not None and t.chosen.verdict and t.chosen.verdict.correct)
        covered = sum(1 for t in trees if any(n.verdict and n.verdict.correct for n in t.terminals()))
        tokens = sum(t.cost.generated_tokens for t in trees) / len(trees)
        rows.append((name, right / len(trees), covered / len(trees), tokens, seconds, SETTINGS[name]))
        print(f"done {name}: {seconds:.1f} s", flush=True)

    print(f"\nmodel: {which}; {len(problems)} held-out arith problems with 6 operations (modulus 10, chance 10%)")
    print("rewarder: the policy's own likelihood exp(mean token logprob); answer rule: majority vote")
    print(f"best_first judges a rollout right when its likelihood >= {threshold:.4f} (median on train samples)\n")
    print(f"| {'searcher':<20} | accuracy | coverage | tokens/problem | seconds | settings")
    print(f"|{'-' * 22}|----------|----------|----------------|---------|---------")
    for name, acc, cov, tokens, seconds, sizes in rows:
        settings = ", ".join(f"{k}={v}" for k, v in sizes.items()) or "-"
        print(f"| {name:<20} | {acc:8.3f} | {cov:8.3f} | {tokens:14.1f} | {seconds:7.1f} | {settings}")
    print("\ncoverage: a right answer among the searcher's finished solutions (not used to pick the answer)")


if __name__ == "__main__":
    main()
