"""`sft`: rejection-sampling fine-tuning on verified-correct samples (the STaR / RFT baseline)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Sequence

import torch

from sisearch.data.records import SFTExample
from sisearch.models.policy import Policy
from sisearch.optim.base import ObjectiveModule, Optimizer, run_training, seeded_loader, steps_for
from sisearch.optim.common import OptimizationConfig, TrainerConfig
from sisearch.optim.logprobs import (
    IGNORE,
    CompletionBatch,
    collate_completions,
    completion_tokens,
    prompt_tokens,
)
from sisearch.registry import register


@dataclass
class SFTConfig(OptimizationConfig):
    name: str = "sft"
    lr: float = 1e-3
    batch_size: int = 32


class SFTModule(ObjectiveModule):
    """Mean token-level cross-entropy on completion tokens only, over the global batch.

    Under a distributed strategy each rank holds a share of the batch with its own number of tokens, and the
    strategy averages the ranks' gradients; dividing each rank's sum by the global count over the number of
    ranks makes that average the global batch's token mean, as in one process.
    """

    def training_step(self, batch: CompletionBatch, batch_idx: int) -> torch.Tensor:
        logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        labels = batch.labels[:, 1:].flatten()
        total = torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), labels, ignore_index=IGNORE, reduction="sum"
        )
        tokens = (labels != IGNORE).sum().float()
        if self._trainer is not None and self.trainer.world_size > 1:
            tokens = self.trainer.strategy.reduce(tokens, reduce_op="sum") / self.trainer.world_size
        return self.record(total / tokens.clamp(min=1), {})


def fit_sft(
    policy: Policy, pairs: Sequence[tuple[str, str] | SFTExample], cfg: SFTConfig, trainer_cfg: TrainerConfig, seed: int
) -> dict[str, float]:
    """Fine-tune `policy` in place on (prompt, completion) texts or SFT records (their sampled ids when they
    have them); EOS is appended to each completion."""
    tokenizer = policy.tokenizer
    records = [SFTExample("", *p) if isinstance(p, tuple) else p for p in pairs]
    encoded = [
        (prompt_tokens(tokenizer, r.prompt, r.prompt_ids),
         completion_tokens(tokenizer, r.completion, r.completion_ids, append_eos=True))
        for r in records
    ]
    total = steps_for(len(encoded), cfg.batch_size, cfg.epochs, trainer_cfg.accumulate_grad_batches, cfg.max_steps)
    collate = partial(collate_completions, pad_id=tokenizer.pad_token_id, max_length=cfg.max_length)
    loader = seeded_loader(encoded, cfg.batch_size, collate, seed)
    module = SFTModule(policy.model, cfg, total)
    return run_training(module, loader, trainer_cfg, total, policy.model)


@register("optimizer", "sft", schema=SFTConfig)
class SFTOptimizer(Optimizer):
    consumes = SFTExample

    def __init__(self, cfg: SFTConfig):
        self.cfg = cfg

    def fit(self, policy: Policy, records: Sequence[SFTExample], trainer_cfg: TrainerConfig, seed: int) -> dict[str, float]:
        return fit_sft(policy, records, self.cfg, trainer_cfg, seed)
