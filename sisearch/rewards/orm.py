"""`orm`: outcome reward. Mode `verifier` is the task's checker (gold answer needed)."""

from __future__ import annotations

from dataclasses import dataclass

from sisearch.registry import register
from sisearch.rewards.base import Rewarder, ScoreItem
from sisearch.tasks.base import Task

ORM_MODES = ("verifier",)


@dataclass
class ORMConfig:
    name: str = "orm"
    mode: str = "verifier"
    # verifier: also require every step to be right (tasks with per-step truth, such as arith)
    strict: bool = False
    correct: float = 1.0
    incorrect: float = 0.0
    # what an unfinished solution scores (the verifier cannot judge it)
    unfinished: float = 0.0


@register("rewarder", "orm", schema=ORMConfig)
class ORMRewarder(Rewarder):
    def __init__(self, cfg: ORMConfig, task: Task, engine=None, **_):
        if cfg.mode not in ORM_MODES:
            raise ValueError(f"rewarder 'orm': unknown mode '{cfg.mode}'; allowed: {', '.join(ORM_MODES)}")
        self.cfg, self.task = cfg, task
        self.uses_gold = cfg.mode == "verifier"

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
        scores = []
        for item in items:
            if not item.node.terminal:
                scores.append(self.cfg.unfinished)
            else:
                scores.append(self.cfg.correct if self.verify(item) else self.cfg.incorrect)
        return scores
