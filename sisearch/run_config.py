"""The run's own settings (`LoopConfig`) and the checks of a whole config before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from omegaconf import DictConfig

from sisearch import registry
from sisearch.distributed import World
from sisearch.evaluate import EvalConfig
from sisearch.objective import DEFAULT_OBJECTIVE
from sisearch.optim.common import TrainerConfig, make_callbacks, make_trainer
from sisearch.search.balance import BalanceConfig
from sisearch.tracking.config import BACKENDS, WANDB_MODES, LoggerConfig

# Top-level config entries besides LoopConfig's fields and the component groups (registry.KINDS).
OTHER_GROUPS = ("trainer", "logger")


@dataclass
class LoopConfig:
    """Top-level run settings (the keys of sisearch/conf/config.yaml outside the component groups)."""

    seed: int = 0
    iterations: int = 3
    problems_per_iteration: int = 1024  # at most this many problems an iteration
    # generated tokens one iteration's search may spend (None: search all problems_per_iteration problems);
    # problems are then searched in order, one and then at most `search_chunk` at a time, until it is spent
    search_token_budget: int | None = 60000
    search_chunk: int = 64
    step_max_new_tokens: int = 32  # token budget of one step when a searcher expands step by step
    progress: bool = True  # progress bars (one live display; see sisearch/progress.py)
    # torch's intra-op threads per process; None: OMP_NUM_THREADS if set, else this process's share of the
    # machine's cores (sisearch/threads.py)
    threads: int | None = None
    save_checkpoints: bool = True  # the policy after each iteration, in iterations/iter_NN/policy
    resume: str | None = None  # a run directory to continue after its last finished iteration
    plugins: list[str] = field(default_factory=list)  # importable modules that register extra components
    # the metric `sisearch` returns to a Hydra sweeper (Optuna, ...): its value in the last iteration's row
    objective: str = DEFAULT_OBJECTIVE
    eval: EvalConfig = field(default_factory=EvalConfig)
    balance: BalanceConfig = field(default_factory=BalanceConfig)  # B-STaR monitoring of each search (bstar/*)


def validate_config(cfg: DictConfig, world: World = World()) -> tuple[LoopConfig, dict[str, Any], TrainerConfig]:
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
    # A component may check what it needs beyond its config (an optional package such as vLLM) before any work.
    for kind, typed_cfg in typed.items():
        check_requirements = getattr(registry.lookup(kind, typed_cfg.name).cls, "check_requirements", None)
        if check_requirements is not None:
            check_requirements(typed_cfg)
    check_chat_template(typed["task"], typed["model"])
    trainer_cfg = registry.to_typed(TrainerConfig, cfg.get("trainer") or {}, "trainer config")
    check_trainer(trainer_cfg, world)
    check_builder_feeds_optimizer(typed["builder"].name, typed["optimizer"].name)
    if loop_cfg.iterations < 0 or loop_cfg.problems_per_iteration < 1:
        raise registry.ConfigError("iterations must be >= 0 and problems_per_iteration >= 1")
    if loop_cfg.threads is not None and loop_cfg.threads < 1:
        raise registry.ConfigError(f"threads must be null or at least 1, got {loop_cfg.threads}")
    if loop_cfg.search_chunk < 1 or (loop_cfg.search_token_budget is not None and loop_cfg.search_token_budget < 1):
        raise registry.ConfigError("search_chunk must be >= 1 and search_token_budget null or >= 1")
    return loop_cfg, typed, trainer_cfg


def check_chat_template(task_cfg: Any, model_cfg: Any) -> None:
    """A chat prompt needs a model with a chat template: asked of the model's files, before loading it."""
    prompt = getattr(task_cfg, "prompt", None)
    has_chat_template = getattr(registry.lookup("model", model_cfg.name).cls, "has_chat_template", None)
    if prompt is None or prompt.format != "chat" or has_chat_template is None:
        return
    if has_chat_template(model_cfg) is False:
        raise registry.ConfigError(
            f"task '{task_cfg.name}': prompt.format is 'chat' but model '{model_cfg.name}' has no chat template; "
            "use task.prompt.format=plain (or auto: chat only when the tokenizer has a template)"
        )


def check_builder_feeds_optimizer(builder: str, optimizer: str) -> None:
    produces = registry.lookup("builder", builder).cls.produces
    consumes = registry.lookup("optimizer", optimizer).cls.consumes
    if produces is not consumes:
        raise registry.ConfigError(
            f"builder '{builder}' produces {produces.__name__} records but optimizer '{optimizer}' trains on "
            f"{consumes.__name__}; builders that produce {consumes.__name__}: "
            f"{', '.join(compatible_builders(consumes))}"
        )


def check_trainer(trainer_cfg: TrainerConfig, world: World = World()) -> None:
    """Make the callbacks and a Trainer once, so that settings Lightning refuses (a device count this machine
    lacks, an unknown strategy, a callback that cannot be made) are named before any work, not after a search.

    The Trainer's processes must be the run's own: Lightning would otherwise start copies of the whole command
    at the first training (each searching from scratch), so a Trainer of several processes needs the run
    launched as that many processes (torchrun, SLURM tasks), and a launched run a Trainer over all of them."""
    try:
        make_callbacks(trainer_cfg.callbacks)
    except ValueError as err:
        raise registry.ConfigError(str(err)) from None
    try:
        trainer = make_trainer(replace(trainer_cfg, callbacks=[], progress_bar=False), max_steps=1)
    except Exception as err:  # Lightning raises ValueError, MisconfigurationException, RuntimeError, ...
        raise registry.ConfigError(f"trainer config: {str(err).splitlines()[0]}") from None
    if trainer.world_size != world.size:
        raise registry.ConfigError(
            f"trainer config: strategy '{trainer_cfg.strategy}' with devices={trainer_cfg.devices} and "
            f"num_nodes={trainer_cfg.num_nodes} trains in {trainer.world_size} processes, but the run was launched as "
            f"{world.size}; launch as many (torchrun --nproc-per-node N -m sisearch.cli ..., README \"Launching\") "
            "or set trainer.devices x trainer.num_nodes to the number launched"
        )


def check_logger(cfg: Any) -> None:
    """The logger starts after the config checks, so its settings are checked here, before any work."""
    backend = (cfg or {}).get("backend", "none")
    if backend not in BACKENDS:
        raise registry.ConfigError(f"unknown logger '{backend}'; allowed: {', '.join(BACKENDS)}")
    if backend == "wandb" and cfg.get("mode", "auto") not in WANDB_MODES:
        raise registry.ConfigError(f"logger 'wandb': unknown mode '{cfg.get('mode')}'; allowed: {', '.join(WANDB_MODES)}")
    registry.to_typed(LoggerConfig, cfg or {}, f"logger '{backend}'")


def compatible_builders(record_type: type) -> list[str]:
    return [n for n in registry.names("builder") if registry.lookup("builder", n).cls.produces is record_type]
