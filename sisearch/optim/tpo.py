"""`tpo`: listwise preference optimization over ranked lists (TPO), with adaptive step rewards.

Every response of a list is scored by the policy in one forward pass. With `adaptive_steps`, a response's
implicit reward is the weighted mean of its per-step mean log-ratios, each step weighted by how much its
(stop-gradient) policy hidden state differs from the top-ranked response's step at the same index, so the
steps where responses diverge dominate (`losses.tpo_step_weighted_scores`). Without it, the summed
log-ratio of the whole response is the reward, as in LiPO. The list loss is `losses.tpo_loss`.
Log-probs use the shared shifted gather (`logprobs.token_logps`), not the released code's unshifted one.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from functools import partial
from itertools import accumulate
from typing import Sequence

import torch

from sisearch.checks import require_choice
from sisearch.data.ranked_lists import RankedList
from sisearch.distributed import spread_work
from sisearch.models.policy import Policy
from sisearch.optim.base import ObjectiveModule, Optimizer, run_training, seeded_loader, steps_for
from sisearch.optim.common import OptimizationConfig, TrainerConfig, check_nll_weight
from sisearch.optim.logprobs import (
    IGNORE, collate_completions, encode_completion, prompt_tokens, token_logps,
)
from sisearch.optim.losses import TPO_WEIGHTINGS, length_normalised_nll, tpo_loss, tpo_step_weighted_scores
from sisearch.optim.pairs import REFERENCES, reference_context
from sisearch.registry import register


@dataclass
class TPOConfig(OptimizationConfig):
    name: str = "tpo"
    beta: float = 0.5
    weighting: str = "lambda"  # lambda (LiPO-lambda weights) | uniform (the released code's mean over pairs)
    adaptive_steps: bool = True  # step-weighted rewards from hidden-state similarity (TPO's adaptive step reward)
    step_weight_floor: float = 0.01  # weight of a step identical to the top response's
    nll_weight: float = 0.0  # length-normalised NLL on each list's top-ranked response (as `dpo`'s on chosen)
    reference: str = "precomputed"  # precomputed (the policy entering the iteration) | adapters_disabled (LoRA)
    batch_size: int = 4  # lists per batch (each list is several sequences)

    def __post_init__(self) -> None:
        require_choice("weighting", self.weighting, TPO_WEIGHTINGS)
        if self.beta <= 0 or self.step_weight_floor <= 0:
            raise ValueError("beta and step_weight_floor must be > 0")
        check_nll_weight(self.nll_weight)
        require_choice("reference", self.reference, REFERENCES)


@dataclass
class EncodedResponse:
    ids: list[int]
    steps: list[int]  # the step index of each token (EOS belongs to the last step)
    ref_step_logps: list[float] | None = None  # summed reference log-prob per step, filled before training


@dataclass
class EncodedList:
    prompt: list[int]
    responses: list[EncodedResponse]
    scores: list[float]


@dataclass
class ListBatch:
    """Every response of every list as one row; `owner`/`slot` place each row back into its list."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    step_index: torch.Tensor  # [rows, seq]: the step of each completion token, -1 elsewhere
    owner: list[int]
    slot: list[int]
    scores: list[list[float]]
    ref_step_logps: torch.Tensor  # [rows, steps]
    num_steps: int


def encode_response(tokenizer, steps: list[str], complete: bool, ids: list[int] | None = None) -> EncodedResponse:
    """A response's token ids and each token's step; with sampled `ids`, those ids, split at the steps."""
    index = step_of_each_token(tokenizer, ids, steps) if ids is not None else None
    if index is not None:
        ids = list(ids)
        if complete:
            ids.append(tokenizer.eos_token_id)
            index.append(index[-1] if index else 0)
        return EncodedResponse(ids, index)
    return encode_response_text(tokenizer, steps, complete)


def step_of_each_token(tokenizer, ids: list[int], steps: list[str]) -> list[int] | None:
    """For sampled ids, the (non-empty) step in which each token's text starts; None when the ids do not
    decode to the steps' text (then the text is tokenized instead)."""
    ends = list(accumulate(len(s) for s in steps if s))
    if tokenizer.decode(ids) != "".join(steps):
        return None

    def start(k: int) -> int:  # where token k's text starts: the length of the text before it
        return len(tokenizer.decode(ids[:k])) if k else 0

    # The first token starting at or after each step boundary, by bisection over the (non-decreasing) starts:
    # a few decodes per step, not one per token. A token that straddles a boundary stays in the earlier step.
    firsts = [bisect_left(range(len(ids)), end, key=start) for end in ends[:-1]]
    return [bisect_right(firsts, k) for k in range(len(ids))]


def encode_response_text(tokenizer, steps: list[str], complete: bool) -> EncodedResponse:
    ids: list[int] = []
    index: list[int] = []
    kept = 0
    for step in steps:
        step_ids = encode_completion(tokenizer, step, append_eos=False)
        if not step_ids:
            continue  # an empty step has no tokens to score
        ids += step_ids
        index += [kept] * len(step_ids)
        kept += 1
    if complete:
        ids.append(tokenizer.eos_token_id)
        index.append(max(kept - 1, 0))
    return EncodedResponse(ids, index)


def encode_lists(policy: Policy, lists: Sequence[RankedList]) -> list[EncodedList]:
    tokenizer = policy.tokenizer
    encoded = []
    for r in lists:
        response_ids = r.response_ids or [None] * len(r.responses)
        encoded.append(EncodedList(
            prompt_tokens(tokenizer, r.prompt, r.prompt_ids),
            [encode_response(tokenizer, steps, done, ids) for steps, done, ids in zip(r.responses, r.complete, response_ids)],
            list(r.scores),
        ))
    return encoded


def collate_lists(items: list[EncodedList], pad_id: int, max_length: int | None) -> ListBatch:
    rows, steps, owner, slot, scores = [], [], [], [], []
    for i, item in enumerate(items):
        scores.append(item.scores)
        for k, response in enumerate(item.responses):
            rows.append((item.prompt, response.ids))
            steps.append(response)
            owner.append(i)
            slot.append(k)
    seqs = collate_completions(rows, pad_id, max_length)
    step_index = torch.full(seqs.labels.shape, -1, dtype=torch.long)
    num_steps = 1
    for r, response in enumerate(steps):
        positions = (seqs.labels[r] != IGNORE).nonzero().squeeze(-1)
        kept = response.steps[: len(positions)]  # truncation keeps the first completion tokens
        step_index[r, positions] = torch.tensor(kept, dtype=torch.long)
        num_steps = max(num_steps, max(kept, default=0) + 1)
    ref = torch.zeros(len(rows), num_steps)
    for r, response in enumerate(steps):
        if response.ref_step_logps is not None:
            values = response.ref_step_logps[:num_steps]
            ref[r, : len(values)] = torch.tensor(values)
    return ListBatch(seqs.input_ids, seqs.attention_mask, seqs.labels, step_index, owner, slot, scores, ref, num_steps)


def step_sums(values: torch.Tensor, step_index: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Sum `values` [rows, seq, ...] over the positions of each step -> [rows, steps, ...]."""
    one_hot = (step_index[..., None] == torch.arange(num_steps, device=step_index.device)).to(values.dtype)
    if values.dim() == 2:
        return torch.einsum("rt,rts->rs", values, one_hot)
    return torch.einsum("rth,rts->rsh", values, one_hot)


def policy_step_stats(model: torch.nn.Module, batch: ListBatch, want_hidden: bool):
    """(summed log-prob per step [rows, S], token count per step [rows, S], mean hidden state per step or None)."""
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=want_hidden)
    per_token = token_logps(out.logits, batch.labels)  # position t scores token t+1
    target_steps = batch.step_index[:, 1:]
    logps = step_sums(per_token, target_steps, batch.num_steps)
    counts = step_sums(torch.ones_like(per_token), target_steps, batch.num_steps)
    hidden = None
    if want_hidden:
        # The step's own tokens as inputs; detached: similarity only reweights, it is not trained.
        last = out.hidden_states[-1].detach().float()
        hidden = step_sums(last, batch.step_index, batch.num_steps) / counts.clamp(min=1)[..., None]
    return logps, counts, hidden


def to_lists(values: torch.Tensor, batch: ListBatch, width: int, fill: float = 0.0) -> torch.Tensor:
    """Scatter per-row values [rows, ...] into [lists, width, ...]."""
    out = values.new_full((len(batch.scores), width, *values.shape[1:]), fill)
    out[torch.tensor(batch.owner), torch.tensor(batch.slot)] = values
    return out


class TPOModule(ObjectiveModule):
    cfg: TPOConfig

    def training_step(self, batch: ListBatch, batch_idx: int) -> torch.Tensor:
        # R rows (every response of every list) of S steps: logps and counts [R, S], hidden [R, S, H]
        logps, counts, hidden = policy_step_stats(self.model, batch, self.cfg.adaptive_steps)
        ref = batch.ref_step_logps.to(logps)  # [R, S]
        width = max(len(s) for s in batch.scores)  # K: B lists of up to K responses
        scores = torch.tensor([s + [0.0] * (width - len(s)) for s in batch.scores], device=logps.device)  # [B, K]
        valid = torch.tensor([[k < len(s) for k in range(width)] for s in batch.scores], device=logps.device)  # [B, K]
        policy_logps = to_lists(logps.sum(-1), batch, width)  # [B, K]
        if self.cfg.adaptive_steps:
            step_mask = to_lists(counts > 0, batch, width, fill=False)  # [B, K, S]
            rho = to_lists((logps - ref) / counts.clamp(min=1), batch, width)  # [B, K, S]: mean log-ratio per step
            step_hidden = to_lists(hidden, batch, width)  # [B, K, S, H]
            top = scores.masked_fill(~valid, float("-inf")).argmax(dim=1)  # [B]
            rewards = tpo_step_weighted_scores(rho, step_hidden, step_mask, top, self.cfg.step_weight_floor)  # [B, K]
            out = tpo_loss(policy_logps, None, scores, self.cfg.beta, self.cfg.weighting, mask=valid, logratios=rewards)
        else:
            ref_logps = to_lists(ref.sum(-1), batch, width)  # [B, K]
            out = tpo_loss(policy_logps, ref_logps, scores, self.cfg.beta, self.cfg.weighting, mask=valid)
        loss, metrics = out.loss, dict(out.metrics)
        if self.cfg.nll_weight:
            nll = top_response_nll(policy_logps, to_lists(counts.sum(-1), batch, width), scores, valid)
            loss = loss + self.cfg.nll_weight * nll
            metrics["nll_loss"] = float(nll.detach())
        return self.record(loss, metrics)


def top_response_nll(logps: torch.Tensor, counts: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over lists of the per-token NLL of each list's best-scored response ([lists, width] inputs)."""
    top = scores.masked_fill(~valid, float("-inf")).argmax(dim=1, keepdim=True)
    return length_normalised_nll(logps.gather(1, top).squeeze(1), counts.gather(1, top).squeeze(1))


@torch.no_grad()
def fill_reference_step_logps(policy: Policy, items: list[EncodedList], cfg: TPOConfig) -> None:
    """Reference log-probs per step, computed once before training with the policy as it enters the iteration
    (under data-parallel training each rank computes a share and every rank receives all of them)."""
    model = policy.model
    model.eval()

    def compute(indices: list[int]) -> list[list[list[float]]]:
        values: list[list[list[float]]] = []  # per list, per response, per step
        for start in range(0, len(indices), cfg.batch_size):
            chunk = [items[i] for i in indices[start : start + cfg.batch_size]]
            batch = move(collate_lists(chunk, policy.tokenizer.pad_token_id, cfg.max_length), policy.device)
            rows = iter(policy_step_stats(model, batch, want_hidden=False)[0].tolist())
            values += [[next(rows) for _ in item.responses] for item in chunk]
        return values

    with reference_context(policy, cfg.reference):
        values = spread_work(len(items), compute)
    for item, rows in zip(items, values):
        for response, row in zip(item.responses, rows):
            response.ref_step_logps = row


def move(batch: ListBatch, device: torch.device) -> ListBatch:
    batch.input_ids, batch.attention_mask = batch.input_ids.to(device), batch.attention_mask.to(device)
    batch.labels, batch.step_index = batch.labels.to(device), batch.step_index.to(device)
    batch.ref_step_logps = batch.ref_step_logps.to(device)
    return batch


@register("optimizer", "tpo", schema=TPOConfig)
class TPOOptimizer(Optimizer):
    consumes = RankedList

    def __init__(self, cfg: TPOConfig):
        self.cfg = cfg

    def fit(self, policy: Policy, records: Sequence[RankedList], trainer_cfg: TrainerConfig, seed: int) -> dict[str, float]:
        items = encode_lists(policy, records)
        fill_reference_step_logps(policy, items, self.cfg)
        total = steps_for(len(items), self.cfg.batch_size, self.cfg.epochs, trainer_cfg.accumulate_grad_batches,
                          self.cfg.max_steps)
        collate = partial(collate_lists, pad_id=policy.tokenizer.pad_token_id, max_length=self.cfg.max_length)
        module = TPOModule(policy.model, self.cfg, total)
        loader = seeded_loader(items, self.cfg.batch_size, collate, seed)
        return run_training(module, loader, trainer_cfg, total, policy.model)
