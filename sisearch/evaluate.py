"""Held-out evaluation: greedy accuracy per difficulty and overall (plus optional sampled pass@k)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sisearch.engines.base import Engine
from sisearch.tasks.base import Problem, Task


@dataclass
class EvalConfig:
    #: sampled solutions per test problem for pass@k and mean sample accuracy (0: greedy only)
    samples: int = 0
    temperature: float = 1.0


def group_mean(problems: list[Problem], values: list[float], prefix: str) -> dict[str, float]:
    groups: dict[str, list[float]] = defaultdict(list)
    for problem, value in zip(problems, values):
        groups[problem.difficulty].append(value)
    metrics = {f"{prefix}/{g}": sum(v) / len(v) for g, v in sorted(groups.items())}
    metrics[f"{prefix}/overall"] = sum(values) / len(values)
    return metrics


def evaluate(task: Task, engine: Engine, cfg: EvalConfig) -> dict[str, float]:
    problems = task.problems("test")
    if not problems:
        raise ValueError("the test split is empty; nothing to evaluate")
    prompts = [task.prompt(p) for p in problems]
    greedy = engine.generate(prompts, n=1, max_new_tokens=task.max_new_tokens, temperature=0.0)
    correct = [float(task.check(p, out[0].text).correct) for p, out in zip(problems, greedy)]
    metrics = group_mean(problems, correct, "eval/greedy")
    metrics["eval/greedy_tokens"] = sum(out[0].num_tokens for out in greedy) / len(greedy)
    if task.chance_rate is not None:
        metrics["eval/chance"] = task.chance_rate
    if cfg.samples > 0:
        sampled = engine.generate(prompts, n=cfg.samples, max_new_tokens=task.max_new_tokens, temperature=cfg.temperature)
        hits = [[task.check(p, s.text).correct for s in out] for p, out in zip(problems, sampled)]
        metrics.update(group_mean(problems, [sum(h) / len(h) for h in hits], "eval/sample"))
        metrics.update(group_mean(problems, [float(any(h)) for h in hits], f"eval/pass@{cfg.samples}"))
    return metrics
