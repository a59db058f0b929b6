"""The iteration driver: search -> build -> fit -> evaluate, T times, resumable at iteration boundaries.

Every iteration writes its files into `iterations/iter_NN/` of the run directory (trees, training records,
the policy checkpoint) and finishes by writing `metrics.json` there; an iteration without that file is
unfinished and is redone on resume. `metrics.jsonl` in the run directory is rebuilt from the finished
iterations, so it never holds a half-written or duplicated line.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from sisearch import registry
from sisearch.data.records import write_records
from sisearch.evaluate import EvalConfig, evaluate
from sisearch.models.policy import Policy, load_policy, policy_options
from sisearch.optim.base import NonFiniteLossError
from sisearch.optim.common import TrainerConfig
from sisearch.reporting import LOGGERS, WANDB_MODES, RunLogger, print_summary
from sisearch.search.budget import search_with_budget
from sisearch.search.scheduler import SearchContext, run_search
from sisearch.search.tree import Tree

log = logging.getLogger("sisearch")

ITERATIONS_DIR = "iterations"
DONE_FILE = "metrics.json"


@dataclass
class LoopConfig:
    """Top-level run settings (the keys of conf/config.yaml outside the component groups)."""

    seed: int = 0
    iterations: int = 3
    problems_per_iteration: int = 1024  # at most this many problems an iteration
    # generated tokens one iteration's search may spend (None: search all problems_per_iteration problems);
    # problems are then searched `search_chunk` at a time, in order, until the budget is spent
    search_token_budget: int | None = 60000
    search_chunk: int = 64
    step_max_new_tokens: int = 32  # token budget of one step when a searcher expands step by step
    progress: bool = True
    save_checkpoints: bool = True
    resume: str | None = None
    plugins: list[str] = field(default_factory=list)
    eval: EvalConfig = field(default_factory=EvalConfig)


def atomic_write(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())  # so a crash of the machine cannot leave a renamed but empty file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def iteration_dir(run_dir: Path, t: int) -> Path:
    return run_dir / ITERATIONS_DIR / f"iter_{t:02d}"


def finished_iterations(run_dir: Path) -> list[dict[str, Any]]:
    """Metrics rows of the finished iterations, in order, stopping at the first unfinished one."""
    rows, t = [], 0
    while (iteration_dir(run_dir, t) / DONE_FILE).is_file():
        rows.append(json.loads((iteration_dir(run_dir, t) / DONE_FILE).read_text()))
        t += 1
    return rows


def seed_all(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def phase_seed(seed: int, iteration: int, phase: int) -> int:
    """A distinct, reproducible seed for each phase of each iteration (so a resumed run matches)."""
    return (seed * 1_000_003 + iteration * 101 + phase) % (2**31)


# Top-level config entries besides LoopConfig's fields and the component groups (registry.KINDS).
OTHER_GROUPS = ("trainer", "logger")


def validate_config(cfg: DictConfig) -> tuple[LoopConfig, dict[str, Any], TrainerConfig]:
    """Check every part of the config before any work starts; returns the typed configs."""
    allowed = [*LoopConfig.__dataclass_fields__, *registry.KINDS, *OTHER_GROUPS]
    # Hydra's struct mode rejects `iteration=3`, but `+iteration=3` (or a YAML typo) would pass silently.
    unknown = [str(k) for k in cfg if k not in allowed and k != "hydra"]
    if unknown:
        raise registry.ConfigError(
            f"unknown top-level config key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(allowed)}"
        )
    loop_keys = {k: cfg[k] for k in LoopConfig.__dataclass_fields__ if k in cfg}
    loop_cfg = registry.to_typed(LoopConfig, loop_keys, "run config")
    check_logger(cfg.get("logger"))
    registry.load_plugins(loop_cfg.plugins)
    typed = {kind: registry.validate(kind, cfg[kind]) for kind in registry.KINDS if kind in cfg}
    missing = [kind for kind in registry.KINDS if kind not in typed]
    if missing:
        raise registry.ConfigError(f"the config has no {', '.join(missing)}; every run needs all of {registry.KINDS}")
    trainer_cfg = registry.to_typed(TrainerConfig, cfg.get("trainer") or {}, "trainer config")
    builder_cls = registry.lookup("builder", typed["builder"].name).cls
    optimizer_cls = registry.lookup("optimizer", typed["optimizer"].name).cls
    if builder_cls.produces is not optimizer_cls.consumes:
        raise registry.ConfigError(
            f"builder '{typed['builder'].name}' produces {builder_cls.produces.__name__} records but optimizer "
            f"'{typed['optimizer'].name}' trains on {optimizer_cls.consumes.__name__}; builders that produce "
            f"{optimizer_cls.consumes.__name__}: {', '.join(compatible_builders(optimizer_cls.consumes))}"
        )
    if loop_cfg.iterations < 0 or loop_cfg.problems_per_iteration < 1:
        raise registry.ConfigError("iterations must be >= 0 and problems_per_iteration >= 1")
    if loop_cfg.search_chunk < 1 or (loop_cfg.search_token_budget is not None and loop_cfg.search_token_budget < 1):
        raise registry.ConfigError("search_chunk must be >= 1 and search_token_budget null or >= 1")
    return loop_cfg, typed, trainer_cfg


def check_logger(cfg: Any) -> None:
    """The logger is built after the model loads, so its settings are checked here, before any work."""
    name = (cfg or {}).get("name", "none")
    if name not in LOGGERS:
        raise registry.ConfigError(f"unknown logger '{name}'; allowed: {', '.join(LOGGERS)}")
    if name == "wandb" and cfg.get("mode", "auto") not in WANDB_MODES:
        raise registry.ConfigError(f"logger 'wandb': unknown mode '{cfg.get('mode')}'; allowed: {', '.join(WANDB_MODES)}")


def compatible_builders(record_type: type) -> list[str]:
    return [n for n in registry.names("builder") if registry.lookup("builder", n).cls.produces is record_type]


def write_jsonl(path: Path, lines: list[str]) -> None:
    atomic_write(path, "".join(line + "\n" for line in lines))


def load_checkpoint(model_component: Any, directory: Path) -> Policy:
    """The policy saved at the end of an iteration (adapters on the base model under LoRA)."""
    options = policy_options(model_component.cfg)
    if (directory / "adapter_config.json").is_file():
        # The base is the component's own directory (for a GGUF model, the converted one in the cache).
        return load_policy(model_component.base_path, adapter_path=directory, **options)
    return load_policy(directory, **options)


def same_run(saved_yaml: str, new_yaml: str) -> bool:
    """Whether two resolved configs describe the same run (`resume` itself may differ)."""
    saved, new = OmegaConf.create(saved_yaml), OmegaConf.create(new_yaml)
    for c in (saved, new):
        c.pop("resume", None)
    return saved == new


def search_metrics(trees: list[Tree], seconds: float) -> dict[str, float]:
    terminals = [n for tree in trees for n in tree.terminals()]
    correct = [n for n in terminals if n.verdict and n.verdict.correct]
    solved = [tree for tree in trees if any(n.verdict and n.verdict.correct for n in tree.terminals())]
    chosen_right = [t for t in trees if t.chosen is not None and t.chosen.verdict and t.chosen.verdict.correct]
    return {
        "search/seconds": seconds,
        "search/solutions": float(len(terminals)),
        "search/solution_accuracy": len(correct) / max(1, len(terminals)),
        "search/coverage": len(solved) / max(1, len(trees)),
        "search/answer_accuracy": len(chosen_right) / max(1, len(trees)),
        "search/generated_tokens": float(sum(t.cost.generated_tokens for t in trees)),
        "search/prompt_tokens": float(sum(t.cost.prompt_tokens for t in trees)),
        "search/engine_calls": float(sum(t.cost.engine_calls for t in trees)),
    }


def run(cfg: DictConfig, run_dir: Path) -> list[dict[str, Any]]:
    """Run (or resume) the loop in `run_dir`; returns one metrics row per finished iteration (0 = base)."""
    loop_cfg, typed, trainer_cfg = validate_config(cfg)
    run_dir = Path(loop_cfg.resume) if loop_cfg.resume else Path(run_dir)
    if loop_cfg.resume and not run_dir.is_dir():
        raise FileNotFoundError(f"resume: run directory not found: {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / "run_config.yaml"
    resolved = OmegaConf.to_yaml(cfg, resolve=True)
    if saved.is_file() and (run_dir / ITERATIONS_DIR).exists() and not same_run(saved.read_text(), resolved):
        warnings.warn(f"resuming {run_dir} with a config that differs from the one it started with")
    atomic_write(saved, resolved)
    trainer_cfg.progress_bar = trainer_cfg.progress_bar and loop_cfg.progress

    task = registry.build("task", typed["task"])
    if not task.problems("train"):
        raise ValueError("the task's train split is empty; nothing to search")
    if not task.problems("test"):
        raise ValueError("the task's test split is empty; nothing to evaluate")
    model_component = registry.build("model", typed["model"])
    searcher = registry.build("searcher", typed["searcher"])
    builder = registry.build("builder", typed["builder"])
    # On-policy objectives (score) sample and check answers while training; they declare `needs_task`.
    needs_task = getattr(registry.lookup("optimizer", typed["optimizer"].name).cls, "needs_task", False)
    optimizer = registry.build("optimizer", typed["optimizer"], **({"task": task} if needs_task else {}))

    rows = finished_iterations(run_dir)
    if rows:
        last = len(rows) - 1
        log.info("resuming %s after iteration %d", run_dir, last)
        checkpoint = iteration_dir(run_dir, last) / "policy"
        if last > 0 and not checkpoint.is_dir():
            # Continuing from the base model would silently mix two different runs.
            raise FileNotFoundError(
                f"cannot resume {run_dir}: iteration {last} finished without a saved policy ({checkpoint} is "
                "missing; the run had save_checkpoints=false); start a fresh run directory"
            )
        policy = load_checkpoint(model_component, checkpoint) if last > 0 else model_component.load()
    else:
        policy = model_component.load(progress_bar=loop_cfg.progress)
    engine = registry.build("engine", typed["engine"], policy=policy)
    rewarder = registry.build("rewarder", typed["rewarder"], task=task, engine=engine)
    ctx = SearchContext(task, engine, rewarder, loop_cfg.step_max_new_tokens, loop_cfg.progress)
    logger = RunLogger(cfg.get("logger"), run_dir, OmegaConf.to_container(cfg, resolve=True))
    for row in rows:
        logger.log(row)
    if rows:  # a kill between an iteration's metrics.json and this file's rewrite left it one row short
        write_jsonl(run_dir / "metrics.jsonl", [json.dumps(r, sort_keys=True) for r in rows])

    def finish_iteration(t: int, row: dict[str, Any]) -> None:
        atomic_write(iteration_dir(run_dir, t) / DONE_FILE, json.dumps(row, sort_keys=True))
        rows.append(row)
        write_jsonl(run_dir / "metrics.jsonl", [json.dumps(r, sort_keys=True) for r in rows])
        logger.log(row)

    if not rows:
        engine.reseed(phase_seed(loop_cfg.seed, 0, 3))
        finish_iteration(0, {"iteration": 0, **evaluate(task, engine, loop_cfg.eval)})

    train_pool = task.problems("train")
    by_id = {p.id: p for p in train_pool}
    for t in range(len(rows), loop_cfg.iterations + 1):
        start = time.time()
        directory = iteration_dir(run_dir, t)
        if directory.exists():  # an unfinished attempt: start it over
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        seed_all(phase_seed(loop_cfg.seed, t, 0))
        rng = random.Random(phase_seed(loop_cfg.seed, t, 0))
        problems = rng.sample(train_pool, min(loop_cfg.problems_per_iteration, len(train_pool)))

        engine.reseed(phase_seed(loop_cfg.seed, t, 1))
        search_start = time.time()
        # Under a budget one bar counts tokens, so the chunks' own bars stay off.
        chunk_ctx = replace(ctx, progress=ctx.progress and loop_cfg.search_token_budget is None)
        trees = search_with_budget(
            lambda chunk: run_search(searcher, chunk, chunk_ctx), problems, loop_cfg.search_token_budget,
            loop_cfg.search_chunk, progress=loop_cfg.progress,
        )
        row: dict[str, Any] = {"iteration": t, **search_metrics(trees, time.time() - search_start)}
        row["search/problems"] = float(len(trees))
        write_jsonl(directory / "trees.jsonl", [tree.to_json() for tree in trees])

        data_seed = phase_seed(loop_cfg.seed, t, 2)
        records = builder.build(trees, by_id, data_seed)
        tmp = directory / ".data.jsonl.tmp"
        write_records(tmp, records)
        os.replace(tmp, directory / "data.jsonl")
        row["data/records"] = float(len(records))
        if records:
            seed_all(data_seed)
            fit_start = time.time()
            try:
                row.update(optimizer.fit(policy, records, trainer_cfg, data_seed))
            except NonFiniteLossError as err:
                raise NonFiniteLossError(
                    f"iteration {t}: {err}; finished iterations stay in {run_dir}, and re-running there resumes"
                ) from None
            row["train/seconds"] = time.time() - fit_start
            row["train/skipped"] = 0.0
        else:
            warnings.warn(f"iteration {t}: the builder found no training records; skipping training")
            row["train/skipped"] = 1.0
        engine.sync(policy)
        if loop_cfg.save_checkpoints:
            policy.save(directory / "policy")

        engine.reseed(phase_seed(loop_cfg.seed, t, 3))
        row.update(evaluate(task, engine, loop_cfg.eval))
        row["iteration/seconds"] = time.time() - start
        finish_iteration(t, row)

    logger.finish()
    print_summary(rows)
    return rows
