"""The optimizer contract and the LightningModule base that every objective builds on."""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections import defaultdict
from typing import Any, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from sisearch.models.policy import Policy
from sisearch.optim.common import TrainerConfig, adamw_with_schedule, make_trainer, steps_for
from sisearch.optim.session import run_step_sink
from sisearch.optim.sharded import FullWeights, shards_weights


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

    Every optimizer step's metrics go to the run's logger as `<log_prefix>/<name>`, with TRL's names:
    `loss`, the objective's own (`rewards/chosen`, `logps/chosen`, `nll_loss`, ...), `learning_rate` and
    `grad_norm` (the gradient's L2 norm before clipping, as the HF Trainer reports it).
    """

    log_prefix = "train"
    progress_label = "training"

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
            rate = float(self.trainer.optimizers[0].param_groups[0]["lr"])
            self.history["lr"].append(rate)
            self.log("learning_rate", rate)
        self.log("loss", value, prog_bar=True)
        if metrics:
            self.log_dict({key: float(metric) for key, metric in metrics.items()})
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """The gradient norm of the step about to be taken (unscaled, before clipping)."""
        grads = [p.grad.detach() for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])))
            self.history["grad_norm"].append(norm)
            self.log("grad_norm", norm)

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
    sink = run_step_sink()
    logger = sink.trainer_logger(module.log_prefix) if sink is not None else None
    sharded = shards_weights(trainer_cfg.strategy)
    if sharded:  # the strategy re-wraps the module it trains: train a copy, gather its weights into the policy's
        module.model = copy.deepcopy(model)
    trainer = make_trainer(trainer_cfg, max_steps, callbacks=[FullWeights(model)] if sharded else None, logger=logger,
                           description=module.progress_label)
    loader = rank_loader(loader, trainer.world_size, trainer.global_rank)
    module.model.train()
    device = next(model.parameters()).device
    try:
        trainer.fit(module, loader)
    except NonFiniteLossError:
        model.load_state_dict(backup, strict=False)
        raise
    finally:
        # Lightning's teardown moves the module to the CPU; the policy searches on the device it came on.
        model.to(device)
        model.eval()
        if logger is not None:
            logger.close(trainer.global_step)
    return module.summary()


def rank_loader(loader: DataLoader, world_size: int, rank: int) -> DataLoader:
    """This rank's share of `loader` under a distributed strategy: the loader's batch size stays the global one
    (so results do not depend on the number of processes), each rank reading batch_size / world_size records of
    each batch through a DistributedSampler seeded as the loader was."""
    if world_size == 1:
        return loader
    if loader.batch_size % world_size:
        raise ValueError(
            f"the training batch size {loader.batch_size} must be a multiple of the {world_size} training processes "
            "(each takes an equal share of every batch); set the optimizer's batch_size"
        )
    shuffle = isinstance(loader.sampler, RandomSampler)
    seed = loader.generator.initial_seed() if loader.generator is not None else 0
    sampler = DistributedSampler(loader.dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)
    return DataLoader(loader.dataset, batch_size=loader.batch_size // world_size, sampler=sampler,
                      collate_fn=loader.collate_fn)


def seeded_loader(dataset: list[Any], batch_size: int, collate, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=collate, generator=generator)


__all__ = ["Optimizer", "ObjectiveModule", "NonFiniteLossError", "run_training", "seeded_loader", "steps_for"]
