"""`score`: SCoRe-style two-stage multi-turn RL for self-correction, on-policy inside the training step.

Each step takes a batch of problems (from `correction_traces` records) and, with the model being trained
(no gradient while sampling):
1. samples `samples_per_prompt` first attempts y1 ~ pi(.|x1) and rewards them with the task's checker;
2. appends the correction prompt, x2 = x1 + y1 + correction, and samples one second attempt y2 per y1;
3. takes a REINFORCE step with a leave-one-out baseline over the samples of each problem (gamma = 0:
   turn-1 tokens get turn 1's reward, turn-2 tokens turn 2's), plus an exact per-token KL to the reference.

Stage I (the first `stage1_fraction` of steps) rewards only the second attempt and holds the first attempt
near the reference with the strong `beta2` KL; stage II rewards both attempts, the second with the bonus
`alpha * (r2 - r1)` that makes "repeat the first answer" a poor policy (`losses.score_shaped_rewards`).
The reference is a frozen copy of the policy as it enters the iteration (or the base weights with the LoRA
adapters switched off), made once per fit.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from sisearch.checks import require_choice
from sisearch.data.correction_traces import CorrectionTrace
from sisearch.engines.hf import HFEngine, HFEngineConfig
from sisearch.models.policy import Policy
from sisearch.optim.base import ObjectiveModule, Optimizer, run_training, seeded_loader, steps_for
from sisearch.optim.common import OptimizationConfig, TrainerConfig
from sisearch.optim.logprobs import IGNORE, CompletionBatch, collate_completions, encode_prompt
from sisearch.optim.losses import leave_one_out_advantages, policy_gradient_loss, score_shaped_rewards
from sisearch.optim.sharded import shards_weights
from sisearch.registry import register
from sisearch.tasks.base import Problem, Task

SCORE_REFERENCES = ("copy", "adapters_disabled")


@dataclass
class ScoreConfig(OptimizationConfig):
    name: str = "score"
    alpha: float = 10.0  # stage II bonus weight on r2 - r1 (SCoRe: 10)
    beta1: float = 0.01  # KL weight on every turn
    beta2: float = 0.1  # stage I: KL weight holding the first attempt near the reference
    stage1_fraction: float = 0.5  # the share of optimizer steps spent in stage I
    samples_per_prompt: int = 4  # first attempts per problem (the leave-one-out group); one second attempt each
    temperature: float = 1.0
    max_new_tokens: int | None = None  # per attempt; None: the task's budget
    reference: str = "copy"  # copy (a frozen copy of the policy entering the iteration) | adapters_disabled (LoRA)
    lr: float = 1e-4
    batch_size: int = 4  # problems per step

    def __post_init__(self) -> None:
        if self.samples_per_prompt < 2:
            raise ValueError(
                f"samples_per_prompt must be at least 2 (the leave-one-out baseline), got {self.samples_per_prompt}"
            )
        require_choice("reference", self.reference, SCORE_REFERENCES)
        if not 0.0 <= self.stage1_fraction <= 1.0:
            raise ValueError(f"stage1_fraction must be in [0, 1], got {self.stage1_fraction}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (on-policy sampling), got {self.temperature}")
        if min(self.beta1, self.beta2, self.alpha) < 0:
            raise ValueError("alpha, beta1 and beta2 must be >= 0")


@dataclass
class Prompt:
    """One problem to attempt, with the correction text its traces carry."""

    problem_id: str
    prompt: str
    correction: str


def exact_kl(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum over each row's completion positions of KL(pi || ref) over the whole vocabulary.

    Differentiable in the policy (unlike the k1 log-ratio of the sampled token), and exact, so its
    gradient has no sampling noise.
    """
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    ref_logp = F.log_softmax(ref_logits[:, :-1].float(), dim=-1)
    per_position = (logp.exp() * (logp - ref_logp)).sum(-1)
    mask = labels[:, 1:] != IGNORE
    return (per_position * mask).sum(-1)


def sampled_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed log-prob of each row's completion (shifted gather)."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    targets = labels[:, 1:]
    mask = targets != IGNORE
    picked = logp.gather(-1, targets.masked_fill(~mask, 0)[..., None]).squeeze(-1)
    return (picked * mask).sum(-1)


class ScoreModule(ObjectiveModule):
    def __init__(self, policy: Policy, cfg: ScoreConfig, task: Task, problems: dict[str, Problem],
                 total_steps: int, seed: int):
        super().__init__(policy.model, cfg, total_steps)
        self.task, self.problems, self.policy = task, problems, policy
        self.stage1_steps = round(cfg.stage1_fraction * total_steps)
        self.seed = seed
        self.engine = HFEngine(HFEngineConfig(seed=seed), policy)  # samples with the weights being trained
        # A frozen copy outside the module tree: Lightning neither trains nor re-modes it.
        self._reference: list[torch.nn.Module] = []
        if cfg.reference == "copy":
            reference = copy.deepcopy(policy.model).eval()
            reference.requires_grad_(False)
            self._reference.append(reference)

    def on_fit_start(self) -> None:
        """Each rank samples its share of a batch with its own random stream (rank 0 keeps the fit's seed)."""
        self.engine.reseed(self.seed + 7919 * self.global_rank)

    def stage(self) -> int:
        return 1 if self.global_step < self.stage1_steps else 2

    @torch.no_grad()
    def reference_logits(self, batch: CompletionBatch) -> torch.Tensor:
        if self._reference:
            model, context = self._reference[0].to(batch.input_ids.device), nullcontext()
        else:
            model, context = self.model, self.model.disable_adapter()
        with context:
            return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits

    def attempts(self, prompts: list[str], n: int):
        budget = self.cfg.max_new_tokens or self.task.max_new_tokens
        return self.engine.generate(prompts, n=n, max_new_tokens=budget, temperature=self.cfg.temperature)

    def training_step(self, batch: list[Prompt], batch_idx: int) -> torch.Tensor:
        n = self.cfg.samples_per_prompt
        tokenizer = self.policy.tokenizer
        was_training = self.model.training
        self.model.eval()  # sampling: no dropout, no gradient (the engine runs under no_grad)
        first = self.attempts([p.prompt for p in batch], n)
        problems = [self.problems[p.problem_id] for p in batch]
        verdict1 = [[self.task.check(prob, s.text) for s in row] for prob, row in zip(problems, first)]
        second_prompts = [p.prompt + s.text + p.correction for p, row in zip(batch, first) for s in row]
        second = [row[0] for row in self.attempts(second_prompts, 1)]
        verdict2 = [self.task.check(problems[i // n], s.text) for i, s in enumerate(second)]
        self.model.train(was_training)

        rows = [(encode_prompt(tokenizer, p.prompt), s.token_ids) for p, row in zip(batch, first) for s in row]
        rows += [(encode_prompt(tokenizer, x2), s.token_ids) for x2, s in zip(second_prompts, second)]
        seqs = collate_completions(rows, tokenizer.pad_token_id, self.cfg.max_length).to(self.device)
        logits = self.model(input_ids=seqs.input_ids, attention_mask=seqs.attention_mask).logits
        logps = sampled_logps(logits, seqs.labels)
        kl = exact_kl(logits, self.reference_logits(seqs), seqs.labels)

        r1 = torch.tensor([[float(v.correct) for v in row] for row in verdict1], device=self.device)
        r2 = torch.tensor([float(v.correct) for v in verdict2], device=self.device).view(len(batch), n)
        stage = self.stage()
        shaped1, shaped2 = score_shaped_rewards(r1, r2, self.cfg.alpha, stage)
        advantages = torch.cat([leave_one_out_advantages(shaped1).flatten(), leave_one_out_advantages(shaped2).flatten()])
        half = len(batch) * n
        kl1_coef = self.cfg.beta2 if stage == 1 else self.cfg.beta1
        kl_weighted = torch.cat([kl1_coef * kl[:half], self.cfg.beta1 * kl[half:]])
        out = policy_gradient_loss(logps, advantages, kl=kl_weighted, kl_coef=1.0)

        answers1 = [v.answer for row in verdict1 for v in row]
        answers2 = [v.answer for v in verdict2]
        flat1, flat2 = r1.flatten(), r2.flatten()
        metrics: dict[str, Any] = {
            **out.metrics,
            "stage": float(stage),
            "reward/first": float(flat1.mean()),
            "reward/second": float(flat2.mean()),
            "reward/delta": float((flat2 - flat1).mean()),
            "reward/incorrect_to_correct": float(((flat1 == 0) & (flat2 == 1)).float().mean()),
            "reward/correct_to_incorrect": float(((flat1 == 1) & (flat2 == 0)).float().mean()),
            # SCoRe's collapse signal: the share of second attempts that change the answer
            "answers/changed": sum(a != b for a, b in zip(answers1, answers2)) / len(answers1),
            "kl/first": float(kl[:half].detach().mean()),
            "kl/second": float(kl[half:].detach().mean()),
        }
        return self.record(out.loss, metrics)


def unique_prompts(records: Sequence[CorrectionTrace]) -> list[Prompt]:
    seen: dict[str, Prompt] = {}
    for r in records:
        seen.setdefault(r.problem_id, Prompt(r.problem_id, r.prompt, r.correction))
    return list(seen.values())


@register("optimizer", "score", schema=ScoreConfig)
class ScoreOptimizer(Optimizer):
    consumes = CorrectionTrace
    needs_task = True  # it samples attempts and checks them with the task while it trains

    def __init__(self, cfg: ScoreConfig, task: Task | None = None):
        self.cfg = cfg
        self.task = task

    def fit(self, policy: Policy, records: Sequence[CorrectionTrace], trainer_cfg: TrainerConfig, seed: int) -> dict[str, float]:
        if self.task is None:
            raise ValueError("optimizer 'score' needs the task to check its sampled attempts; build it with task=...")
        if shards_weights(trainer_cfg.strategy):
            raise ValueError(
                f"optimizer 'score' samples from the weights being trained, which trainer.strategy "
                f"'{trainer_cfg.strategy}' shards; use trainer.strategy=ddp"
            )
        if self.cfg.reference == "adapters_disabled" and not policy.is_peft:
            raise ValueError("optimizer 'score': reference 'adapters_disabled' needs a LoRA policy (set model.lora)")
        by_id = {p.id: p for p in self.task.problems("train")}
        prompts = unique_prompts(records)
        unknown = [p.problem_id for p in prompts if p.problem_id not in by_id]
        if unknown:
            raise ValueError(f"optimizer 'score': {len(unknown)} traces name problems the task does not have, e.g. {unknown[0]!r}")
        total = steps_for(len(prompts), self.cfg.batch_size, self.cfg.epochs, trainer_cfg.accumulate_grad_batches,
                          self.cfg.max_steps)
        module = ScoreModule(policy, self.cfg, self.task, by_id, total, seed)
        loader = seeded_loader(prompts, self.cfg.batch_size, list, seed)
        metrics = run_training(module, loader, trainer_cfg, total, policy.model)
        # On-policy sampling is part of this objective's compute budget, beside the search's tokens.
        metrics["train/generated_tokens"] = float(module.engine.stats.generated_tokens)
        return metrics
