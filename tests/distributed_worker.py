"""One optimisation step of DPO (reference log-probs, NLL term) and of SFT (token mean) on a fixed global batch,
in one process or as a rank of `torchrun --nproc-per-node 2` (Gloo on CPU); plus the collectives of
`sisearch.distributed` under two real processes. Run by tests/test_distributed.py, not collected by pytest.

    python tests/distributed_worker.py TINY_DIR OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from sisearch.data.records import PreferencePair, SFTExample
from sisearch.distributed import (
    World, check_same, gather_in_order, init_world, main_first, mean_over_ranks, on_main, spread_work,
)
from sisearch.models.policy import load_policy
from sisearch.optim.common import TrainerConfig
from sisearch.optim.dpo import DPOConfig, DPOOptimizer
from sisearch.optim.sft import SFTConfig, SFTOptimizer

BATCH = 4  # the global batch: every record of the data set, one optimizer step
PAIRS = [
    PreferencePair("p0", "Q:1+2=?\n", "1+2=3\nA:3", "1+2=4\nA:4"),
    PreferencePair("p1", "Q:5-3+1=?\n", "5-3=2\n2+1=3\nA:3", "5-3=1\nA:1"),
    PreferencePair("p2", "Q:4+4=?\n", "4+4=8\nA:8", "4+4=9\nA:9"),
    PreferencePair("p3", "Q:9-2-2=?\n", "9-2=7\n7-2=5\nA:5", "9-2=6\n6-2=3\nA:3"),
]
# completions of different lengths, so that a per-rank token mean would differ from the global one
SFT = [SFTExample(p.problem_id, p.prompt, c) for p, c in zip(PAIRS, ["A:3", "5-3=2\n2+1=3\nA:3", "4+4=8\nA:8", "A:5"])]


def one_step(tiny_dir: str, world: World) -> dict:
    trainer = TrainerConfig(accelerator="cpu", strategy="ddp" if world.distributed else "auto", devices=world.size,
                            progress_bar=False)
    out = {}
    for name, optimizer, records in (
        ("dpo", DPOOptimizer(DPOConfig(lr=1e-4, batch_size=BATCH, max_steps=1, nll_weight=1.0)), PAIRS),
        ("sft", SFTOptimizer(SFTConfig(lr=1e-4, batch_size=BATCH, max_steps=1)), SFT),
    ):
        policy = load_policy(tiny_dir, device="cpu")
        torch.manual_seed(0)
        metrics = optimizer.fit(policy, records, trainer, seed=0)
        out[name] = {"weights": {k: v.clone() for k, v in policy.model.state_dict().items()}, "metrics": metrics}
    return out


def collectives(world: World) -> dict:
    """What each rank sees of the helpers, for the test to check."""
    order = ["a", "b", "c", "d"]
    mine = [x for i, x in enumerate(order) if i % world.size == world.rank]
    seen: dict = {"gathered": gather_in_order(mine, world, order, key=str)}
    seen["mean"] = mean_over_ranks({"x": float(world.rank)}, world)
    check_same("values", "same everywhere", world)
    try:
        check_same("values", f"rank {world.rank}", world)
        seen["differing"] = "not detected"
    except RuntimeError as err:
        seen["differing"] = str(err)
    try:
        on_main(world, lambda: (_ for _ in ()).throw(ValueError("rank 0 failed")))
        seen["main_error"] = "not raised"
    except ValueError as err:
        seen["main_error"] = str(err)
    seen["main_first"] = main_first(world, lambda: world.rank)
    # each rank computes its share (index, rank) and every rank gets all five in index order
    seen["spread"] = spread_work(5, lambda indices: [[i, world.rank] for i in indices])
    return seen


def main() -> None:
    tiny_dir, out_dir = sys.argv[1], Path(sys.argv[2])
    world = init_world()
    torch.set_num_threads(1)
    result = one_step(tiny_dir, world)
    if world.is_main:
        torch.save(result, out_dir / f"step_world{world.size}.pt")
    if world.distributed:
        (out_dir / f"collectives_rank{world.rank}.json").write_text(json.dumps(collectives(world)))


if __name__ == "__main__":
    main()
