"""Held-out evaluation: greedy accuracy per difficulty and overall (plus optional sampled pass@k)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sisearch.engines.base import Engine
from sisearch.progress import progress_task
from sisearch.tasks.base import Problem, Task

# Prompts per engine call, so the bar moves on a large test split; big enough to keep the engine's batches full.
EVAL_CHUNK = 256


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


def generate_in_chunks(engine: Engine, prompts: list[str], bar: Any, **kwargs: Any) -> list[list[Any]]:
    outputs: list[list[Any]] = []
    for start in range(0, len(prompts), EVAL_CHUNK):
        outputs += engine.generate(prompts[start : start + EVAL_CHUNK], **kwargs)
        bar.advance(len(prompts[start : start + EVAL_CHUNK]))
    return outputs


def evaluate_with_outputs(task: Task, engine: Engine, cfg: EvalConfig,
                          progress: bool = False) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The metrics, and each test problem's greedy output with its verdict (for the run's records)."""
    problems = task.problems("test")
    if not problems:
        raise ValueError("the test split is empty; nothing to evaluate")
    prompts = [task.prompt(p) for p in problems]
    total = len(problems) * (2 if cfg.samples > 0 else 1)
    with progress_task("evaluation (problems)", total=total, enabled=progress) as bar:
        greedy = generate_in_chunks(engine, prompts, bar, n=1, max_new_tokens=task.max_new_tokens, temperature=0.0)
        verdicts = [task.check(p, out[0].text) for p, out in zip(problems, greedy)]
        correct = [float(v.correct) for v in verdicts]
        metrics = group_mean(problems, correct, "eval/greedy")
        metrics["eval/greedy_tokens"] = sum(out[0].num_tokens for out in greedy) / len(greedy)
        if task.chance_rate is not None:
            metrics["eval/chance"] = task.chance_rate
        if cfg.samples > 0:
            sampled = generate_in_chunks(engine, prompts, bar, n=cfg.samples, max_new_tokens=task.max_new_tokens,
                                         temperature=cfg.temperature)
            hits = [[task.check(p, s.text).correct for s in out] for p, out in zip(problems, sampled)]
            metrics.update(group_mean(problems, [sum(h) / len(h) for h in hits], "eval/sample"))
            metrics.update(group_mean(problems, [float(any(h)) for h in hits], f"eval/pass@{cfg.samples}"))
    outputs = [
        {"problem_id": p.id, "question": prompt, "output": out[0].text, "answer": v.answer, "correct": v.correct}
        for p, prompt, out, v in zip(problems, prompts, greedy, verdicts)
    ]
    return metrics, outputs


def evaluate(task: Task, engine: Engine, cfg: EvalConfig, progress: bool = False) -> dict[str, float]:
    return evaluate_with_outputs(task, engine, cfg, progress)[0]
