"""Scalar reward heads: a causal-LM backbone plus one linear output per token, trained, saved and reloaded.

One model class serves two kinds (rewards_rl.md §1b, §2):

- `outcome` (ORM, Cobbe et al.): every solution token is trained towards the solution's outcome label, so the
  head is a value function; a node's score is sigma(head) at its last token.
- `step` (PRM, Math-Shepherd / TRL stepwise supervision): only the last token of each step (the delimiter) is
  trained, towards that step's label (hard or soft); a node's score aggregates the head at each step's end.

Beside that BCE, a Bradley-Terry term over same-problem (right, wrong) pairs (`pairwise_coef`, TRL's reward
trainer on chosen/rejected) ranks each problem's samples by the score a rewarder reads (the last token; the
lowest step end for step heads). BCE alone on samples pooled across problems mostly learns which problems are
hard, which does not help picking among one problem's samples (benchmarks/reward_quality.py, README).

The backbone is a private copy of the policy at training time (so training the policy afterwards does not move
the reward model), saved beside the head as an ordinary HF directory:
`<dir>/config.json + *.safetensors + tokenizer files`, `<dir>/head.safetensors`, `<dir>/reward_head.json`.

Token alignment: the text is encoded as prompt ids + each step's ids (steps tokenized one at a time), the same
at training and scoring time, so a step's last token is known exactly under any tokenizer.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from sisearch.models.policy import Policy, load_policy
from sisearch.optim.base import ObjectiveModule, run_training, seeded_loader, steps_for
from sisearch.optim.common import TrainerConfig, lr_lambda
from sisearch.optim.session import run_trainer_settings
from sisearch.optim.logprobs import encode_completion, encode_prompt
from sisearch.rewards.scoring import auroc, group_pairwise_loss, outcome_rm_loss, prm_step_loss, within_problem_auroc

HEAD_KINDS = ("outcome", "step")
VALUE_POSITIONS = ("auto", "tokens", "ends")
HEAD_FILE = "head.safetensors"
META_FILE = "reward_head.json"


@dataclass
class HeadTrainConfig:
    """How a reward head is trained on the policy's own samples (shared by orm/prm/pav `trained` modes)."""

    problems: int = 64  # training problems sampled from the task's train split
    samples_per_problem: int = 8  # solutions sampled per problem (Cobbe: 100; small here for CPU)
    temperature: float = 1.0
    rollouts: int = 4  # step labels: Monte-Carlo completions per step prefix (Math-Shepherd: 8)
    labels: str = "mc_soft"  # step labels: mc_soft | mc_hard | exact (task.check_steps; arith only)
    lr: float = 1e-3  # backbone
    head_lr: float = 3e-2  # the fresh linear head starts at zero and needs larger steps than the backbone
    weight_decay: float = 0.0
    batch_size: int = 32
    epochs: float = 8.0  # reward_quality: 2 -> 8 epochs raised the orm's best-of-16 from 0.37 to 0.47 (seed 0)
    max_steps: int | None = None
    dropout: float = 0.2  # on the head's input (Cobbe: residual dropout 20%)
    lm_coef: float = 0.0  # weight of a joint LM loss on the samples (Cobbe trains jointly; 0 = head loss only)
    freeze_backbone: bool = False  # true: train the head alone on frozen features
    # the loss: pointwise_coef * BCE + pairwise_coef * Bradley-Terry over same-problem (right, wrong) pairs
    # (the pairwise term ranks a problem's samples; BCE alone also learns which problems are hard)
    pointwise_coef: float = 1.0
    pairwise_coef: float = 1.0
    # where BCE trains: tokens (every solution token: a value function) | ends (the last token of each step)
    # | auto (outcome: tokens, Cobbe; step: ends, Math-Shepherd). Step heads' tokens take their step's label.
    positions: str = "auto"
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.positions not in VALUE_POSITIONS:
            raise ValueError(f"unknown head positions '{self.positions}'; allowed: {', '.join(VALUE_POSITIONS)}")
        if self.pointwise_coef < 0 or self.pairwise_coef < 0 or self.pointwise_coef + self.pairwise_coef == 0:
            raise ValueError(
                f"pointwise_coef ({self.pointwise_coef}) and pairwise_coef ({self.pairwise_coef}) must be >= 0, "
                "not both 0"
            )


STEP_LABELS = ("mc_soft", "mc_hard", "exact")
# A head trains on a cosine schedule with 5% warmup, whatever its HeadTrainConfig.
HEAD_SCHEDULE = "cosine"
HEAD_WARMUP_RATIO = 0.05


@dataclass
class HeadExample:
    """One training solution: the prompt, its steps, and one target per step (step) or one in total (outcome)."""

    prompt: str
    steps: list[str]
    targets: list[float]
    group: str = ""  # the problem it answers: pairwise losses compare only samples of one group
    outcome: float | None = None  # the solution's verdict (1 right, 0 wrong); None: the last target


@dataclass
class HeadMeta:
    kind: str
    step_delimiter: str = "\n"
    metrics: dict[str, float] = field(default_factory=dict)
    train: dict = field(default_factory=dict)


class ValueHeadModel(torch.nn.Module):
    """A causal LM backbone and a linear head on its last hidden state: one logit per token."""

    def __init__(self, backbone: torch.nn.Module, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        hidden = backbone.config.hidden_size
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(hidden, 1)
        torch.nn.init.zeros_(self.head.weight)  # start at sigma(0) = 0.5 everywhere: no initial opinion
        torch.nn.init.zeros_(self.head.bias)
        self.head.to(next(backbone.parameters()).device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, with_lm: bool = False):
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        hidden = out.hidden_states[-1]
        values = self.head(self.dropout(hidden.to(self.head.weight.dtype))).squeeze(-1)
        return (values, out.logits) if with_lm else values


@dataclass
class HeadBatch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    targets: torch.Tensor  # [B, T] target at trained positions, 0 elsewhere
    mask: torch.Tensor  # [B, T] bool: positions the head loss reads
    lm_labels: torch.Tensor  # [B, T] solution token ids, -100 elsewhere
    ends: torch.Tensor  # [B, T] bool: the last token of each step (where a step head is read)
    groups: torch.Tensor  # [B] integer problem ids (pairwise losses compare within one)
    outcomes: torch.Tensor  # [B] the solutions' verdicts


@dataclass
class EncodedExample:
    ids: list[int]
    ends: list[int]  # index of the last token of each step
    targets: list[float]
    prompt_len: int
    group: int = 0
    outcome: float = 0.0


def token_targets(prompt_len: int, ends: Sequence[int], targets: Sequence[float], kind: str, positions: str) -> dict[int, float]:
    """Position -> BCE target for one encoded example.

    outcome: the one target (the verdict) at every solution token (`tokens`) or at each step's end (`ends`).
    step: each step's label at its last token (`ends`) or at every token of that step (`tokens`: a value at
    every token, as Cobbe's token-level verifier, with the step's label as the value target).
    """
    if positions == "auto":
        positions = "tokens" if kind == "outcome" else "ends"
    per_step = [targets[0]] * len(ends) if kind == "outcome" else list(targets)
    out: dict[int, float] = {}
    start = prompt_len
    for end, t in zip(ends, per_step):
        for pos in range(start, end + 1) if positions == "tokens" else (end,):
            out[pos] = float(t)
        start = end + 1
    return out


def encode_steps(tokenizer, prompt: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
    """(token ids, index of the last token of each step); an empty step list ends at the prompt's last token."""
    ids = encode_prompt(tokenizer, prompt)
    ends = []
    for step in steps:
        ids.extend(encode_completion(tokenizer, step, append_eos=False))
        ends.append(len(ids) - 1)
    return ids, ends


def collate_heads(rows: list[EncodedExample], kind: str, pad_id: int, positions: str = "auto") -> HeadBatch:
    """Right-pad encoded examples; the BCE positions and targets come from `token_targets`."""
    width = max(len(r.ids) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    targets = torch.zeros((len(rows), width))
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    ends = torch.zeros((len(rows), width), dtype=torch.bool)
    lm_labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, : len(r.ids)] = torch.tensor(r.ids)
        attention[i, : len(r.ids)] = 1
        lm_labels[i, r.prompt_len : len(r.ids)] = torch.tensor(r.ids[r.prompt_len :], dtype=torch.long)
        ends[i, r.ends] = True
        for pos, t in token_targets(r.prompt_len, r.ends, r.targets, kind, positions).items():
            mask[i, pos] = True
            targets[i, pos] = t
    groups = torch.tensor([r.group for r in rows], dtype=torch.long)
    outcomes = torch.tensor([r.outcome for r in rows], dtype=torch.float)
    return HeadBatch(input_ids, attention, targets, mask, lm_labels, ends, groups, outcomes)


def collate_groups(groups: list[list[EncodedExample]], kind: str, pad_id: int, positions: str = "auto") -> HeadBatch:
    """A batch of whole problems (pairwise training): every sample of each group, flattened."""
    return collate_heads([r for g in groups for r in g], kind, pad_id, positions)


def solution_scores(values: torch.Tensor, batch: HeadBatch, kind: str) -> torch.Tensor:
    """[B] the logit a rewarder ranks by: the last token's (outcome) or the lowest step end's (step, as `min`)."""
    if kind == "outcome":
        last = batch.attention_mask.sum(dim=1) - 1
        return values.gather(1, last.to(values.device)[:, None]).squeeze(1)
    return values.masked_fill(~batch.ends.to(values.device), float("inf")).min(dim=1).values


def encode_examples(tokenizer, examples: Sequence[HeadExample], kind: str) -> list[EncodedExample]:
    rows = []
    group_ids: dict[str, int] = {}
    for ex in examples:
        if kind == "outcome" and len(ex.targets) != 1:
            raise ValueError(f"an outcome example needs exactly one target, got {len(ex.targets)}")
        if kind == "step" and len(ex.targets) != len(ex.steps):
            raise ValueError(f"a step example needs one target per step ({len(ex.steps)}), got {len(ex.targets)}")
        if not ex.steps:
            continue  # nothing to train on
        ids, ends = encode_steps(tokenizer, ex.prompt, ex.steps)
        outcome = ex.targets[-1] if ex.outcome is None else ex.outcome
        group = group_ids.setdefault(ex.group, len(group_ids))
        rows.append(EncodedExample(ids, ends, list(ex.targets), len(encode_prompt(tokenizer, ex.prompt)), group, float(outcome)))
    return rows


def group_rows(rows: Sequence[EncodedExample]) -> list[list[EncodedExample]]:
    """Rows gathered by group, in first-seen order."""
    groups: dict[int, list[EncodedExample]] = {}
    for r in rows:
        groups.setdefault(r.group, []).append(r)
    return list(groups.values())


class HeadModule(ObjectiveModule):
    """Head BCE (outcome_rm_loss or prm_step_loss), an optional same-problem Bradley-Terry term, an optional
    joint LM loss on the solution tokens."""

    log_prefix = "reward_head"
    progress_label = "reward head training"

    def __init__(self, model: ValueHeadModel, kind: str, cfg: HeadTrainConfig, total_steps: int):
        super().__init__(model, cfg, total_steps)
        self.kind = kind

    def configure_optimizers(self):
        groups = [
            {"params": [p for p in self.model.backbone.parameters() if p.requires_grad], "lr": self.cfg.lr},
            {"params": list(self.model.head.parameters()), "lr": self.cfg.head_lr},
        ]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=self.cfg.weight_decay)
        warmup = int(HEAD_WARMUP_RATIO * self.total_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(HEAD_SCHEDULE, warmup, self.total_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def training_step(self, batch: HeadBatch, batch_idx: int) -> torch.Tensor:
        values, logits = self.model(batch.input_ids, batch.attention_mask, with_lm=True)
        loss_fn = outcome_rm_loss if self.kind == "outcome" else prm_step_loss
        head_loss = loss_fn(values, batch.targets, batch.mask)
        loss = self.cfg.pointwise_coef * head_loss
        metrics = {"head_loss": float(head_loss.detach()), "accuracy": head_accuracy(values, batch.targets, batch.mask)}
        if self.cfg.pairwise_coef > 0:
            scores = solution_scores(values.float(), batch, self.kind)
            pairwise = group_pairwise_loss(scores, batch.outcomes, batch.groups)
            loss = loss + self.cfg.pairwise_coef * pairwise
            metrics["pairwise_loss"] = float(pairwise.detach())
        if self.cfg.lm_coef > 0:
            lm = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch.lm_labels[:, 1:].flatten(), ignore_index=-100)
            loss = loss + self.cfg.lm_coef * lm
            metrics["lm_loss"] = float(lm.detach())
        return self.record(loss, metrics)


def head_accuracy(values: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> float:
    """The share of trained positions where the head's side of 0.5 matches the label's (soft labels at 0.5)."""
    with torch.no_grad():
        agree = (values.detach() > 0) == (targets >= 0.5)
        return float(agree[mask].float().mean()) if mask.any() else 0.0


class RewardHead:
    """A trained (or fresh) value head with its tokenizer; scores texts in batches."""

    def __init__(self, model: ValueHeadModel, tokenizer, meta: HeadMeta, batch_size: int = 64):
        if meta.kind not in HEAD_KINDS:
            raise ValueError(f"unknown reward head kind '{meta.kind}'; allowed: {', '.join(HEAD_KINDS)}")
        self.model, self.tokenizer, self.meta, self.batch_size = model, tokenizer, meta, batch_size
        self.model.eval()

    @classmethod
    def fresh(cls, policy: Policy, kind: str, dropout: float, step_delimiter: str) -> "RewardHead":
        """A new head on a private copy of the policy's backbone (LoRA adapters merged into the copy)."""
        backbone = copy.deepcopy(policy.model)
        if hasattr(backbone, "merge_and_unload"):
            backbone = backbone.merge_and_unload()
        return cls(ValueHeadModel(backbone, dropout), policy.tokenizer, HeadMeta(kind=kind, step_delimiter=step_delimiter))

    @property
    def device(self) -> torch.device:
        return self.model.head.weight.device

    # -- saving ------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write backbone (HF safetensors), head and meta atomically; an existing directory is replaced."""
        directory = Path(directory).expanduser()
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            self.model.backbone.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            save_file({k: v.detach().cpu().contiguous() for k, v in self.model.head.state_dict().items()}, tmp / HEAD_FILE)
            (tmp / META_FILE).write_text(json.dumps(asdict(self.meta), indent=1, sort_keys=True))
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(tmp, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu", batch_size: int = 64) -> "RewardHead":
        directory = Path(directory).expanduser()
        if not (directory / HEAD_FILE).is_file() or not (directory / META_FILE).is_file():
            raise FileNotFoundError(
                f"no trained reward head in {directory} (expected {HEAD_FILE} and {META_FILE} beside an HF model)"
            )
        meta = HeadMeta(**json.loads((directory / META_FILE).read_text()))
        policy = load_policy(directory, device=str(device))
        model = ValueHeadModel(policy.model, dropout=0.0)
        model.head.load_state_dict(load_file(directory / HEAD_FILE))
        model.head.to(policy.device)
        return cls(model, policy.tokenizer, meta, batch_size)

    # -- scoring -----------------------------------------------------------------------------------
    @torch.no_grad()
    def values_at(self, prompts: Sequence[str], steps: Sequence[Sequence[str]]) -> list[list[float]]:
        """sigma(head) at the end of each step of each text (at the prompt's end when it has no steps)."""
        self.model.eval()
        encoded = [encode_steps(self.tokenizer, p, s) for p, s in zip(prompts, steps)]
        results: list[list[float]] = []
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(encoded), self.batch_size):
            chunk = encoded[start : start + self.batch_size]
            width = max(len(ids) for ids, _ in chunk)
            input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, (ids, _) in enumerate(chunk):
                input_ids[i, : len(ids)] = torch.tensor(ids)
                attention[i, : len(ids)] = 1
            probs = torch.sigmoid(self.model(input_ids.to(self.device), attention.to(self.device)).float()).cpu()
            for i, (ids, ends) in enumerate(chunk):
                results.append([float(probs[i, e]) for e in (ends or [len(ids) - 1])])
        return results

    def final_values(self, prompts: Sequence[str], steps: Sequence[Sequence[str]]) -> list[float]:
        """sigma(head) at each text's last token: the outcome model's score."""
        return [v[-1] for v in self.values_at(prompts, steps)]


def train_head(
    head: RewardHead,
    examples: Sequence[HeadExample],
    cfg: HeadTrainConfig,
    trainer_cfg: TrainerConfig | None = None,
) -> dict[str, float]:
    """Train `head` in place on `examples`; returns training metrics (mean and last loss, label AUROC)."""
    kind = head.meta.kind
    rows = encode_examples(head.tokenizer, examples, kind)
    if not rows:
        raise ValueError("no training examples with at least one step; sample more solutions")
    if cfg.freeze_backbone:
        for p in head.model.backbone.parameters():
            p.requires_grad_(False)
    head.model.dropout.p = cfg.dropout
    if trainer_cfg is None:  # the run's Trainer settings, on the device the head's backbone is on
        run = run_trainer_settings()
        accelerator = "cpu" if head.device.type == "cpu" else run.accelerator
        trainer_cfg = replace(run, accelerator=accelerator, progress_bar=run.progress_bar and cfg.progress)
    pad = head.tokenizer.pad_token_id
    if cfg.pairwise_coef > 0:  # batches of whole problems, about batch_size samples each, so pairs meet
        groups = group_rows(rows)
        per_batch = max(1, round(cfg.batch_size * len(groups) / len(rows)))
        collate = partial(collate_groups, kind=kind, pad_id=pad, positions=cfg.positions)
        data = groups
    else:
        per_batch, data = cfg.batch_size, rows
        collate = partial(collate_heads, kind=kind, pad_id=pad, positions=cfg.positions)
    total = steps_for(len(data), per_batch, cfg.epochs, trainer_cfg.accumulate_grad_batches, cfg.max_steps)
    loader = seeded_loader(data, per_batch, collate, cfg.seed)
    module = HeadModule(head.model, kind, cfg, total)
    torch.manual_seed(cfg.seed)
    metrics = run_training(module, loader, trainer_cfg, total, head.model)
    head.model.eval()
    metrics.update(label_auroc(head, examples))
    head.meta.metrics = {k: float(v) for k, v in metrics.items()}
    head.meta.train = asdict(cfg)
    return metrics


@torch.no_grad()
def head_loss(head: RewardHead, examples: Sequence[HeadExample], positions: str = "auto") -> float:
    """The head's BCE loss (no pairwise or LM term) on `examples`, in eval mode (no dropout)."""
    kind = head.meta.kind
    rows = encode_examples(head.tokenizer, examples, kind)
    head.model.eval()
    total, count = 0.0, 0
    for start in range(0, len(rows), head.batch_size):
        batch = collate_heads(rows[start : start + head.batch_size], kind, head.tokenizer.pad_token_id, positions)
        values = head.model(batch.input_ids.to(head.device), batch.attention_mask.to(head.device)).float().cpu()
        loss_fn = outcome_rm_loss if kind == "outcome" else prm_step_loss
        n = int(batch.mask.sum())
        total += float(loss_fn(values, batch.targets, batch.mask)) * n
        count += n
    return total / max(1, count)


def label_auroc(head: RewardHead, examples: Sequence[HeadExample]) -> dict[str, float]:
    """The head's AUROC against its own (thresholded at 0.5) training labels; absent if one class is missing."""
    examples = [e for e in examples if e.steps]
    values = head.values_at([e.prompt for e in examples], [e.steps for e in examples])
    if head.meta.kind == "outcome":
        scores = [v[-1] for v in values]
        labels = [e.targets[0] >= 0.5 for e in examples]
    else:
        scores = [x for v in values for x in v]
        labels = [t >= 0.5 for e in examples for t in e.targets]
    metrics = {}
    if head.meta.kind == "outcome":  # selection within a problem: what best-of-N needs
        within, count = within_problem_auroc(scores, labels, [e.group for e in examples])
        if count:
            metrics["train/within_problem_auroc"] = within
    if all(labels) or not any(labels):
        return metrics
    return {"train/label_auroc": auroc(scores, labels), **metrics}


__all__ = [
    "HEAD_KINDS",
    "STEP_LABELS",
    "VALUE_POSITIONS",
    "EncodedExample",
    "collate_heads",
    "solution_scores",
    "token_targets",
    "HeadExample",
    "HeadMeta",
    "HeadTrainConfig",
    "RewardHead",
    "ValueHeadModel",
    "encode_steps",
    "head_loss",
    "label_auroc",
    "train_head",
]
