"""What every optimizer shares: training hyperparameters, the AdamW + schedule set-up, the Trainer."""

from __future__ import annotations

import logging
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch

SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class OptimizationConfig:
    """Hyperparameters every optimizer's config shares (each optimizer's schema extends this).

    A schema checks its own values in `__post_init__`; a message there names the field, not the component
    (`registry.to_typed` puts `optimizer 'name': ` in front).
    """

    name: str = ""
    # 1e-4: at 5e-4 the preference objectives wreck the tiny model within one iteration (README, "Results")
    lr: float = 1e-4
    weight_decay: float = 0.0  # AdamW's
    batch_size: int = 16  # records per micro-batch (pairs, lists or problems, as the objective trains on)
    epochs: float = 2.0  # passes over the iteration's records (fractions allowed; at least one optimizer step)
    max_steps: int | None = None  # a cap on optimizer steps; null: the epochs decide
    schedule: str = "constant"  # constant | linear | cosine (the last two decay to 0 at the last step)
    warmup_ratio: float = 0.0  # the share of optimizer steps spent in linear warmup
    max_length: int | None = 1024  # tokens per row: the prompt is cut from the left first, then the completion


@dataclass
class TrainerConfig:
    """Lightning Trainer settings shared by every Trainer of a run (`sisearch/conf/trainer/`): the optimizers', the
    reward heads' and the tiny model's own training."""

    accelerator: str = "auto"
    strategy: str = "auto"  # Lightning's: auto | ddp | fsdp | deepspeed | ...
    devices: Any = 1  # a count, a list of device indices, or "auto" (per node)
    num_nodes: int = 1  # machines; under torchrun or SLURM, devices x num_nodes must be the number of processes
    precision: str = "32-true"
    gradient_clip_val: float | None = 1.0
    accumulate_grad_batches: int = 1
    max_time: str | None = None  # a cap on each training run's wall time, "DD:HH:MM:SS"; null: none
    deterministic: Any = None  # true | false | "warn" | null (Lightning's default)
    # Lightning callbacks, each a dict with a Hydra `_target_` (e.g. LearningRateMonitor), made afresh per Trainer
    callbacks: list[Any] = field(default_factory=list)
    progress_bar: bool = True

    def __post_init__(self) -> None:
        devices = self.devices
        if not (devices == "auto" or (isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1)
                or (isinstance(devices, list) and devices and all(isinstance(d, int) for d in devices))):
            raise ValueError(f"devices must be a count >= 1, a list of device indices or 'auto', got {devices!r}")
        if not isinstance(self.num_nodes, int) or isinstance(self.num_nodes, bool) or self.num_nodes < 1:
            raise ValueError(f"num_nodes must be a count >= 1, got {self.num_nodes!r}")
        if self.deterministic not in (None, True, False, "warn"):
            raise ValueError(f"deterministic must be true, false, 'warn' or null, got {self.deterministic!r}")
        if self.max_time is not None and not re.fullmatch(r"\d+:\d{2}:\d{2}:\d{2}", str(self.max_time)):
            raise ValueError(f"max_time must be 'DD:HH:MM:SS' (e.g. 00:01:30:00), got {self.max_time!r}")
        for i, callback in enumerate(self.callbacks):
            if not isinstance(callback, dict) or "_target_" not in callback:
                raise ValueError(f"callbacks[{i}] must be a mapping with a '_target_' (a Lightning callback class)")


def make_callbacks(specs: list[dict[str, Any]]) -> list[Any]:
    """The configured callbacks, instantiated with Hydra; a bad one is named in one line."""
    from hydra.utils import instantiate

    callbacks = []
    for spec in specs:
        try:
            callbacks.append(instantiate(spec))
        except Exception as err:  # Hydra wraps import and argument errors alike
            raise ValueError(f"trainer.callbacks: cannot make {spec['_target_']}: {str(err).splitlines()[0]}") from None
    return callbacks


def make_trainer(trainer_cfg: TrainerConfig, max_steps: int, callbacks: list[Any] | None = None, logger: Any = None,
                 description: str = "training") -> L.Trainer:
    """A Trainer of `max_steps` optimizer steps; `logger` (a Lightning logger) receives every step's metrics."""
    # Lightning's tips about workers and tensor cores are noise for our in-memory datasets.
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*number of training batches.*")
    warnings.filterwarnings("ignore", ".*Skipping val loop.*")
    callbacks = [*(callbacks or []), *make_callbacks(trainer_cfg.callbacks)]
    if trainer_cfg.progress_bar:
        from sisearch.optim.progress_bar import TrainingProgressBar

        callbacks.append(TrainingProgressBar(description))
    return L.Trainer(
        accelerator=trainer_cfg.accelerator,
        strategy=trainer_cfg.strategy,
        devices=trainer_cfg.devices,
        num_nodes=trainer_cfg.num_nodes,
        precision=trainer_cfg.precision,
        gradient_clip_val=trainer_cfg.gradient_clip_val,
        accumulate_grad_batches=trainer_cfg.accumulate_grad_batches,
        max_steps=max_steps,
        max_epochs=-1,
        max_time=trainer_cfg.max_time,
        deterministic=trainer_cfg.deterministic,
        logger=logger if logger is not None else False,
        log_every_n_steps=1,  # every optimizer step is a row of the run's curves
        enable_checkpointing=False,
        enable_progress_bar=trainer_cfg.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )


def lr_lambda(schedule: str, warmup_steps: int, total_steps: int):
    """The factor on the base learning rate at each optimizer step (for torch's LambdaLR)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown lr schedule '{schedule}'; allowed: {', '.join(SCHEDULES)}")

    def factor(step: int) -> float:
        # 1) linear warmup: 1/warmup_steps, 2/warmup_steps, ..., 1
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        # 2) progress through the steps after warmup, 0 -> 1 at total_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        # 3) decay: linear or cosine to 0 at total_steps (and 0 after it), or none (constant)
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return 1.0

    return factor


def adamw_with_schedule(
    params, lr: float, weight_decay: float, schedule: str, warmup_ratio: float, total_steps: int
) -> dict[str, Any]:
    optimizer = torch.optim.AdamW([p for p in params if p.requires_grad], lr=lr, weight_decay=weight_decay)
    warmup = int(warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(schedule, warmup, total_steps))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def check_nll_weight(weight: float) -> None:
    """A schema's check of the NLL term's weight (dpo, step_apo, tpo)."""
    if weight < 0:
        raise ValueError(f"nll_weight must be >= 0, got {weight}")


def steps_for(num_examples: int, batch_size: int, epochs: float, accumulate: int, max_steps: int | None) -> int:
    """Optimizer steps for `epochs` passes (at least one), capped by `max_steps`."""
    batches = math.ceil(num_examples / batch_size)
    steps = max(1, math.ceil(batches * epochs / accumulate))
    return min(steps, max_steps) if max_steps else steps
