"""`step_apo`: CPL's Step-APO, DPO with the pair's Q (advantage) gap as a margin inside the sigmoid.

`L = -log sigma(beta*h - alpha*(Q_w - Q_l))`; the Q values come from the pairs' `chosen_value` and
`rejected_value` (the `advantage_pairs` builder fills them). alpha = 0 is plain sigmoid DPO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from sisearch.data.records import PreferencePair
from sisearch.models.policy import Policy
from sisearch.optim.base import Optimizer
from sisearch.optim.common import OptimizationConfig, TrainerConfig, check_nll_weight
from sisearch.optim.dpo import fit_pairs
from sisearch.optim.losses import LossOutput, step_apo_loss
from sisearch.optim.pairs import PairBatch
from sisearch.registry import register


@dataclass
class StepAPOConfig(OptimizationConfig):
    name: str = "step_apo"
    beta: float = 0.3  # the scale of the implicit reward, as in dpo (CPL: 0.3)
    alpha: float = 1.0  # weight of the Q gap Q_w - Q_l as a margin (CPL: 1; 0 is sigmoid DPO)
    nll_weight: float = 0.0  # weight of the length-normalised NLL on the chosen step (as dpo's)
    reference: str = "precomputed"  # precomputed (the policy entering the iteration) | adapters_disabled (LoRA)

    def __post_init__(self) -> None:
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        check_nll_weight(self.nll_weight)


@register("optimizer", "step_apo", schema=StepAPOConfig)
class StepAPOOptimizer(Optimizer):
    consumes = PreferencePair

    def __init__(self, cfg: StepAPOConfig):
        self.cfg = cfg
        self.records: Sequence[PreferencePair] = ()

    def pair_loss(self, batch: PairBatch, chosen: torch.Tensor, rejected: torch.Tensor,
                  chosen_len: torch.Tensor, rejected_len: torch.Tensor) -> LossOutput:
        picked = [self.records[i] for i in batch.indices.tolist()]
        return step_apo_loss(
            chosen, rejected, batch.ref_chosen.to(chosen), batch.ref_rejected.to(chosen),
            chosen_q=[p.chosen_value for p in picked], rejected_q=[p.rejected_value for p in picked],
            beta=self.cfg.beta, alpha=self.cfg.alpha,
        )

    def fit(self, policy: Policy, records: Sequence[PreferencePair], trainer_cfg: TrainerConfig, seed: int) -> dict[str, float]:
        missing = [i for i, r in enumerate(records) if r.chosen_value is None or r.rejected_value is None]
        if missing:
            raise ValueError(
                f"optimizer 'step_apo' needs Q values on every pair (chosen_value, rejected_value); {len(missing)} "
                f"pairs lack them (first: #{missing[0]}); build pairs with builder=advantage_pairs or step_pairs"
            )
        self.records = records
        return fit_pairs(self.pair_loss, self.cfg, policy, records, trainer_cfg, seed)
