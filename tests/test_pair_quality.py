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


def test_seeds_pool_by_summing_counts():
    one = {"pairs": 4, "tokens": 1000, "good": 3, "reversed": 1, "both_wrong": 0, "both_right": 0, "unjudged": 0}
    two = {"pairs": 6, "tokens": 3000, "good": 3, "reversed": 0, "both_wrong": 2, "both_right": 0, "unjudged": 1}
    pooled = pair_quality.pooled([one, two])
    assert pooled["pairs"] == 10 and pooled["pairs_per_1k"] == 2.5
    assert pooled["good_share"] == 6 / 9 and pooled["both_wrong_share"] == 2 / 9  # unjudged pairs are left out


def test_a_ranked_list_counts_as_the_pairs_its_ranking_implies():
    from sisearch.data.ranked_lists import RankedList

    ranked = RankedList("p", "Q:", [["1\n", "A:1"], ["2\n", "A:2"], ["3\n", "A:3"]], [1.0, 0.0, 0.0], [True] * 3)
    pairs = pair_quality.as_pairs([ranked])  # the tie (0, 0) implies no pair
    assert [(p.chosen, p.rejected) for p in pairs] == [("1\nA:1", "2\nA:2"), ("1\nA:1", "3\nA:3")]
