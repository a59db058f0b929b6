"""The gsm8k task: reading the JSONL format, answer extraction, math-verify checking."""

import json

import pytest

from sisearch.tasks.gsm8k import GSM8KConfig, GSM8KTask, extract_answer, gold_answer

SAMPLE = "tests/data/gsm8k_sample.jsonl"


def test_reads_problems_and_gold_answers_from_the_sample():
    task = GSM8KTask(GSM8KConfig(train_path=SAMPLE, test_path=SAMPLE))
    problems = task.problems("test")
    assert len(problems) == 3
    assert problems[0].answer == "18"  # Janet's ducks
    assert problems[0].question.startswith("Janet")
    assert task.prompt(problems[0]).startswith("Question: Janet")


def test_answer_extraction_prefers_the_marked_answer():
    assert extract_answer("so 3 + 4 = 7\n#### 7") == "7"
    assert extract_answer("The answer is $1,000.") == "1000"
    assert extract_answer("we get 12 then 15") == "15"
    assert extract_answer("no number here") is None
    assert gold_answer("steps\n#### 1,234") == "1234"


def test_check_compares_numerically_with_math_verify():
    task = GSM8KTask(GSM8KConfig(train_path=SAMPLE, test_path=SAMPLE))
    problem = task.problems("test")[0]
    assert task.check(problem, "She makes 9 * 2 = 18 dollars.\n#### 18.0").correct
    assert not task.check(problem, "#### 17").correct
    assert not task.check(problem, "I do not know").parsed
    assert task.is_terminal("#### 18") and not task.is_terminal("9 * 2 = 18")


def test_malformed_line_is_reported_with_its_number(tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = [json.dumps({"question": "q", "answer": "a\n#### 1"}), "{not json", ""]
    bad.write_text("\n".join(lines))
    with pytest.raises(ValueError, match="line 2"):
        GSM8KTask(GSM8KConfig(train_path=str(bad), test_path=str(bad))).problems("train")


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="test_limit must be at least 1"):
        GSM8KTask(GSM8KConfig(test_limit=0))
