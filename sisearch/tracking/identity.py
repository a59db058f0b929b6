"""Which W&B run a job is: its group, name and job type, from the config or else from Hydra.

A multirun's jobs share a group (the sweep's directory) and each is named after the overrides that its sweep
varies (`optimizer=sft,seed=1`), so an ablation grid shows as one group of runs named by their cells, not as
unrelated random names. A single run keeps W&B's own name unless `logger.name` gives one.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from sisearch.tracking.config import LoggerConfig

WANDB_GROUP_LIMIT = 128  # W&B refuses longer group names


@dataclass
class RunIdentity:
    group: str | None
    name: str | None
    job_type: str


def hydra_job() -> Any:
    """The running Hydra job's config (`hydra.*`), or None outside a Hydra app (tests calling `run` directly)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def swept_keys(argv: list[str]) -> set[str]:
    """The keys a command line sweeps (`seed=0,1`, `optimizer=glob(*)`, ...), by Hydra's own override parser."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    candidates = [a for a in argv if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(candidates)
    except Exception:  # an argument Hydra would refuse has already stopped the run; name nothing after it
        return set()
    return {o.key_or_group for o in overrides if o.is_sweep_override()}


def job_name(hydra: Any, argv: list[str]) -> str | None:
    """`key=value` of this job for each key its sweep varies, in the job's own order."""
    keys = swept_keys(argv)
    picked = [o for o in hydra.overrides.task if override_key(o) in keys]
    return ",".join(picked) or hydra.job.override_dirname or None


def run_identity(cfg: LoggerConfig, hydra: Any = None, argv: list[str] | None = None) -> RunIdentity:
    """Explicit `logger.group/name/job_type` win; else the sweep directory, the swept overrides, the recipe."""
    group, name, recipe = None, None, None
    if hydra is not None:
        if str(hydra.mode) == "RunMode.MULTIRUN":
            group = str(hydra.sweep.dir)[-WANDB_GROUP_LIMIT:]
            name = job_name(hydra, sys.argv[1:] if argv is None else argv)
        recipe = hydra.runtime.choices.get("experiment")
    return RunIdentity(cfg.group or group, cfg.name or name, cfg.job_type or recipe or "default")
