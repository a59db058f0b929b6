"""`dpo`: pairwise preference optimization (sigmoid, IPO, conservative) with an optional NLL term.

The NLL term on the chosen response (length-normalised, weight `nll_weight`) is the iterative reasoning
preference optimization recipe; without it, response-level DPO tends to lengthen outputs on our tasks.
`nll_on` limits it: under cDPO a pair can be nearly neutral (eps near 0.5), and SFT on its "chosen" side
would teach a step the search did not trust. IPO works on length-averaged log-ratios (as the spec and TRL).
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
from sisearch.optim.losses import (
    DPO_LOSS_TYPES,
    LossOutput,
    confidence_weights,
    dpo_loss,
    mcts_adaptive_epsilon,
    weighted_nll,
)
from sisearch.optim.pairs import PairBatch, collate_pairs, encode_pairs, fill_reference_logps, pair_logps
from sisearch.registry import register


NLL_SCOPES = ("all", "correct", "confident")


@dataclass
class DPOConfig(OptimizationConfig):
    name: str = "dpo"
    beta: float = 0.1  # the scale of the implicit reward beta * (log pi - log ref)
    loss_type: str = "sigmoid"  # sigmoid | ipo | conservative (cDPO: labels flipped with probability eps)
    label_smoothing: float = 0.0  # conservative: eps, in [0, 0.5]
    use_visit_counts: bool = False  # conservative: MCTS-DPO's per-pair eps from the pairs' visit counts instead
    nll_weight: float = 0.0  # weight of the length-normalised NLL on the chosen response (Iterative RPO: 1)
    # which chosen sides get the NLL term: all | correct (those ending in a verified-correct solution) |
    # confident (each weighted by 1 - 2*eps, the cDPO pair's distance from neutral)
    nll_on: str = "all"
    reference: str = "precomputed"  # precomputed (the policy entering the iteration) | adapters_disabled (LoRA)

    def __post_init__(self) -> None:
        require_choice("loss_type", self.loss_type, DPO_LOSS_TYPES)
        check_nll_weight(self.nll_weight)
        if self.use_visit_counts and self.loss_type != "conservative":
            raise ValueError("use_visit_counts needs loss_type 'conservative'")
        require_choice("nll_on", self.nll_on, NLL_SCOPES)
        if self.nll_on == "confident" and self.loss_type != "conservative":
            raise ValueError("nll_on 'confident' needs loss_type 'conservative' (it weights by 1 - 2*eps)")


# (batch, chosen logps, rejected logps, chosen token counts, rejected token counts) -> loss
PairLoss = Callable[[PairBatch, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], LossOutput]
# the NLL term's weight for each pair of a batch ([B]); None: every pair weighs 1
NLLWeights = Callable[[PairBatch, torch.Tensor], torch.Tensor]


def all_pairs(batch: PairBatch, like: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(like)


class PairModule(ObjectiveModule):
    """Computes chosen and rejected log-probs in one pass and hands them to the objective's `pair_loss`."""

    def __init__(self, model, cfg, total_steps: int, pair_loss: PairLoss, nll_weights: NLLWeights = all_pairs):
        super().__init__(model, cfg, total_steps)
        self.pair_loss, self.nll_weights = pair_loss, nll_weights

    def training_step(self, batch: PairBatch, batch_idx: int) -> torch.Tensor:
        chosen, rejected, chosen_len, rejected_len = pair_logps(self.model, batch)
        out = self.pair_loss(batch, chosen, rejected, chosen_len, rejected_len)
        loss = out.loss
        metrics = dict(out.metrics)
        if self.cfg.nll_weight:
            nll = weighted_nll(chosen, chosen_len, self.nll_weights(batch, chosen).to(chosen))
            loss = loss + self.cfg.nll_weight * nll
            metrics["nll_loss"] = float(nll.detach())
        return self.record(loss, metrics)


def fit_pairs(pair_loss: PairLoss, cfg, policy: Policy, pairs: Sequence[PreferencePair],
              trainer_cfg: TrainerConfig, seed: int, nll_weights: NLLWeights = all_pairs) -> dict[str, float]:
    """Encode pairs, precompute reference log-probs, then train on `pair_loss` with the Trainer."""
    items = encode_pairs(policy, pairs)
    fill_reference_logps(policy, items, cfg.reference, cfg.batch_size, cfg.max_length)
    total = steps_for(len(items), cfg.batch_size, cfg.epochs, trainer_cfg.accumulate_grad_batches, cfg.max_steps)
    collate = partial(collate_pairs, pad_id=policy.tokenizer.pad_token_id, max_length=cfg.max_length)
    module = PairModule(policy.model, cfg, total, pair_loss, nll_weights)
    return run_training(module, seeded_loader(items, cfg.batch_size, collate, seed), trainer_cfg, total, policy.model)


@register("optimizer", "dpo", schema=DPOConfig)
class DPOOptimizer(Optimizer):
    consumes = PreferencePair

    def __init__(self, cfg: DPOConfig):
        self.cfg = cfg
        self.records: Sequence[PreferencePair] = ()

    def picked(self, batch: PairBatch) -> list[PreferencePair]:
        return [self.records[i] for i in batch.indices.tolist()]

    def visits(self, batch: PairBatch) -> dict[str, list[float]]:
        if not self.cfg.use_visit_counts:
            return {}
        picked = self.picked(batch)
        return {
            "chosen_visits": [float(p.chosen_visits or 0) for p in picked],
            "rejected_visits": [float(p.rejected_visits or 0) for p in picked],
        }

    def pair_loss(self, batch: PairBatch, chosen: torch.Tensor, rejected: torch.Tensor,
                  chosen_len: torch.Tensor, rejected_len: torch.Tensor) -> LossOutput:
        ref_chosen, ref_rejected = batch.ref_chosen.to(chosen), batch.ref_rejected.to(chosen)
        if self.cfg.loss_type == "ipo":
            # IPO's target 1/(2 beta) is set for per-token log-ratios; summed ones would grow with length
            chosen, ref_chosen = length_averaged(chosen, chosen_len), length_averaged(ref_chosen, chosen_len)
            rejected, ref_rejected = length_averaged(rejected, rejected_len), length_averaged(ref_rejected, rejected_len)
        return dpo_loss(
            chosen, rejected, ref_chosen, ref_rejected,
            beta=self.cfg.beta, loss_type=self.cfg.loss_type, label_smoothing=self.cfg.label_smoothing,
            **self.visits(batch),
        )

    def nll_weights(self, batch: PairBatch, like: torch.Tensor) -> torch.Tensor:
        """Per pair: 1 (all), whether the chosen side ends in a verified-correct solution (correct), or
        1 - 2*eps with the pair's cDPO label noise (confident)."""
        if self.cfg.nll_on == "correct":
            return torch.tensor([float(bool(p.chosen_correct)) for p in self.picked(batch)], dtype=like.dtype)
        if self.cfg.nll_on == "confident":
            visits = self.visits(batch)
            if visits:
                eps = mcts_adaptive_epsilon(visits["chosen_visits"], visits["rejected_visits"], like=like.detach())
            else:
                eps = torch.full_like(like.detach(), self.cfg.label_smoothing)
            return confidence_weights(eps)
        return all_pairs(batch, like)

    def fit(self, policy: Policy, records: Sequence[PreferencePair], trainer_cfg: TrainerConfig, seed: int) -> dict[str, float]:
        self.records = records
        return fit_pairs(self.pair_loss, self.cfg, policy, records, trainer_cfg, seed, self.nll_weights)


def length_averaged(logps: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Summed log-probs divided by their token counts (0 tokens count as 1)."""
    return logps / counts.to(logps).clamp(min=1)
