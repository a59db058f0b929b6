"""Which W&B run a job is: its group, name and job type, from the config or else from Hydra.

A multirun's jobs share a group (the sweep's directory) and each is named after its own overrides, so an
ablation grid shows as one group of runs named `optimizer=sft,seed=1`, not as unrelated random names.
"""

from __future__ import annotations

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


def run_identity(cfg: LoggerConfig, hydra: Any = None) -> RunIdentity:
    """Explicit `logger.group/name/job_type` win; else the sweep directory, the job's overrides, the recipe."""
    group, name, recipe = None, None, None
    if hydra is not None:
        if str(hydra.mode) == "RunMode.MULTIRUN":
            group = str(hydra.sweep.dir)[-WANDB_GROUP_LIMIT:]
        name = hydra.job.override_dirname or None
        recipe = hydra.runtime.choices.get("experiment")
    return RunIdentity(cfg.group or group, cfg.name or name, cfg.job_type or recipe or "default")
