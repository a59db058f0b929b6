"""`hf`: generation and scoring with transformers on CPU or CUDA, batched across prompts.

A hand-written decoding loop (rather than `generate()`) so that the n samples of a prompt share one
prefill (the KV cache is repeated after it), each sequence stops at its own stop string, finished rows
leave the batch, and the policy's temperature-1 log-prob of every generated token comes back.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

from sisearch.engines.base import Engine, EngineStats, Sample, check_sampling
from sisearch.models.policy import Policy
from sisearch.optim.logprobs import IGNORE, collate_completions, encode_prompt, encode_scored_pairs, token_logps
from sisearch.registry import register


@dataclass
class HFEngineConfig:
    name: str = "hf"
    max_batch_size: int = 1024  # sequences decoded together (prompts x n)
    score_batch_size: int = 256  # sequences per forward pass when scoring
    top_p: float = 1.0
    seed: int = 0
    # never sample the tokenizer's special tokens other than EOS (padding, BOS, unknown): they have no text,
    # so a solution holding one could not be read back from its text (log-probs stay the policy's own)
    suppress_special_tokens: bool = True


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the tail of each row beyond cumulative mass `top_p` (the top token always survives)."""
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs)


def left_pad(encoded: list[list[int]], pad_id: int, device: torch.device):
    """(input_ids, attention_mask, position_ids), left-padded so every row's last token shares a column."""
    width = max(len(ids) for ids in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for i, ids in enumerate(encoded):
        input_ids[i, width - len(ids) :] = torch.tensor(ids)
        mask[i, width - len(ids) :] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    return input_ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


@register("engine", "hf", schema=HFEngineConfig)
class HFEngine(Engine):
    def __init__(self, cfg: HFEngineConfig, policy: Policy):
        if not 0.0 < cfg.top_p <= 1.0:
            raise ValueError(f"engine 'hf': top_p must be in (0, 1], got {cfg.top_p}")
        if cfg.max_batch_size < 1 or cfg.score_batch_size < 1:
            raise ValueError("engine 'hf': max_batch_size and score_batch_size must be at least 1")
        self.cfg = cfg
        self.policy = policy
        self.stats = EngineStats()
        self._token_text: list[str] | None = None
        self.reseed(cfg.seed)

    # -- state -------------------------------------------------------------------------------------
    def reseed(self, seed: int) -> None:
        self.generator = torch.Generator(device=self.policy.device).manual_seed(seed)

    def sync(self, policy: Policy) -> None:
        self.policy = policy
        self.policy.model.eval()

    @property
    def suppressed_ids(self) -> torch.Tensor | None:
        """The special tokens that are never sampled (all but EOS), or None."""
        if not self.cfg.suppress_special_tokens:
            return None
        tokenizer = self.policy.tokenizer
        ids = sorted(set(tokenizer.all_special_ids) - {tokenizer.eos_token_id})
        return torch.tensor(ids, device=self.policy.device) if ids else None

    @property
    def token_text(self) -> list[str]:
        """Each token's text, decoded once, so stop strings are found without re-decoding every step."""
        if self._token_text is None:
            tokenizer = self.policy.tokenizer
            self._token_text = [tokenizer.decode([i]) for i in range(len(tokenizer))]
        return self._token_text

    # -- generation --------------------------------------------------------------------------------
    def encode(self, prompt: str) -> list[int]:
        return encode_prompt(self.policy.tokenizer, prompt)

    def generate(self, prompts, n=1, max_new_tokens=64, temperature=1.0, stop=None) -> list[list[Sample]]:
        check_sampling(n, temperature)
        per_chunk = max(1, self.cfg.max_batch_size // n)
        results: list[list[Sample]] = []
        for start in range(0, len(prompts), per_chunk):
            results.extend(self._generate_chunk(prompts[start : start + per_chunk], n, max_new_tokens, temperature, stop or []))
        return results

    @torch.no_grad()
    def _generate_chunk(self, prompts, n, max_new_tokens, temperature, stop) -> list[list[Sample]]:
        model, tokenizer, device = self.policy.model, self.policy.tokenizer, self.policy.device
        eos = tokenizer.eos_token_id
        prompt_ids = self.prompt_ids(prompts)
        input_ids, mask, positions = left_pad(prompt_ids, tokenizer.pad_token_id, device)
        out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
        cache, logits = out.cache, out.logits[:, -1]
        next_pos = positions[:, -1] + 1
        if n > 1:  # one prefill per prompt, then n copies of its cache
            cache.batch_repeat_interleave(n)
            logits, mask, next_pos = (t.repeat_interleave(n, dim=0) for t in (logits, mask, next_pos))
        self.stats.calls += 1
        self.stats.prompt_tokens += sum(len(ids) for ids in prompt_ids)

        rows = len(prompts) * n
        active = list(range(rows))  # result row of each batch row
        ids: list[list[int]] = [[] for _ in range(rows)]
        lps: list[list[float]] = [[] for _ in range(rows)]
        tails = [""] * rows  # the recent text, enough to find a stop string
        finish = ["length"] * rows
        longest_stop = max((len(s) for s in stop), default=0)
        table = self.token_text if stop else None
        suppressed = self.suppressed_ids
        for _ in range(max_new_tokens):
            logp = F.log_softmax(logits.float(), dim=-1)
            allowed = logits.float().index_fill(-1, suppressed, float("-inf")) if suppressed is not None else logits.float()
            if temperature == 0:
                chosen = allowed.argmax(-1)
            else:
                probs = top_p_filter(F.softmax(allowed / temperature, dim=-1), self.cfg.top_p)
                chosen = torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)
            chosen_lp = logp.gather(1, chosen[:, None]).squeeze(1).tolist()
            keep = []
            for j, (row, token) in enumerate(zip(active, chosen.tolist())):
                ids[row].append(token)
                lps[row].append(chosen_lp[j])
                if token == eos:
                    finish[row] = "eos"
                    continue
                if table is not None:
                    piece = table[token]
                    tails[row] = (tails[row] + piece)[-(longest_stop + len(piece)) :]
                    if any(s in tails[row] for s in stop):
                        finish[row] = "stop"
                        continue
                keep.append(j)
            if not keep:
                break
            if len(keep) < len(active):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                chosen, mask, next_pos = chosen[index], mask[index], next_pos[index]
                active = [active[j] for j in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            out = model(
                input_ids=chosen[:, None],
                attention_mask=mask,
                position_ids=next_pos[:, None],
                cache=cache,
                use_cache=True,
            )
            logits, next_pos = out.logits[:, -1], next_pos + 1

        samples = []
        for row in range(rows):
            text_ids = [t for t in ids[row] if t != eos]
            text = tokenizer.decode(text_ids, skip_special_tokens=True)
            self.stats.generated_tokens += len(ids[row])
            samples.append(Sample(text, ids[row], lps[row], finish[row], len(prompt_ids[row // n])))
        return [samples[i * n : (i + 1) * n] for i in range(len(prompts))]

    # -- scoring -----------------------------------------------------------------------------------
    @torch.no_grad()
    def logprobs(self, contexts: list[str], continuations: list[str]) -> list[list[float]]:
        tokenizer = self.policy.tokenizer
        pairs = encode_scored_pairs(tokenizer, contexts, continuations)
        collate = partial(collate_completions, pad_id=tokenizer.pad_token_id)
        results: list[list[float]] = []
        for start in range(0, len(pairs), self.cfg.score_batch_size):
            batch = collate(pairs[start : start + self.cfg.score_batch_size]).to(self.policy.device)
            logits = self.policy.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            per_token = token_logps(logits, batch.labels)
            scored = batch.labels[:, 1:] != IGNORE
            for row in range(per_token.shape[0]):
                results.append(per_token[row][scored[row]].tolist())
            self.stats.calls += 1
            self.stats.scored_tokens += int(batch.attention_mask.sum())
        return results

    @torch.no_grad()
    def next_token_logprobs(self, prompts: list[str], token_ids: list[int]) -> list[list[float]]:
        tokenizer, device = self.policy.tokenizer, self.policy.device
        results: list[list[float]] = []
        index = torch.tensor(token_ids, device=device)
        for start in range(0, len(prompts), self.cfg.score_batch_size):
            encoded = [encode_prompt(tokenizer, p) for p in prompts[start : start + self.cfg.score_batch_size]]
            input_ids, mask, positions = left_pad(encoded, tokenizer.pad_token_id, device)
            logits = self.policy.model(input_ids=input_ids, attention_mask=mask, position_ids=positions).logits[:, -1]
            results.extend(F.log_softmax(logits.float(), dim=-1)[:, index].tolist())
            self.stats.calls += 1
            self.stats.scored_tokens += int(mask.sum())
        return results
