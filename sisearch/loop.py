"""The iteration driver: search -> build -> train -> evaluate, T times, resumable at iteration boundaries.

`run` reads as the table of contents; each phase of an iteration is a method that returns its metrics.
The run directory's layout and crash-safety live in `sisearch/run_dir.py`, the config checks in
`sisearch/run_config.py`, where the numbers go (W&B or CSV, per step and per iteration) in `sisearch/tracking/`,
and what changes under a distributed launch (shards, gathers, barriers, rank-0 writes) in `sisearch/distributed.py`.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
import warnings
from dataclasses import dataclass, replace
from enum import IntEnum
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from sisearch import registry
from sisearch.data.records import write_records
from sisearch.distributed import (
    World, barrier, check_same, gather_trees, init_world, main_first, mean_over_ranks, on_main, rank_seed, shard,
    split_budget, write_on_main,
)
from sisearch.evaluate import evaluate_with_outputs
from sisearch.files import write_jsonl
from sisearch.models.policy import Policy, load_policy, policy_options
from sisearch.optim.base import NonFiniteLossError
from sisearch.optim.common import TrainerConfig
from sisearch.optim.session import training_session
from sisearch.progress import stage
from sisearch.reporting import print_summary, report_iteration
from sisearch.run_config import LoopConfig, validate_config
from sisearch.run_dir import finish_iteration, finished_iterations, iteration_dir, prepare_run_dir, write_metrics
from sisearch.search.balance import balance_metrics
from sisearch.search.budget import search_with_budget
from sisearch.search.metrics import search_metrics
from sisearch.search.scheduler import SearchContext, run_search
from sisearch.search.tree import Tree
from sisearch.tasks.base import Problem
from sisearch.third_party_warnings import third_party_warnings_to
from sisearch.threads import set_threads
from sisearch.tracking.tracker import Tracker, start_tracking

log = logging.getLogger("sisearch")


class Phase(IntEnum):
    """The random phases of an iteration, each seeded on its own so that a resumed run matches."""

    PROBLEMS = 0  # which train problems the iteration searches (and the global seed before training)
    SEARCH = 1
    DATA = 2  # the builder's choices and the training run
    EVAL = 3


def phase_seed(seed: int, iteration: int, phase: Phase) -> int:
    """A distinct, reproducible seed for each phase of each iteration."""
    return (seed * 1_000_003 + iteration * 101 + phase) % (2**31)


def seed_all(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Components:
    """What a run is made of, built from the validated config."""

    task: Any
    model: Any
    searcher: Any
    builder: Any
    optimizer: Any
    policy: Policy
    engine: Any
    rewarder: Any


def run(cfg: DictConfig, run_dir: Path) -> list[dict[str, Any]]:
    """Run (or resume) the loop in `run_dir`; returns one metrics row per finished iteration (0 = base)."""
    world = init_world()  # one process unless launched by torchrun or as SLURM tasks
    loop_cfg, typed, trainer_cfg = validate_config(cfg, world)
    set_threads(loop_cfg.threads, world.local_size)
    if not world.is_main:  # one display: rank 0's
        loop_cfg = replace(loop_cfg, progress=False)
    run_dir = on_main(world, lambda: prepare_run_dir(cfg, run_dir, loop_cfg.resume))  # rank 0's directory for all
    rows = finished_iterations(run_dir)
    with third_party_warnings_to(run_dir, write=world.is_main):
        # per-step curves, iteration rows, tables, artifacts: rank 0's alone
        tracker = start_tracking(cfg, run_dir, rows, write=world.is_main)
        status = "failed"
        try:
            # every Trainer of the run (optimizers, reward heads, the tiny model's own) takes these settings
            settings = replace(trainer_cfg, progress_bar=trainer_cfg.progress_bar and loop_cfg.progress)
            with training_session(settings, tracker.steps):
                loop = Loop(loop_cfg, settings, build_components(typed, loop_cfg, run_dir, rows, world), run_dir, world)
                run_iterations(loop, rows, tracker)
            status = "success"
        finally:
            tracker.finish(status)
    if world.is_main:
        print_summary(rows)
    return rows


def run_iterations(loop: Loop, rows: list[dict[str, Any]], tracker: Tracker) -> None:
    """Iterations len(rows)..T (0: the base model's evaluation), each row written, tracked and reported as it
    finishes, so a stopped run resumes after its last finished iteration."""
    world, run_dir = loop.world, loop.run_dir
    if rows and world.is_main:  # a kill between metrics.json and metrics.jsonl left it one row short
        write_metrics(run_dir, rows)
    for t in range(len(rows), loop.cfg.iterations + 1):
        with stage(f"iteration {t}"):
            row = loop.run_iteration(t) if t else {"iteration": 0, **loop.evaluate(0)}
        finish_iteration(run_dir, rows, tracker.stamp(row), write=world.is_main)
        tracker.log_iteration(run_dir, rows[-1])
        barrier(world)  # the other ranks wait for rank 0's files of the iteration
        if world.is_main:
            report_iteration(rows)


def build_components(
    typed: dict[str, Any], loop_cfg: LoopConfig, run_dir: Path, rows: list[dict[str, Any]], world: World = World()
) -> Components:
    task = registry.build("task", typed["task"])
    if not task.problems("train"):
        raise ValueError("the task's train split is empty; nothing to search")
    if not task.problems("test"):
        raise ValueError("the task's test split is empty; nothing to evaluate")
    model = registry.build("model", typed["model"])
    searcher = registry.build("searcher", typed["searcher"])
    builder = registry.build("builder", typed["builder"])
    optimizer_cls = registry.lookup("optimizer", typed["optimizer"].name).cls
    # On-policy objectives (score) sample and check answers while training.
    optimizer = registry.build("optimizer", typed["optimizer"], **({"task": task} if optimizer_cls.needs_task else {}))
    # Rank 0 first: it fills the model cache (the tiny model trains once), the others then read it.
    policy = main_first(world, lambda: restore_policy(model, run_dir, rows, loop_cfg.progress))
    task.use_tokenizer(policy.tokenizer)  # chat-template prompts when the task's prompt.format asks for them
    engine = registry.build("engine", typed["engine"], policy=policy)
    rewarder = registry.build("rewarder", typed["rewarder"], task=task, engine=engine)
    return Components(task, model, searcher, builder, optimizer, policy, engine, rewarder)


def restore_policy(model: Any, run_dir: Path, rows: list[dict[str, Any]], progress: bool) -> Policy:
    """The base policy for a fresh run; the last finished iteration's checkpoint when resuming."""
    if not rows:
        return model.load(progress_bar=progress)
    last = len(rows) - 1
    log.info("resuming %s after iteration %d", run_dir, last)
    if last == 0:
        return model.load()
    checkpoint = iteration_dir(run_dir, last) / "policy"
    if not checkpoint.is_dir():
        # Continuing from the base model would silently mix two different runs.
        raise FileNotFoundError(
            f"cannot resume {run_dir}: iteration {last} finished without a saved policy ({checkpoint} is "
            "missing; the run had save_checkpoints=false); start a fresh run directory"
        )
    return load_checkpoint(model, checkpoint)


def load_checkpoint(model_component: Any, directory: Path) -> Policy:
    """The policy saved at the end of an iteration (adapters on the base model under LoRA)."""
    options = policy_options(model_component.cfg)
    if (directory / "adapter_config.json").is_file():
        # The base is the component's own directory (for a GGUF model, the converted one in the cache).
        return load_policy(model_component.base_path, adapter_path=directory, **options)
    return load_policy(directory, **options)


class Loop:
    """One run's iterations; each phase returns the metrics it adds to the iteration's row."""

    def __init__(self, cfg: LoopConfig, trainer_cfg: TrainerConfig, parts: Components, run_dir: Path,
                 world: World = World()):
        self.cfg, self.parts, self.run_dir, self.world = cfg, parts, run_dir, world
        self.trainer_cfg = trainer_cfg  # the run's settings, progress bar already folded in by `run`
        self.train_pool = parts.task.problems("train")
        self.problems_by_id = {p.id: p for p in self.train_pool}
        self.search_ctx = SearchContext(parts.task, parts.engine, parts.rewarder, cfg.step_max_new_tokens, cfg.progress)

    def seed(self, t: int, phase: Phase) -> int:
        return phase_seed(self.cfg.seed, t, phase)

    def run_iteration(self, t: int) -> dict[str, Any]:
        start = time.time()
        directory = iteration_dir(self.run_dir, t)
        on_main(self.world, lambda: fresh_directory(directory))  # an unfinished attempt starts over
        row: dict[str, Any] = {"iteration": t}
        trees, metrics = self.search(t, self.draw_problems(t), directory)
        row.update(metrics)
        records, metrics = self.build(t, trees, directory)
        row.update(metrics)
        row.update(self.train(t, records))
        if self.cfg.save_checkpoints:
            write_on_main(self.world, self.parts.policy.save, directory / "policy")
        row.update(self.evaluate(t))
        row["iteration/seconds"] = time.time() - start
        return row

    def draw_problems(self, t: int) -> list[Problem]:
        seed_all(self.seed(t, Phase.PROBLEMS))
        rng = random.Random(self.seed(t, Phase.PROBLEMS))
        return rng.sample(self.train_pool, min(self.cfg.problems_per_iteration, len(self.train_pool)))

    def search(self, t: int, problems: list[Problem], directory: Path) -> tuple[list[Tree], dict[str, float]]:
        """Search this rank's shard of `problems` on its share of the token budget; every rank gets all trees."""
        self.parts.engine.reseed(rank_seed(self.seed(t, Phase.SEARCH), self.world))
        start = time.time()
        # Under a budget one bar counts tokens, so the chunks' own bars stay off.
        chunk_ctx = replace(self.search_ctx, progress=self.cfg.progress and self.cfg.search_token_budget is None)
        mine = search_with_budget(
            lambda chunk: run_search(self.parts.searcher, chunk, chunk_ctx), shard(problems, self.world, problem_id),
            split_budget(self.cfg.search_token_budget, self.world), self.cfg.search_chunk, progress=self.cfg.progress,
        )
        trees, lines = gather_trees(mine, [p.id for p in problems], self.world)
        metrics = {**search_metrics(trees, time.time() - start), **balance_metrics(trees, self.cfg.balance)}
        write_on_main(self.world, write_jsonl, directory / "trees.jsonl", lines)
        return trees, metrics

    def build(self, t: int, trees: list[Tree], directory: Path) -> tuple[list[Any], dict[str, float]]:
        records = self.parts.builder.build(trees, self.problems_by_id, self.seed(t, Phase.DATA))
        if self.world.distributed:  # DDP splits one data set, the same everywhere (repr: the whole data set)
            check_same("training records", repr(records), self.world)
        write_on_main(self.world, write_records, directory / "data.jsonl", records)
        return records, {"data/records": float(len(records))}

    def train(self, t: int, records: list[Any]) -> dict[str, float]:
        """Fit the policy on the iteration's records, then hand the new weights to the engine."""
        metrics: dict[str, float] = {}
        if records:
            seed_all(self.seed(t, Phase.DATA))
            start = time.time()
            try:
                metrics.update(
                    self.parts.optimizer.fit(self.parts.policy, records, self.trainer_cfg, self.seed(t, Phase.DATA))
                )
            except NonFiniteLossError as err:
                raise NonFiniteLossError(
                    f"iteration {t}: {err}; finished iterations stay in {self.run_dir}, and re-running there resumes"
                ) from None
            metrics = mean_over_ranks(metrics, self.world)  # each rank's means are over its share of the batches
            metrics["train/seconds"] = time.time() - start
            metrics["train/skipped"] = 0.0
        else:
            warnings.warn(f"iteration {t}: the builder found no training records; skipping training")
            metrics["train/skipped"] = 1.0
        self.parts.engine.sync(self.parts.policy)
        return metrics

    def evaluate(self, t: int) -> dict[str, float]:
        """Held-out accuracy of the policy as it is after iteration `t` (0: the base policy); the greedy
        outputs with their verdicts go to the iteration's eval.jsonl."""
        self.parts.engine.reseed(rank_seed(self.seed(t, Phase.EVAL), self.world))
        metrics, outputs = evaluate_with_outputs(
            self.parts.task, self.parts.engine, self.cfg.eval, self.cfg.progress, world=self.world
        )
        lines = [json.dumps(o, sort_keys=True) for o in outputs]
        write_on_main(self.world, write_jsonl, iteration_dir(self.run_dir, t) / "eval.jsonl", lines)
        return metrics


def fresh_directory(directory: Path) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)


def problem_id(problem: Problem) -> str:
    return problem.id

