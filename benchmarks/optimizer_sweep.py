"""One training step of the loop, swept: fit the base model on one iteration's saved records under several
optimizer settings and print held-out greedy accuracy for each.

    python benchmarks/optimizer_sweep.py RUN_DIR/iterations/iter_01/data.jsonl --optimizer step_dpo \
        --grid '[{"lr": 5e-4, "nll_weight": 0}, {"lr": 1e-4, "nll_weight": 0}, {"lr": 1e-4}]'

The records (preference pairs, ranked lists, SFT examples) come from a finished run, so every setting trains
on exactly the same data from the same starting weights; only the optimizer differs. `--optimizer` is an
option of `sisearch/conf/optimizer/` (its YAML, group defaults included, is the base each grid entry updates).
This is how the preference recipes' learning rate and NLL term were chosen (README, "Results").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from recipes_compare import compose, print_rows  # noqa: E402
from search_throughput import choose_model  # noqa: E402

from sisearch import registry  # noqa: E402
from sisearch.data.records import read_records  # noqa: E402
from sisearch.engines.hf import HFEngine, HFEngineConfig  # noqa: E402
from sisearch.evaluate import EvalConfig, evaluate  # noqa: E402
from sisearch.models.policy import load_policy  # noqa: E402
from sisearch.optim.common import TrainerConfig  # noqa: E402
from sisearch.tasks.arith import ArithConfig, ArithTask  # noqa: E402

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")


def optimizer_config(option: str) -> dict:
    """sisearch/conf/optimizer/<option>.yaml with its group defaults resolved, as the loop would compose it."""
    return OmegaConf.to_container(compose([f"optimizer={option}"]).optimizer, resolve=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="an iteration's data.jsonl")
    parser.add_argument("--optimizer", default="step_dpo", help="an option of sisearch/conf/optimizer/")
    parser.add_argument("--grid", default='[{}]', help="JSON list of optimizer overrides, one per setting")
    parser.add_argument("--test-size", type=int, default=100, help="held-out problems per difficulty")
    parser.add_argument("--model", choices=("default", "test"), default="default")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    records = read_records(args.data)
    grid = json.loads(args.grid)
    if not isinstance(grid, list) or not all(isinstance(g, dict) for g in grid):
        raise SystemExit("--grid must be a JSON list of objects, e.g. '[{\"lr\": 1e-4}]'")
    base = optimizer_config(args.optimizer)
    directory, described = choose_model(args.model)
    task = ArithTask(ArithConfig(test_size_per_difficulty=args.test_size))
    trainer = TrainerConfig(accelerator="cpu", progress_bar=False)
    print(f"{len(records)} records from {args.data}; optimizer {args.optimizer}; {described}")
    rows = []
    for overrides in grid:
        torch.manual_seed(args.seed)
        policy = load_policy(directory, device="cpu")
        optimizer = registry.build("optimizer", registry.validate("optimizer", {**base, **overrides}))
        start = time.time()
        metrics = optimizer.fit(policy, records, trainer, args.seed)
        engine = HFEngine(HFEngineConfig(), policy)
        engine.reseed(args.seed)
        result = evaluate(task, engine, EvalConfig())
        rows.append((overrides, result, metrics, time.time() - start))
        print(f"  {json.dumps(overrides)}: overall {result['eval/greedy/overall']:.2f}", file=sys.stderr, flush=True)

    groups = sorted(k for k in rows[0][1] if k.startswith("eval/greedy/") and k != "eval/greedy/overall")
    head = ["setting"] + [g.split("/")[-1] for g in groups] + ["overall", "greedy tokens", "train acc.", "seconds"]
    lines = [head]
    for overrides, result, metrics, seconds in rows:
        lines.append(
            [json.dumps(overrides) or "{}"]
            + [f"{result[g]:.2f}" for g in groups]
            + [f"{result['eval/greedy/overall']:.2f}", f"{result['eval/greedy_tokens']:.1f}",
               f"{metrics.get('train/rewards/accuracies', float('nan')):.2f}", f"{seconds:.0f}"]
        )
    print_rows(lines)


if __name__ == "__main__":
    main()
