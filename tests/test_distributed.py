"""Data-parallel runs on torch.distributed: shards, gathers, rank-0 writes, DDP steps, threads per process.

The process tests launch two real processes with torchrun on CPU (Gloo), one thread each.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, SMALL_RUN, compose

from sisearch import registry
from sisearch.distributed import World, shard, shard_of, split_budget, spread_work, world_from_env
from sisearch.loop import Phase, phase_seed
from sisearch.optim.base import rank_loader, seeded_loader
from sisearch.optim.common import TrainerConfig
from sisearch.optim.sharded import full_weights, shards_weights
from sisearch.registry import ConfigError
from sisearch.run_config import check_trainer
from sisearch.threads import choose_threads, set_threads, thread_share

TWO_RANKS = ["trainer.strategy=ddp", "trainer.devices=2"]


def env_for_processes() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]


def launch(command: list[str], timeout: float = 300) -> None:
    done = subprocess.run(command, env=env_for_processes(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


# --- the plumbing, in one process ----------------------------------------------------------------------


def test_world_comes_from_torchrun_variables():
    assert world_from_env({}) == World()
    world = world_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert (world.rank, world.size, world.local_rank, world.local_size, world.is_main) == (3, 4, 1, 2, False)
    with pytest.raises(ValueError, match="outside WORLD_SIZE"):
        world_from_env({"RANK": "2", "WORLD_SIZE": "2"})


SLURM_TASK = {"SLURM_JOB_ID": "123", "SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1",
              "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "node[1-2]", "SLURM_NODEID": "1"}


def test_a_submitit_slurm_task_becomes_a_rank_and_a_plain_slurm_script_does_not(monkeypatch):
    pytest.importorskip("submitit")
    from sisearch.distributed import export_slurm_env

    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.setenv(key, "")  # recorded, so that what the export sets is undone after the test
        monkeypatch.delenv(key)
    for key, value in SLURM_TASK.items():
        monkeypatch.setenv(key, value)
    export_slurm_env()  # no SUBMITIT_EXECUTOR: one process in a 4-task allocation, not a rank
    assert world_from_env() == World()
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    export_slurm_env()
    assert world_from_env() == World(rank=3, size=4, local_rank=1, local_size=2)
    assert os.environ["MASTER_ADDR"] == "node1" and int(os.environ["MASTER_PORT"]) > 0


def test_shards_split_problems_by_id_alone():
    ids = [f"train-{i}" for i in range(200)]
    shards = [shard(ids, World(rank, 3), key=str) for rank in range(3)]
    assert sorted(sum(shards, [])) == sorted(ids)  # every problem exactly once
    assert all(40 < len(s) < 95 for s in shards)  # roughly even
    # a problem's owner does not depend on which other problems were drawn with it
    drawn = random.Random(0).sample(ids, 30)
    assert all(p in shards[shard_of(p, 3)] for p in drawn)
    assert shard(ids, World(), key=str) == ids


def test_spread_work_without_a_process_group_is_one_call_over_every_index():
    calls: list[list[int]] = []
    assert spread_work(4, lambda indices: calls.append(indices) or [i * i for i in indices]) == [0, 1, 4, 9]
    assert calls == [[0, 1, 2, 3]]


def test_token_budget_is_split_across_ranks():
    assert [split_budget(10, World(r, 3)) for r in range(3)] == [4, 3, 3]
    assert split_budget(None, World(1, 2)) is None
    assert split_budget(1000, World()) == 1000


def test_threads_take_a_share_of_the_cores_unless_the_user_chose():
    assert thread_share(16, 8) == 2 and thread_share(2, 4) == 1
    assert choose_threads(None, {}, 4, 16) == (4, "16 cores shared by 4 processes")
    assert choose_threads(None, {}, 1, 16)[0] is None  # alone on the machine: torch's own default
    assert choose_threads(None, {"OMP_NUM_THREADS": "3"}, 4, 16)[0] == 3
    assert choose_threads(5, {"OMP_NUM_THREADS": "3"}, 4, 16)[0] == 5  # the config key wins
    with pytest.raises(ValueError, match="threads must be null or at least 1"):
        choose_threads(0, {}, 1, 2)


def test_set_threads_applies_the_share(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("sisearch.threads.available_cores", lambda: 8)
    try:
        assert set_threads(None, local_processes=4) == 2 and torch.get_num_threads() == 2
        assert set_threads(1, local_processes=1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_each_rank_reads_its_share_of_every_global_batch():
    data = list(range(8))
    loader = seeded_loader(data, batch_size=4, collate=list, seed=7)
    assert rank_loader(loader, 1, 0) is loader
    first = [next(iter(rank_loader(loader, 2, r))) for r in range(2)]
    assert [len(b) for b in first] == [2, 2] and not set(first[0]) & set(first[1])
    again = [next(iter(rank_loader(seeded_loader(data, 4, list, seed=7), 2, r))) for r in range(2)]
    assert again == first  # seeded as the loader was
    with pytest.raises(ValueError, match="batch size 4 must be a multiple of the 3 training processes"):
        rank_loader(loader, 3, 0)


def test_a_trainer_of_more_processes_than_launched_is_refused():
    """Lightning would start copies of the whole command at the first training; the run says how to launch."""
    cfg = TrainerConfig(accelerator="cpu", strategy="ddp", devices=2, progress_bar=False)
    with pytest.raises(ConfigError, match="trains in 2 processes, but the run was launched as 1; .*torchrun"):
        check_trainer(cfg)
    with pytest.raises(ValueError, match="num_nodes must be a count >= 1"):
        TrainerConfig(num_nodes=0)


def test_strategies_that_shard_train_a_copy_and_gather_full_weights():
    assert shards_weights("fsdp") and shards_weights("deepspeed_stage_2") and not shards_weights("ddp")
    assert not shards_weights("auto")
    with pytest.raises(ValueError, match="partitions the weights"):
        shards_weights("deepspeed_stage_3_offload")
    state = {"model.layer.weight": torch.ones(1), "other": torch.zeros(1)}
    assert list(full_weights(state)) == ["layer.weight"]


def test_score_refuses_a_sharding_strategy(tiny_policy, arith_task):
    from sisearch.optim.score import ScoreConfig, ScoreOptimizer

    with pytest.raises(ValueError, match="samples from the weights being trained.*use trainer.strategy=ddp"):
        ScoreOptimizer(ScoreConfig(), arith_task).fit(tiny_policy, [], TrainerConfig(strategy="fsdp"), seed=0)


def test_other_ranks_write_no_hydra_files():
    from sisearch.cli import quiet_hydra_overrides

    assert quiet_hydra_overrides(["seed=1"]) == ["hydra.output_subdir=null", "hydra/job_logging=stdout"]
    assert quiet_hydra_overrides(["hydra/job_logging=none", "hydra.output_subdir=x"]) == []


# --- two real processes ------------------------------------------------------------------------------


def test_one_ddp_step_on_two_ranks_equals_one_step_in_one_process(tiny_dir, tmp_path):
    """DPO (precomputed reference log-probs, NLL term) and SFT (token mean over the global batch): the weights
    after one step on two ranks, each holding half of the batch, are those of one process holding all of it.
    Adam's first step hardly depends on the gradient's scale, so the gradient norms are compared as well."""
    worker = str(REPO / "tests" / "distributed_worker.py")
    launch([sys.executable, worker, str(tiny_dir), str(tmp_path)])
    launch(torchrun(worker, str(tiny_dir), str(tmp_path)))
    single, ddp = (torch.load(tmp_path / f"step_world{n}.pt") for n in (1, 2))
    base = base_weights(tiny_dir)
    for name in ("dpo", "sft"):
        one, two = single[name], ddp[name]
        moved = max(float((one["weights"][k] - base[k]).abs().max()) for k in one["weights"])
        assert moved > 5e-5, f"{name}: the step did not move the weights"
        for key, tensor in one["weights"].items():
            assert torch.allclose(tensor, two["weights"][key], atol=1e-5, rtol=0), f"{name}: {key} differs"
        assert two["metrics"]["train/grad_norm"] == pytest.approx(one["metrics"]["train/grad_norm"], rel=1e-5)
    ranks = [json.loads((tmp_path / f"collectives_rank{r}.json").read_text()) for r in range(2)]
    for seen in ranks:
        assert seen["gathered"] == ["a", "b", "c", "d"] and seen["mean"] == {"x": 0.5}
        assert seen["differing"] == "the ranks built different values: ranks [1] differ from rank 0"
        assert seen["main_error"] == "rank 0 failed"  # raised on every rank, not only on rank 0
        assert seen["spread"] == [[0, 0], [1, 1], [2, 0], [3, 1], [4, 0]]  # reference log-probs: computed once
    assert [seen["main_first"] for seen in ranks] == [0, 1]


def base_weights(tiny_dir: Path) -> dict[str, torch.Tensor]:
    from sisearch.models.policy import load_policy

    return load_policy(tiny_dir, device="cpu").model.state_dict()


RUN = [*SMALL_RUN, "task.test_size_per_difficulty=4", *TWO_RANKS]


def run_files(run_dir: Path) -> dict[str, bytes]:
    """The run's files whose bytes must repeat (metrics rows hold wall-clock seconds and are compared apart)."""
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted((run_dir / "iterations").rglob("*"))
        if p.is_file() and p.name != "metrics.json"
    }


def without_timing(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in row.items() if not (k.endswith("seconds") or "per_second" in k)} for row in rows]


def test_two_rank_run_writes_one_run_and_repeats_exactly(tiny_dir, tmp_path):
    """torchrun with two ranks: one metrics.jsonl, one set of iteration files, each selected problem searched by
    exactly one rank, the same training records on both (checked by the run itself; a mismatch stops it).

    The rerun of the same command is a resumed one, to keep the test to two launches: a copy of the run with
    iteration 1 unfinished (its metrics.json and policy gone) redoes iteration 1, which holds all of the run's
    sampling and training (iteration 0 is the base policy's greedy evaluation), and gives byte-identical files.
    """
    first, second = tmp_path / "first", tmp_path / "second"
    launch(torchrun("-m", "sisearch.cli", *RUN, f"hydra.run.dir={first}"))

    rows = without_timing(first / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == [0, 1] and rows[1]["data/records"] >= 1
    assert sorted(p.name for p in (first / "iterations").iterdir()) == ["iter_00", "iter_01"]
    assert (first / "iterations/iter_01/policy/model.safetensors").is_file()

    cfg = compose(RUN)
    pool = registry.build("task", registry.validate("task", cfg.task)).problems("train")
    seed = phase_seed(cfg.seed, 1, Phase.PROBLEMS)
    selected = [p.id for p in random.Random(seed).sample(pool, cfg.problems_per_iteration)]
    trees = [json.loads(line) for line in (first / "iterations/iter_01/trees.jsonl").read_text().splitlines()]
    assert [t["problem_id"] for t in trees] == selected  # every selected problem once, in the drawn order
    assert {shard_of(p, 2) for p in selected} == {0, 1}  # both ranks searched

    shutil.copytree(first, second)
    (second / "iterations/iter_01/metrics.json").unlink()
    shutil.rmtree(second / "iterations/iter_01/policy")
    launch(torchrun("-m", "sisearch.cli", *RUN, f"hydra.run.dir={second}"))
    assert run_files(second) == run_files(first)
    assert without_timing(second / "metrics.jsonl") == rows
