"""Shared machinery for pairwise objectives: encoding pairs, reference log-probs, batched log-probs."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Sequence

import torch

from sisearch.data.records import PreferencePair
from sisearch.distributed import spread_work
from sisearch.models.policy import Policy
from sisearch.optim.logprobs import (
    CompletionBatch,
    collate_completions,
    completion_logps,
    completion_tokens,
    prompt_tokens,
)

# Reference log-probs are always computed once, before training: from the policy as it enters the
# iteration ("precomputed"), or from its base weights with the LoRA adapters switched off.
REFERENCES = ("precomputed", "adapters_disabled")


@dataclass
class EncodedPair:
    index: int
    chosen: tuple[list[int], list[int]]
    rejected: tuple[list[int], list[int]]
    ref_chosen: float = 0.0
    ref_rejected: float = 0.0


@dataclass
class PairBatch:
    """Chosen rows first, then rejected rows, in one padded batch (one forward pass for both)."""

    sequences: CompletionBatch
    indices: torch.Tensor
    ref_chosen: torch.Tensor
    ref_rejected: torch.Tensor

    @property
    def size(self) -> int:
        return len(self.indices)


def encode_pairs(policy: Policy, pairs: Sequence[PreferencePair]) -> list[EncodedPair]:
    tokenizer = policy.tokenizer
    encoded = []
    for i, pair in enumerate(pairs):
        prompt = prompt_tokens(tokenizer, pair.prompt, pair.prompt_ids)
        chosen = completion_tokens(tokenizer, pair.chosen, pair.chosen_ids, append_eos=pair.chosen_complete)
        rejected = completion_tokens(tokenizer, pair.rejected, pair.rejected_ids, append_eos=pair.rejected_complete)
        encoded.append(EncodedPair(i, (prompt, chosen), (prompt, rejected)))
    return encoded


def collate_pairs(items: list[EncodedPair], pad_id: int, max_length: int | None) -> PairBatch:
    rows = [item.chosen for item in items] + [item.rejected for item in items]
    return PairBatch(
        sequences=collate_completions(rows, pad_id, max_length),
        indices=torch.tensor([item.index for item in items]),
        ref_chosen=torch.tensor([item.ref_chosen for item in items]),
        ref_rejected=torch.tensor([item.ref_rejected for item in items]),
    )


def pair_logps(model: torch.nn.Module, batch: PairBatch) -> tuple[torch.Tensor, ...]:
    """(chosen logps, rejected logps, chosen token counts, rejected token counts) for a pair batch."""
    logps, counts = completion_logps(model, batch.sequences)
    n = batch.size
    return logps[:n], logps[n:], counts[:n], counts[n:]


def reference_context(policy: Policy, reference: str):
    """A context in which `policy.model` computes reference log-probs (adapters off under LoRA)."""
    if reference == "adapters_disabled":
        if not policy.is_peft:
            raise ValueError("reference 'adapters_disabled' needs a LoRA policy (set model.lora)")
        return policy.model.disable_adapter()
    return nullcontext()


@torch.no_grad()
def fill_reference_logps(
    policy: Policy, items: list[EncodedPair], reference: str, batch_size: int, max_length: int | None
) -> None:
    """Compute each pair's reference log-probs once, before training, with the policy as it is now (under
    data-parallel training each rank computes a share and every rank receives all of them)."""
    if reference not in REFERENCES:
        raise ValueError(f"unknown reference '{reference}'; allowed: {', '.join(REFERENCES)}")
    model = policy.model
    model.eval()

    def compute(indices: list[int]) -> list[tuple[float, float]]:
        values: list[tuple[float, float]] = []
        for start in range(0, len(indices), batch_size):
            chunk = [items[i] for i in indices[start : start + batch_size]]
            batch = collate_pairs(chunk, policy.tokenizer.pad_token_id, max_length)
            batch.sequences = batch.sequences.to(policy.device)
            chosen, rejected, _, _ = pair_logps(model, batch)
            values += zip(chosen.tolist(), rejected.tolist())
        return values

    with reference_context(policy, reference):
        values = spread_work(len(items), compute)
    for item, (c, r) in zip(items, values):
        item.ref_chosen, item.ref_rejected = c, r
