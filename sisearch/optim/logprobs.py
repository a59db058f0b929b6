"""Shared log-prob code: encode (prompt, completion) pairs and sum completion-token log-probs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

IGNORE = -100


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str) -> list[int]:
    # A chat template writes the BOS token into the text itself; adding another would double it.
    bos = tokenizer.bos_token
    return list(tokenizer(prompt, add_special_tokens=not (bos and prompt.startswith(bos))).input_ids)


def encode_completion(tokenizer: PreTrainedTokenizerBase, completion: str, append_eos: bool) -> list[int]:
    ids = list(tokenizer(completion, add_special_tokens=False).input_ids)
    return ids + [tokenizer.eos_token_id] if append_eos else ids


def encode_scored_pairs(
    tokenizer: PreTrainedTokenizerBase, contexts: list[str], continuations: list[str]
) -> list[tuple[list[int], list[int]]]:
    """(context ids, continuation ids) for an engine's `logprobs`, each pair tokenized as one text.

    Tokenizing a continuation on its own can split it differently from how it reads after its context (a BPE
    merge across the boundary; FLR scores each follow-up inside the conversation). The cut is where the
    context's own tokens stop matching the joint ones; a token that straddles the boundary goes to the
    continuation, which keeps at least one token unless it is empty.
    """
    if len(contexts) != len(continuations):
        raise ValueError(f"{len(contexts)} contexts but {len(continuations)} continuations")
    pairs = []
    for context, continuation in zip(contexts, continuations):
        alone = encode_prompt(tokenizer, context)
        if not continuation:
            pairs.append((alone, []))
            continue
        joint = encode_prompt(tokenizer, context + continuation)
        k = 0
        while k < min(len(alone), len(joint) - 1) and alone[k] == joint[k]:
            k += 1
        pairs.append((joint[:k], joint[k:]))
    return pairs


def prompt_tokens(tokenizer: PreTrainedTokenizerBase, text: str, ids: list[int] | None) -> list[int]:
    """A record's prompt ids: the ones the engine read when the record has them (token-exact), else the text's."""
    return list(ids) if ids is not None else encode_prompt(tokenizer, text)


def completion_tokens(
    tokenizer: PreTrainedTokenizerBase, text: str, ids: list[int] | None, append_eos: bool
) -> list[int]:
    """A record's completion ids: the sampled ones when it has them, else the text's; then EOS if it ends there."""
    if ids is None:
        return encode_completion(tokenizer, text, append_eos)
    return list(ids) + [tokenizer.eos_token_id] if append_eos else list(ids)


@dataclass
class CompletionBatch:
    """Right-padded token ids; `labels` hold the completion tokens and IGNORE elsewhere."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def to(self, device: torch.device) -> "CompletionBatch":
        return CompletionBatch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))


def collate_completions(
    pairs: list[tuple[list[int], list[int]]], pad_id: int, max_length: int | None = None
) -> CompletionBatch:
    """Batch (prompt_ids, completion_ids) pairs; a too-long prompt is cut from the left."""
    rows = []
    for prompt_ids, completion_ids in pairs:
        if max_length is not None and len(prompt_ids) + len(completion_ids) > max_length:
            keep = max(max_length - len(completion_ids), 1)
            prompt_ids = prompt_ids[-keep:]
            completion_ids = completion_ids[: max_length - len(prompt_ids)]
        rows.append((prompt_ids, completion_ids))
    width = max(len(p) + len(c) for p, c in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for i, (prompt_ids, completion_ids) in enumerate(rows):
        ids = prompt_ids + completion_ids
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention_mask[i, : len(ids)] = 1
        labels[i, len(prompt_ids) : len(ids)] = torch.tensor(completion_ids, dtype=torch.long)
    return CompletionBatch(input_ids, attention_mask, labels)


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token log-probs of `labels` under `logits`, shifted so position t scores token t+1.

    Returns [batch, seq-1]; positions whose label is IGNORE hold 0.
    """
    logits = logits[:, :-1].float()
    targets = labels[:, 1:]
    mask = targets != IGNORE
    safe = targets.masked_fill(~mask, 0)
    logps = torch.gather(F.log_softmax(logits, dim=-1), 2, safe.unsqueeze(-1)).squeeze(-1)
    return logps * mask


def completion_logps(model: torch.nn.Module, batch: CompletionBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed completion log-prob per row [batch], completion token count per row [batch])."""
    # use_cache=False: a scoring or training pass has no next step, so building a KV cache only costs time
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
    per_token = token_logps(logits, batch.labels)
    counts = (batch.labels[:, 1:] != IGNORE).sum(-1)
    return per_token.sum(-1), counts
