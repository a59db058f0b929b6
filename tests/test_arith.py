"""The arith task: generation, splits, answer and per-step checking, with exact expectations."""

import random

import pytest

from sisearch.tasks.arith import (
    ArithConfig,
    ArithTask,
    Chain,
    is_held_out,
    parse_question,
    step_labels,
    written_solution,
)


def test_chain_values_and_gold_steps_modulo_ten():
    chain = Chain(7, (("+", 5), ("-", 9), ("+", 3)), 10)
    assert chain.question == "Q:7+5-9+3=?"
    assert chain.values() == [7, 2, 3, 6]  # 12 -> 2, 2-9=-7 -> 3, 3+3=6
    assert chain.gold_steps() == ["7+5=2", "2-9=3", "3+3=6"]
    assert chain.answer == 6
    assert parse_question("Q:7+5-9+3=?", 10) == chain


def test_check_reads_the_last_answer_line():
    task = ArithTask(ArithConfig())
    problem = next(p for p in task.problems("test"))
    gold = problem.solution
    assert task.check(problem, gold).correct
    wrong = gold.rsplit("A:", 1)[0] + f"A:{(int(problem.answer) + 1) % 10}"
    verdict = task.check(problem, wrong)
    assert not verdict.correct and verdict.parsed
    assert not task.check(problem, "1+1=2\n").parsed
    assert task.is_terminal(gold) and not task.is_terminal(gold.rsplit("A:", 1)[0])


def test_step_labels_mark_the_first_error_and_what_follows():
    chain = Chain(7, (("+", 5), ("-", 9), ("+", 3)), 10)
    assert step_labels(chain, ["7+5=2\n", "2-9=3\n", "3+3=6\n", "A:6"]) == [True, True, True, True]
    # a slip at step 1 (the wrap-around misconception): later steps are off the gold path, answer wrong
    assert step_labels(chain, ["7+5=3\n", "3-9=4\n", "4+3=7\n", "A:7"]) == [False, False, False, False]
    # a wrong left operand even with right arithmetic is off track
    assert step_labels(chain, ["7+5=2\n", "1-9=2\n"]) == [True, False]


def test_wait_line_corrects_the_previous_step():
    chain = Chain(7, (("+", 5), ("-", 9), ("+", 3)), 10)
    steps = ["7+5=3\n", "Wait:7+5=2\n", "2-9=3\n", "3+3=6\n", "A:6"]
    assert step_labels(chain, steps) == [False, True, True, True, True]
    # a wrong correction stays off track
    assert step_labels(chain, ["7+5=3\n", "Wait:7+5=4\n", "4-9=5\n"]) == [False, False, False]
    # a Wait: line after more operations than the chain has is wrong, not an error
    extra = ["7+5=2\n", "2-9=3\n", "3+3=6\n", "6+1=7\n", "Wait:6+1=7\n"]
    assert step_labels(chain, extra) == [True, True, True, False, False]


def test_misconception_writes_one_too_many_at_wrapping_steps_only():
    chain = Chain(7, (("+", 5), ("+", 1)), 10)  # 7+5 wraps; 2+1 does not
    assert written_solution(chain, random.Random(0), misconception_rate=1.0) == "7+5=3\n3+1=4\nA:4"
    assert written_solution(chain, random.Random(0), misconception_rate=0.0) == "7+5=2\n2+1=3\nA:3"
    corrected = written_solution(chain, random.Random(0), misconception_rate=1.0, self_correction_rate=1.0)
    assert corrected == "7+5=3\nWait:7+5=2\n2+1=3\nA:3"


def test_splits_are_deterministic_disjoint_and_held_out_by_hash():
    a, b = ArithTask(ArithConfig(seed=3)), ArithTask(ArithConfig(seed=3))
    assert [p.question for p in a.problems("train")] == [p.question for p in b.problems("train")]
    train = {p.question for p in a.problems("train")}
    test = {p.question for p in a.problems("test")}
    assert not train & test
    assert all(is_held_out(q) for q in test) and not any(is_held_out(q) for q in train)
    groups = {p.difficulty for p in a.problems("test")}
    assert groups == {"ops_2", "ops_4", "ops_6"}
    other = ArithTask(ArithConfig(seed=4))
    assert [p.question for p in other.problems("train")] != [p.question for p in a.problems("train")]


def test_chance_rate_and_bad_config():
    assert ArithTask(ArithConfig(modulus=10)).chance_rate == pytest.approx(0.1)
    with pytest.raises(ValueError, match="train_ops"):
        ArithTask(ArithConfig(train_ops=[]))
    with pytest.raises(ValueError, match="split"):
        ArithTask(ArithConfig()).problems("validation")


# --- operators and operand range: small-number addition for a small pretrained model ---------------------


def test_default_operators_and_operands_draw_the_same_problems_as_before_the_options_existed():
    task = ArithTask(ArithConfig())
    assert [p.question for p in task.problems("test")[:3]] == ["Q:5-3-9=?", "Q:1-7-0=?", "Q:3+5-2=?"]
    assert [p.question for p in task.problems("train")[:2]] == ["Q:9-9-3=?", "Q:4-9+0+7-9+0-5=?"]
    assert task.chance_rate == 1 / 10


def test_addition_of_small_numbers_stays_below_the_modulus_and_counts_its_possible_answers():
    cfg = ArithConfig(modulus=100, operators=["+"], operand_max=10, train_ops=[2], test_ops=[2], train_size=50,
                      test_size_per_difficulty=20)
    task = ArithTask(cfg)
    for problem in task.problems("train") + task.problems("test"):
        numbers = [int(n) for n in problem.question[2:-2].split("+")]
        assert len(numbers) == 3 and max(numbers) < 10 and "-" not in problem.question
        assert int(problem.answer) == sum(numbers)  # no wrap-around
    assert task.chance_rate == 1 / 28  # sums 0..27


@pytest.mark.parametrize("change,message", [
    ({"operators": ["*"]}, r"operators must be a non-empty subset of \['\+', '-'\], got \['\*'\]"),
    ({"operators": []}, "operators must be a non-empty subset"),
    ({"operand_max": 11}, r"operand_max must be between 1 and the modulus \(10\) or null, got 11"),
])
def test_bad_operators_and_operand_range_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        ArithTask(ArithConfig(**change))


def test_the_small_model_preset_composes_with_real_line_breaks_in_its_worked_example():
    from conftest import compose

    from sisearch import registry

    cfg = registry.validate("task", compose(["task=arith_small"]).task)
    assert (cfg.modulus, cfg.operators, cfg.operand_max, cfg.prompt.format) == (100, ["+"], 10, "chat")
    assert cfg.prompt.few_shot[0].solution == "7+5=12\n12+9=21\nA:21"
