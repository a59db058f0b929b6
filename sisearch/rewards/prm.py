"""`prm`: process reward — a score for every step, aggregated into the node's score (rewards_rl.md §2).

- mode `mc`: Math-Shepherd Monte-Carlo labels computed at scoring time: `rollouts` completions of the policy
  from each step prefix, checked by the task (reads the gold answer: training time only); the step's score is
  the hard label (any completion correct) or the soft one (fraction correct).
- mode `trained`: a step-level classifier (a head on a copy of the policy's backbone) trained with per-step BCE
  on Monte-Carlo (or exact) labels of the policy's own samples, read at the last token of each step. Needs no
  gold answer at scoring time.

Step scores are aggregated by `aggregate`: min | prod | last | mean (scoring.aggregate_step_scores).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from sisearch.checks import require_choice
from sisearch.registry import register
from sisearch.rewards.base import Rewarder, ScoreItem
from sisearch.rewards.heads import HeadTrainConfig
from sisearch.rewards.labelling import (
    LabelledSolution,
    PrefixQuery,
    as_solutions,
    fit_new_head,
    obtain_head,
    rollout_successes,
)
from sisearch.rewards.scoring import AGGREGATION_MODES, aggregate_step_scores, monte_carlo_step_labels
from sisearch.search.tree import Tree
from sisearch.tasks.base import Task

PRM_MODES = ("trained", "mc")
MC_LABELS = ("soft", "hard")


@dataclass
class PRMConfig:
    name: str = "prm"
    mode: str = "trained"  # trained (a step-classifier head) | mc (Monte-Carlo labels: reads the gold answer)
    aggregate: str = "last"  # min | prod | last | mean (last suits the default soft, value-like labels; min hard ones)
    # mc: completions per step prefix, their temperature, and which Math-Shepherd label scores the step
    rollouts: int = 8
    temperature: float = 1.0
    label: str = "soft"  # soft (the fraction of completions correct) | hard (any correct)
    # trained: where the head lives (null: a cache path keyed by policy, task and training settings)
    path: str | None = None
    train_if_missing: bool = True  # trained: with no head at `path`, train one at construction (else fail)
    train: HeadTrainConfig = field(default_factory=HeadTrainConfig)  # trained: how a missing head is trained

    def __post_init__(self) -> None:
        require_choice("mode", self.mode, PRM_MODES)
        require_choice("aggregate", self.aggregate, AGGREGATION_MODES)
        require_choice("label", self.label, MC_LABELS)
        if self.rollouts < 1:
            raise ValueError(f"rollouts must be at least 1, got {self.rollouts}")


@register("rewarder", "prm", schema=PRMConfig)
class PRMRewarder(Rewarder):
    def __init__(self, cfg: PRMConfig, task: Task, engine=None, **_):
        if engine is None:
            raise ValueError("rewarder 'prm' needs an engine (rollouts or a head on the policy's backbone)")
        self.cfg, self.task, self.engine = cfg, task, engine
        self.uses_gold = cfg.mode == "mc"
        self.head, self.head_path = None, None
        if cfg.mode == "trained":
            self.head, self.head_path = obtain_head("prm", "step", cfg.path, cfg.train_if_missing, cfg.train, task, engine)

    def fit(
        self, data: Sequence[LabelledSolution] | Sequence[Tree] | None = None, problems_by_id: dict | None = None
    ) -> dict[str, float]:
        """Train a new step head (labels per `train.labels`) on solutions or trees (None: fresh policy samples)."""
        if self.cfg.mode != "trained":
            raise ValueError("rewarder 'prm': only mode 'trained' can be fitted")
        solutions = None if data is None else as_solutions(data, self.task, problems_by_id)
        self.head, metrics = fit_new_head("step", self.task, self.engine, self.cfg.train, solutions)
        if self.head_path is not None:
            self.head.save(self.head_path)
        return metrics

    def step_scores(self, items: list[ScoreItem]) -> list[list[float]]:
        """One score per step of each item (for a node with no steps yet: the value at the prompt)."""
        steps = [self.task.split_steps(item.node.state) for item in items]
        if self.cfg.mode == "trained":
            return self.head.values_at([item.prompt for item in items], steps)
        queries, spans = [], []
        for item, item_steps in zip(items, steps):
            prefixes = ["".join(item_steps[: h + 1]) for h in range(len(item_steps))] or [""]
            spans.append(len(prefixes))
            queries.extend(PrefixQuery(item.problem, item.prompt, state) for state in prefixes)
        counts = rollout_successes(self.task, self.engine, queries, self.cfg.rollouts, self.cfg.temperature)
        scores, k = [], 0
        for span in spans:
            chunk = counts[k : k + span]
            k += span
            hard, soft = monte_carlo_step_labels([c[0] for c in chunk], [c[1] for c in chunk])
            scores.append(soft if self.cfg.label == "soft" else hard)
        return scores

    def score(self, items: list[ScoreItem]) -> list[float]:
        if not items:
            return []
        return [aggregate_step_scores(s, self.cfg.aggregate) for s in self.step_scores(items)]
