"""The optimizer contract and the LightningModule base that every objective builds on."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import defaultdict
from typing import Any, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader

from sisearch.models.policy import Policy
from sisearch.optim.common import TrainerConfig, adamw_with_schedule, make_trainer, steps_for


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class Optimizer(ABC):
    """Trains the policy in place on one iteration's records and returns averaged training metrics."""

    #: the record type this optimizer trains on (a builder must produce it)
    consumes: type
    #: whether the loop builds it with the task (`task=...`): on-policy objectives check answers while training
    needs_task: bool = False

    @abstractmethod
    def fit(self, policy: Policy, records: Sequence[Any], trainer_cfg: TrainerConfig, seed: int) -> dict[str, float]:
        ...


class ObjectiveModule(L.LightningModule):
    """Holds the policy's model, the objective's config, its number of optimizer steps and the metrics per step.

    `configure_optimizers` reads `cfg.lr`, `cfg.weight_decay`, `cfg.schedule` and `cfg.warmup_ratio` (an
    OptimizationConfig has them); a module whose config lacks them sets up its own optimizer.
    """

    def __init__(self, model: torch.nn.Module, cfg: Any, total_steps: int):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.total_steps = total_steps
        self.history: dict[str, list[float]] = defaultdict(list)

    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.cfg
        return adamw_with_schedule(
            self.model.parameters(), cfg.lr, cfg.weight_decay, cfg.schedule, cfg.warmup_ratio, self.total_steps
        )

    def record(self, loss: torch.Tensor, metrics: dict[str, float]) -> torch.Tensor:
        """Stop on a non-finite loss (before it reaches the weights), else keep the step's metrics."""
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"training loss became {value} at step {self.global_step}; training stopped and the weights were "
                "restored to the last good ones, from before this training run (lower the learning rate, or check "
                "the data and the precision)"
            )
        self.history["loss"].append(value)
        for key, metric in metrics.items():
            self.history[key].append(float(metric))
        if self._trainer is not None and self.trainer.optimizers:  # the schedule's rate for this micro-batch
            self.history["lr"].append(float(self.trainer.optimizers[0].param_groups[0]["lr"]))
        self.log("loss", value, prog_bar=True)
        return loss

    def summary(self) -> dict[str, float]:
        """Mean of each metric over training, plus the last loss."""
        summary = {f"train/{k}": sum(v) / len(v) for k, v in self.history.items() if v}
        if self.history.get("loss"):
            summary["train/loss_last"] = self.history["loss"][-1]
            # optimizer steps; with gradient accumulation each takes several micro-batches (training steps)
            steps = self.trainer.global_step if self._trainer is not None else 0
            summary["train/steps"] = float(steps or len(self.history["loss"]))
            summary["train/micro_batches"] = float(len(self.history["loss"]))
        return summary


def run_training(module: ObjectiveModule, loader: DataLoader, trainer_cfg: TrainerConfig, max_steps: int,
                 model: torch.nn.Module) -> dict[str, float]:
    """Fit with a Lightning Trainer; restores the pre-training weights if the loss turns non-finite."""
    # Only trainable tensors can change; under LoRA that is the adapters alone, which keeps the backup small.
    backup = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    model.train()
    try:
        make_trainer(trainer_cfg, max_steps).fit(module, loader)
    except NonFiniteLossError:
        model.load_state_dict(backup, strict=False)
        raise
    finally:
        model.eval()
    return module.summary()


def seeded_loader(dataset: list[Any], batch_size: int, collate, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=collate, generator=generator)


__all__ = ["Optimizer", "ObjectiveModule", "NonFiniteLossError", "run_training", "seeded_loader", "steps_for"]
