"""`dpo`: pairwise preference optimization (sigmoid, IPO, conservative) with an optional NLL term.

The NLL term on the chosen response (length-normalised, weight `nll_weight`) is the iterative reasoning
preference optimization recipe; without it, response-level DPO tends to lengthen outputs on our tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import torch

from sisearch.checks import require_choice
from sisearch.data.records import PreferencePair
from sisearch.models.policy import Policy
from sisearch.optim.base import ObjectiveModule, Optimizer, run_training, seeded_loader, steps_for
from sisearch.optim.common import OptimizationConfig, TrainerConfig, check_nll_weight
from sisearch.optim.losses import DPO_LOSS_TYPES, LossOutput, dpo_loss, length_normalised_nll
from sisearch.optim.pairs import PairBatch, collate_pairs, encode_pairs, fill_reference_logps, pair_logps
from sisearch.registry import register


@dataclass
class DPOConfig(OptimizationConfig):
    name: str = "dpo"
    beta: float = 0.1  # the scale of the implicit reward beta * (log pi - log ref)
    loss_type: str = "sigmoid"  # sigmoid | ipo | conservative (cDPO: labels flipped with probability eps)
    label_smoothing: float = 0.0  # conservative: eps, in [0, 0.5]
    use_visit_counts: bool = False  # conservative: MCTS-DPO's per-pair eps from the pairs' visit counts instead
    nll_weight: float = 0.0  # weight of the length-normalised NLL on the chosen response (Iterative RPO: 1)
    reference: str = "precomputed"  # precomputed (the policy entering the iteration) | adapters_disabled (LoRA)

    def __post_init__(self) -> None:
        require_choice("loss_type", self.loss_type, DPO_LOSS_TYPES)
        check_nll_weight(self.nll_weight)
        if self.use_visit_counts and self.loss_type != "conservative":
            raise ValueError("use_visit_counts needs loss_type 'conservative'")


PairLoss = Callable[[PairBatch, torch.Tensor, torch.Tensor], LossOutput]


class PairModule(ObjectiveModule):
    """Computes chosen and rejected log-probs in one pass and hands them to the objective's `pair_loss`."""

    def __init__(self, model, cfg, total_steps: int, pair_loss: PairLoss):
        super().__init__(model, cfg, total_steps)
        self.pair_loss = pair_loss

    def training_step(self, batch: PairBatch, batch_idx: int) -> torch.Tensor:
        chosen, rejected, chosen_len, _ = pair_logps(self.model, batch)
        out = self.pair_loss(batch, chosen, rejected)
        loss = out.loss
        metrics = dict(out.metrics)
        if self.cfg.nll_weight:
            nll = length_normalised_nll(chosen, chosen_len)
            loss = loss + self.cfg.nll_weight * nll
            metrics["nll_loss"] = float(nll.detach())
        return self.record(loss, metrics)


def fit_pairs(pair_loss: PairLoss, cfg, policy: Policy, pairs: Sequence[PreferencePair],
              trainer_cfg: TrainerConfig, seed: int) -> dict[str, float]:
    """Encode pairs, precompute reference log-probs, then train on `pair_loss` with the Trainer."""
    items = encode_pairs(policy, pairs)
    fill_reference_logps(policy, items, cfg.reference, cfg.batch_size, cfg.max_length)
    total = steps_for(len(items), cfg.batch_size, cfg.epochs, trainer_cfg.accumulate_grad_batches, cfg.max_steps)
    collate = partial(collate_pairs, pad_id=policy.tokenizer.pad_token_id, max_length=cfg.max_length)
    module = PairModule(policy.model, cfg, total, pair_loss)
    return run_training(module, seeded_loader(items, cfg.batch_size, collate, seed), trainer_cfg, total, policy.model)


@register("optimizer", "dpo", schema=DPOConfig)
class DPOOptimizer(Optimizer):
    consumes = PreferencePair

    def __init__(self, cfg: DPOConfig):
        self.cfg = cfg
        self.records: Sequence[PreferencePair] = ()

    def pair_loss(self, batch: PairBatch, chosen: torch.Tensor, rejected: torch.Tensor) -> LossOutput:
        visits = {}
        if self.cfg.use_visit_counts:
            picked = [self.records[i] for i in batch.indices.tolist()]
            visits = {
                "chosen_visits": [float(p.chosen_visits or 0) for p in picked],
                "rejected_visits": [float(p.rejected_visits or 0) for p in picked],
            }
        return dpo_loss(
            chosen, rejected, batch.ref_chosen.to(chosen), batch.ref_rejected.to(chosen),
            beta=self.cfg.beta, loss_type=self.cfg.loss_type, label_smoothing=self.cfg.label_smoothing, **visits,
        )

    def fit(self, policy: Policy, records: Sequence[PreferencePair], trainer_cfg: TrainerConfig, seed: int) -> dict[str, float]:
        self.records = records
        return fit_pairs(self.pair_loss, self.cfg, policy, records, trainer_cfg, seed)
