"""The run's processes under a distributed launch: who is who, which problems are whose, and the collectives.

A run is distributed when it was started as several processes (`WORLD_SIZE` > 1: torchrun, Lightning's
launcher, or SLURM tasks through Hydra's submitit launcher). Every rank holds the policy and searches its own
shard of each iteration's problems; the trees are gathered so that every rank builds the same training records,
and Lightning's strategy (DDP, FSDP, DeepSpeed) splits the training batches. Only rank 0 writes the run
directory; the other ranks meet it at barriers. This module holds that plumbing, so the loop's stages stay
the same in one process and in many: in one process every call here is a no-op.

The process group is torch.distributed's own (`env://`); Lightning finds it initialized and reuses it instead
of starting processes of its own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

import torch
import torch.distributed as dist

from sisearch.search.tree import Tree

log = logging.getLogger("sisearch")

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1  # processes of the run on this machine

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env(env: dict[str, str] | None = None) -> World:
    """The World that torchrun's (or submitit's exported) variables describe; one process when they are absent."""
    env = os.environ if env is None else env
    size = int(env.get("WORLD_SIZE", "1"))
    if size < 1:
        raise ValueError(f"WORLD_SIZE must be at least 1, got {size}")
    rank = int(env.get("RANK", "0"))
    local_rank = int(env.get("LOCAL_RANK", "0"))
    local_size = int(env.get("LOCAL_WORLD_SIZE", str(size)))
    if not 0 <= rank < size:
        raise ValueError(f"RANK {rank} is outside WORLD_SIZE {size}")
    return World(rank, size, local_rank, local_size)


def export_slurm_env() -> None:
    """Under SLURM tasks (Hydra's submitit launcher with tasks_per_node > 1 or nodes > 1) without torchrun,
    export the `env://` variables from submitit's view of the job, so that every task joins one process group."""
    # Only submitit's own jobs: a plain script in a many-task allocation is one process, not a rank of a group.
    if "WORLD_SIZE" in os.environ or os.environ.get("SUBMITIT_EXECUTOR") != "slurm":
        return
    if int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return
    try:
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError:
        return  # not a submitit job: a plain srun must set the variables itself (README, "Launching")
    try:
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    except RuntimeError:  # submitit raises when the process is not one of its jobs
        return


def init_world() -> World:
    """Join the run's process group (once per process) and return this process's World.

    Gloo carries the Python objects the loop gathers (trees, evaluation results) from CPU tensors; NCCL,
    when there are GPUs, carries the training's CUDA tensors (one group, a backend per device type).
    """
    export_slurm_env()
    world = world_from_env()
    if world.distributed and not dist.is_initialized():
        backend = "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(world.local_rank % torch.cuda.device_count())
            backend = "cpu:gloo,cuda:nccl"
        dist.init_process_group(backend=backend, rank=world.rank, world_size=world.size)
        log.info("rank %d of %d joined the process group (%s)", world.rank, world.size, backend)
    return world


def shard_of(problem_id: str, size: int) -> int:
    """The rank that owns a problem: fixed by its id (crc32, the same in every process and Python run), so a
    problem's owner does not depend on which other problems an iteration drew."""
    return zlib.crc32(problem_id.encode("utf-8")) % size


def shard(items: Sequence[T], world: World, key: Callable[[T], str]) -> list[T]:
    """This rank's share of `items`, in their order."""
    if not world.distributed:
        return list(items)
    return [item for item in items if shard_of(key(item), world.size) == world.rank]


def split_budget(budget: int | None, world: World) -> int | None:
    """This rank's share of a token budget: the whole split as evenly as whole tokens allow (at least 1)."""
    if budget is None or not world.distributed:
        return budget
    share, extra = divmod(budget, world.size)
    return max(1, share + (1 if world.rank < extra else 0))


def gather(value: T, world: World) -> list[T]:
    """Every rank's `value` (picklable), in rank order, on every rank."""
    if not world.distributed:
        return [value]
    gathered: list[Any] = [None] * world.size
    dist.all_gather_object(gathered, value)
    return gathered


def spread_work(count: int, compute: Callable[[list[int]], list[R]]) -> list[R]:
    """`compute(indices)` over 0..count-1, split across the ranks of the process group (rank r takes indices
    r, r + size, ...) and gathered in index order on every rank: work every rank needs, done once. Without a
    process group, one call over all indices."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return compute(list(range(count)))
    rank, size = dist.get_rank(), dist.get_world_size()
    parts: list[Any] = [None] * size
    dist.all_gather_object(parts, compute(list(range(rank, count, size))))
    results: list[Any] = [None] * count
    for r, part in enumerate(parts):
        results[r::size] = part
    return results


def gather_in_order(mine: list[T], world: World, order: Sequence[str], key: Callable[[T], str]) -> list[T]:
    """Every rank's items, gathered and put back in `order` (ids): the same list on every rank.

    Each id of `order` that some rank produced appears exactly once; a duplicate means two ranks searched the
    same problem, which the shards rule out, so it is an error rather than something to tidy.
    """
    if not world.distributed:
        return list(mine)
    by_id: dict[str, T] = {}
    for items in gather(mine, world):
        for item in items:
            item_id = key(item)
            if item_id in by_id:
                raise RuntimeError(f"problem {item_id!r} came back from two ranks; the shards overlap")
            by_id[item_id] = item
    return [by_id[i] for i in order if i in by_id]


def gather_trees(mine: list[Tree], order: Sequence[str], world: World) -> tuple[list[Tree], list[str]]:
    """Every rank's trees in `order` (problem ids), and their JSON lines, on every rank.

    Trees travel as their JSON lines and every rank rebuilds all of them from the lines, its own included, so
    the builder gets the same input everywhere. In one process the trees are returned as they are."""
    lines = [line for _, line in gather_in_order([(t.problem_id, t.to_json()) for t in mine], world, order, _first)]
    return ([Tree.from_json(line) for line in lines] if world.distributed else list(mine)), lines


def _first(pair: tuple[str, str]) -> str:
    return pair[0]


def write_on_main(world: World, write: Callable[..., Any], *args: Any) -> None:
    """A write that rank 0 alone makes (the other ranks hold the same content and skip it)."""
    if world.is_main:
        write(*args)


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def on_main(world: World, fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 only and give its result to every rank; an error there is raised on every rank,
    so that the other ranks stop too instead of waiting at the next collective."""
    if not world.distributed:
        return fn()
    box: list[Any] = [None]
    if world.is_main:
        try:
            box[0] = ("ok", fn())
        except Exception as err:  # noqa: BLE001 -- handed to every rank, raised there
            box[0] = ("error", err)
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise value
    return value


def main_first(world: World, fn: Callable[[], T]) -> T:
    """`fn` on rank 0, then on the other ranks (a cache rank 0 fills and the others read); each keeps its own
    result. An error on rank 0 is raised on every rank."""
    if not world.distributed:
        return fn()
    box: list[Any] = [None]
    result: Any = None
    if world.is_main:
        try:
            result = fn()
        except Exception as err:  # noqa: BLE001 -- handed to every rank, raised there
            box[0] = err
    dist.broadcast_object_list(box, src=0)
    if box[0] is not None:
        raise box[0]
    return result if world.is_main else fn()


def check_same(what: str, text: str, world: World) -> None:
    """Stop if the ranks disagree about `text` (e.g. the training records they built): DDP would otherwise
    train each rank on a different share of different data without a word."""
    if not world.distributed:
        return
    digests = gather(hashlib.sha256(text.encode("utf-8")).hexdigest(), world)
    if len(set(digests)) > 1:
        differing = [r for r, d in enumerate(digests) if d != digests[0]]
        raise RuntimeError(f"the ranks built different {what}: ranks {differing} differ from rank 0")


def mean_over_ranks(metrics: dict[str, float], world: World) -> dict[str, float]:
    """Each metric's mean over the ranks that have it (a rank's training means are of its own batches)."""
    if not world.distributed:
        return metrics
    rows = gather(metrics, world)
    keys = sorted({k for row in rows for k in row})
    return {k: sum(row[k] for row in rows if k in row) / sum(1 for row in rows if k in row) for k in keys}


def rank_seed(seed: int, world: World) -> int:
    """A sampling seed of its own for each rank (rank 0 keeps `seed`, so one process is unchanged)."""
    return (seed + 7919 * world.rank) % (2**31)


__all__ = [
    "World", "world_from_env", "init_world", "shard_of", "shard", "split_budget", "gather", "gather_in_order",
    "gather_trees", "write_on_main", "barrier", "on_main", "main_first", "check_same", "mean_over_ranks", "rank_seed",
]
