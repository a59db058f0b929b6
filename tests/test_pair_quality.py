"""benchmarks/pair_quality.py's judging of step pairs by the task's exact step truth."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from sisearch.data.records import PreferencePair
from sisearch.tasks.arith import ArithConfig, ArithTask

spec = importlib.util.spec_from_file_location(
    "pair_quality", Path(__file__).resolve().parent.parent / "benchmarks" / "pair_quality.py"
)
pair_quality = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pair_quality)


def test_pairs_are_judged_by_the_first_differing_line():
    task = ArithTask(ArithConfig(train_size=20, test_size_per_difficulty=1))
    problem = next(p for p in task.problems("train") if p.difficulty == "ops_3")
    first, second = problem.solution.split("\n")[:2]
    lhs, result = second.split("=")
    slip = f"{lhs}={(int(result) + 1) % 10}"
    prompt = task.prompt(problem)
    # the shared prefix runs into the second line up to "="; chosen and rejected are its two results
    context = prompt + first + "\n" + lhs + "="
    good = PreferencePair(problem.id, context, result + "\n", slip[len(lhs) + 1 :] + "\n")
    flipped = PreferencePair(problem.id, context, good.rejected, good.chosen)
    both_wrong = PreferencePair(problem.id, prompt, "0+0=1\n", "0+0=2\n")
    counts = pair_quality.judge_pairs(task, {problem.id: problem}, {problem.id: prompt}, [good, flipped, both_wrong])
    assert counts == {"good": 1, "reversed": 1, "both_wrong": 1, "both_right": 0, "unjudged": 0}
    assert pair_quality.pair_kind(True, True) == "both_right" and pair_quality.pair_kind(None, True) == "unjudged"
