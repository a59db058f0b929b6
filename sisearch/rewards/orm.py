"""`orm`: outcome reward.

- mode `verifier`: the task's checker (reads the gold answer: training time only).
- mode `trained`: an outcome reward model (Cobbe et al. 2021, rewards_rl.md §1b): a scalar head on a copy of
  the policy's backbone, trained with token-level BCE on the policy's own samples labelled by the checker; a
  node's score is sigma(head) at its last token (a value estimate, so partial solutions get one too). Needs no
  gold answer at scoring time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from sisearch.checks import require_choice
from sisearch.registry import register
from sisearch.rewards.base import Rewarder, ScoreItem
from sisearch.rewards.heads import HeadTrainConfig
from sisearch.rewards.labelling import LabelledSolution, as_solutions, fit_new_head, obtain_head
from sisearch.search.tree import Tree
from sisearch.tasks.base import Task

ORM_MODES = ("verifier", "trained")


@dataclass
class ORMConfig:
    name: str = "orm"
    mode: str = "verifier"  # verifier (the task's checker: reads the gold answer) | trained (an outcome reward model)
    # verifier: also require every step to be right (tasks with per-step truth, such as arith)
    strict: bool = False
    correct: float = 1.0
    incorrect: float = 0.0
    # what an unfinished solution scores (the verifier cannot judge it)
    unfinished: float = 0.0
    # trained: where the head lives (null: a cache path keyed by policy, task and training settings)
    path: str | None = None
    # trained: with no head at `path`, train one at construction from the policy's samples (else fail)
    train_if_missing: bool = True
    train: HeadTrainConfig = field(default_factory=HeadTrainConfig)  # trained: how a missing head is trained

    def __post_init__(self) -> None:
        require_choice("mode", self.mode, ORM_MODES)


@register("rewarder", "orm", schema=ORMConfig)
class ORMRewarder(Rewarder):
    def __init__(self, cfg: ORMConfig, task: Task, engine=None, **_):
        self.cfg, self.task, self.engine = cfg, task, engine
        self.uses_gold = cfg.mode == "verifier"
        self.head = None
        self.head_path = None
        if cfg.mode == "trained":
            self.head, self.head_path = obtain_head(
                "orm", "outcome", cfg.path, cfg.train_if_missing, cfg.train, task, engine
            )

    def fit(
        self, data: Sequence[LabelledSolution] | Sequence[Tree] | None = None, problems_by_id: dict | None = None
    ) -> dict[str, float]:
        """Train a new outcome head on labelled solutions or searched trees (None: fresh samples of the policy).

        The new head replaces the current one and is saved to the rewarder's head path.
        """
        if self.cfg.mode != "trained":
            raise ValueError("rewarder 'orm': only mode 'trained' can be fitted")
        solutions = None if data is None else as_solutions(data, self.task, problems_by_id)
        self.head, metrics = fit_new_head("outcome", self.task, self.engine, self.cfg.train, solutions)
        if self.head_path is not None:
            self.head.save(self.head_path)
        return metrics

    def verify(self, item: ScoreItem) -> bool:
        node = item.node
        verdict = node.verdict or self.task.check(item.problem, node.state)
        if not verdict.correct:
            return False
        if self.cfg.strict:
            labels = self.task.check_steps(item.problem, self.task.split_steps(node.state))
            if labels is None:
                raise ValueError("rewarder 'orm': strict=true needs a task with per-step truth (such as arith)")
            return all(labels)
        return True

    def score(self, items: list[ScoreItem]) -> list[float]:
        if self.cfg.mode == "trained":
            steps = [self.task.split_steps(item.node.state) for item in items]
            return self.head.final_values([item.prompt for item in items], steps)
        scores = []
        for item in items:
            if not item.node.terminal:
                scores.append(self.cfg.unfinished)
            else:
                scores.append(self.cfg.correct if self.verify(item) else self.cfg.incorrect)
        return scores
