"""Wall time of one search over 64 problems run batched (one scheduler for all) versus problem by problem.

    python benchmarks/search_throughput.py [--searcher mcts] [--problems 64] [--model default|test]

Uses the default tiny model (sisearch/conf/model/tiny.yaml, cached in ~/.cache/sisearch; trained first if missing), or
with `--model test` the small test model of tests/conftest.py. The rewarder is the verifier ORM (its cost is nil, so the
numbers measure generation scheduling). The engine is reseeded before each run; trees differ between the two
runs only through batch-dependent sampling order.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))  # this checkout's sisearch, whatever an installed copy points at

from hydra import compose as hydra_compose  # noqa: E402
from hydra import initialize_config_dir  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

import sisearch.components  # noqa: E402,F401  (registers every component)
from sisearch import registry  # noqa: E402
from sisearch.engines.hf import HFEngine, HFEngineConfig  # noqa: E402
from sisearch.plugin_configs import CONF_DIR  # noqa: E402
from sisearch.models.policy import load_policy  # noqa: E402
from sisearch.models.tiny import TinyConfig, ensure_tiny  # noqa: E402
from sisearch.rewards.orm import ORMConfig, ORMRewarder  # noqa: E402
from sisearch.search.scheduler import SearchContext, run_search  # noqa: E402
from sisearch.tasks.arith import ArithConfig, ArithTask  # noqa: E402

SIZES = {  # searcher settings for the benchmark (small enough for a 2-core CPU)
    "beam": {"beam_size": 3, "expansions": 4},
    "mcts": {},  # sisearch/conf/searcher/mcts.yaml as it is
    "best_first": {"children": 3, "rollouts": 2},
    "iterative_deepening": {"samples": 4},
    "best_of_n": {"n": 8},
}


def default_tiny_config() -> TinyConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=[])
    return registry.validate("model", cfg.model)


def choose_model(which: str) -> tuple[Path, str]:
    """The default tiny model's directory (trained and cached first if missing), or the small test model."""
    if which == "test":
        import conftest

        return ensure_tiny(TinyConfig(**conftest.TEST_TINY), progress_bar=False), "the small test model"
    directory = ensure_tiny(default_tiny_config())
    return directory, f"the default tiny model ({directory.name})"


def build_searcher(name: str):
    conf = OmegaConf.merge(OmegaConf.load(CONF_DIR / "searcher" / f"{name}.yaml"), SIZES.get(name, {}))
    return registry.build("searcher", registry.validate("searcher", conf))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--searcher", default="mcts", choices=sorted(SIZES))
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--model", choices=("default", "test"), default="default",
                        help="the default tiny model (trained and cached if missing) or the small test model")
    # One thread: on a shared, busy CPU torch's thread pool can be many times slower than a single thread.
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    directory, which = choose_model(args.model)
    policy = load_policy(directory, device="cpu")
    engine = HFEngine(HFEngineConfig(), policy)
    task = ArithTask(ArithConfig())
    rewarder = ORMRewarder(ORMConfig(), task=task)
    ctx = SearchContext(task, engine, rewarder, step_max_new_tokens=32, progress=False)
    problems = task.problems("train")[: args.problems]
    searcher = build_searcher(args.searcher)

    engine.reseed(0)
    calls0, start = engine.stats.calls, time.time()
    batched = run_search(searcher, problems, ctx)
    batched_s, batched_calls = time.time() - start, engine.stats.calls - calls0

    engine.reseed(0)
    calls0, start = engine.stats.calls, time.time()
    single = [run_search(searcher, [p], ctx)[0] for p in problems]
    single_s, single_calls = time.time() - start, engine.stats.calls - calls0

    def summary(trees, calls: int) -> str:
        tokens = sum(t.cost.generated_tokens for t in trees)
        right = sum(1 for t in trees if t.chosen is not None and t.chosen.verdict and t.chosen.verdict.correct)
        return f"{tokens} generated tokens, {calls} engine calls, answer accuracy {right}/{len(trees)}"

    print(f"model: {which}")
    print(f"searcher: {args.searcher} {SIZES[args.searcher]}, {len(problems)} arith train problems, cpu threads "
          f"{torch.get_num_threads()}")
    print(f"batched (one scheduler, all problems): {batched_s:8.1f} s   [{summary(batched, batched_calls)}]")
    print(f"one by one (a scheduler per problem):  {single_s:8.1f} s   [{summary(single, single_calls)}]")
    print(f"speed-up: {single_s / batched_s:.1f}x")


if __name__ == "__main__":
    main()
