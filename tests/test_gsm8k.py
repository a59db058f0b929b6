"""The gsm8k task: the shipped dataset, reading the JSONL format, answer extraction, math-verify checking."""

import json

import pytest

from sisearch import registry
from sisearch.tasks.gsm8k import SHIPPED, GSM8KConfig, GSM8KTask, extract_answer, gold_answer

SAMPLE = "tests/data/gsm8k_sample.jsonl"


def test_reads_problems_and_gold_answers_from_the_sample():
    task = GSM8KTask(GSM8KConfig(train_path=SAMPLE, test_path=SAMPLE))
    problems = task.problems("test")
    assert len(problems) == 3
    assert problems[0].answer == "18"  # Janet's ducks
    assert problems[0].question.startswith("Janet")
    assert task.prompt(problems[0]).startswith("Question: Janet")


def test_the_shipped_gsm8k_is_found_from_any_working_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    task = registry.build("task", {"name": "gsm8k", "train_path": None, "test_path": None, "test_limit": None})
    train, test = task.problems("train"), task.problems("test")
    assert (len(train), len(test)) == (7473, 1319)
    assert test[0].question.startswith("Janet") and test[0].answer == "18"
    assert all(p.answer.lstrip("-").isdigit() for p in train + test)
    assert (SHIPPED / "LICENSE").read_text().startswith("MIT License")


def test_an_empty_path_also_means_the_shipped_file():
    task = GSM8KTask(GSM8KConfig(train_path="", test_path="  ", test_limit=2))
    assert task.path("train") == SHIPPED / "train.jsonl" and len(task.problems("test")) == 2


def test_user_paths_are_relative_to_the_working_directory(monkeypatch, tmp_path):
    (tmp_path / "mine.jsonl").write_text(json.dumps({"question": "What is 2+3?", "answer": "2+3=5\n#### 5"}) + "\n")
    monkeypatch.chdir(tmp_path)
    task = GSM8KTask(GSM8KConfig(train_path="mine.jsonl", test_path="mine.jsonl"))
    assert [p.answer for p in task.problems("train")] == ["5"]
    with pytest.raises(FileNotFoundError) as err:
        GSM8KTask(GSM8KConfig(train_path="nope.jsonl")).problems("train")
    where = f"(relative to the working directory {tmp_path})"
    assert str(err.value) == f"task 'gsm8k': train file not found: nope.jsonl {where}"


def test_limits_take_the_first_problems():
    task = GSM8KTask(GSM8KConfig(train_path=SAMPLE, test_path=SAMPLE, train_limit=1, test_limit=None))
    assert [p.id for p in task.problems("train")] == ["train-0"]
    assert len(task.problems("test")) == 3


@pytest.mark.parametrize(
    "text, expected",
    [
        # what instruct models write
        ("Janet sells 9 eggs at $2 each.\n**Answer:** $18", "18"),
        ("She makes 9 * 2 = \\boxed{18} dollars. Next, consider a farmer with 25 cows.", "18"),
        ("9 * 2 = 18\n#### 18\n\nQuestion: Tom has 5 apples and eats 2. How many are left?\nAnswer: 5 - 2 = 3\n#### 3",
         "18"),
        ("16 - 3 - 4 = 9 eggs, 9 * 2 = 18.\nThe final answer is $\\boxed{18}$", "18"),
        ("Adding them up gives the total. The answer is 1,234.", "1234"),
        ("She makes $18.00", "18"),
        ("The answer is $18.00.", "18"),
        ("Final Answer: The final answer is $18$. I hope it is correct.", "18"),
        ("**Answer:**\n\n$18", "18"),
        ("The answer is -$5.", "-5"),
        ("\\boxed{\\$1,000}", "1000"),
        ("\\boxed{18 \\text{ dollars}}", "18"),
        ("so 3 + 4 = 7\n#### 7", "7"),
        ("we get 12 then 15", "15"),  # no statement: the last number
        # no number at all
        ("no number here", None),
        ("The answer is unknown.", None),
        ("", None),
    ],
)
def test_answer_extraction(text, expected):
    assert extract_answer(text) == expected


def test_gold_answers_are_the_number_after_the_last_marker():
    assert gold_answer("steps\n#### 1,234") == "1234"
    assert gold_answer("a #### 3 mentioned\n#### 4") == "4"


def test_is_terminal_once_a_final_answer_is_stated():
    task = GSM8KTask(GSM8KConfig(train_path=SAMPLE, test_path=SAMPLE))
    for stated in ("#### 18", "**Answer:** $18", "so \\boxed{18}", "The final answer is $\\boxed{18}$",
                   "The answer is 1,234.", "**Answer:**\n$18"):
        assert task.is_terminal(stated), stated
    for unstated in ("9 * 2 = 18", "She makes $18.00", "Answer: Let's think step by step.", "**Answer:**\n",
                     "\\boxed{18", "The answer is unknown."):
        assert not task.is_terminal(unstated), unstated


def test_check_compares_numerically_with_math_verify():
    task = GSM8KTask(GSM8KConfig(train_path=SAMPLE, test_path=SAMPLE))
    problem = task.problems("test")[0]
    assert task.check(problem, "She makes 9 * 2 = 18 dollars.\n#### 18.0").correct
    assert task.check(problem, "**Answer:** $18.00\n\nQuestion: next\n#### 7").correct
    assert not task.check(problem, "#### 17").correct
    assert not task.check(problem, "I do not know").parsed
    verdict = task.check(problem, "The answer is 1,234.")
    assert (verdict.answer, verdict.parsed, verdict.correct) == ("1234", True, False)


def test_malformed_line_is_reported_with_its_number(tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = [json.dumps({"question": "q", "answer": "a\n#### 1"}), "{not json", ""]
    bad.write_text("\n".join(lines))
    with pytest.raises(ValueError, match="line 2"):
        GSM8KTask(GSM8KConfig(train_path=str(bad), test_path=str(bad))).problems("train")


def test_missing_field_names_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([json.dumps({"question": "q", "answer": "#### 1"}), json.dumps({"problem": "q"})]))
    with pytest.raises(ValueError) as err:
        GSM8KTask(GSM8KConfig(train_path=str(bad))).problems("train")
    message = str(err.value)
    assert message.startswith(f"task 'gsm8k': {bad} line 2 is malformed (missing field 'question');")
    assert "\n" not in message


@pytest.mark.parametrize(
    "values, message",
    [
        ({"test_limit": 0}, "task 'gsm8k': test_limit must be at least 1 or null (no limit), got 0"),
        ({"train_limit": -5}, "task 'gsm8k': train_limit must be at least 1 or null (no limit), got -5"),
        ({"max_new_tokens": 0}, "task 'gsm8k': max_new_tokens must be at least 1, got 0"),
        ({"prompt_template": "no question"}, "task 'gsm8k': prompt_template must contain {question}"),
        ({"prompt_template": "{question} {answer}"}, "task 'gsm8k': prompt_template is not a valid template"),
    ],
)
def test_config_values_are_checked(values, message):
    with pytest.raises(ValueError) as err:
        GSM8KConfig(**values)
    assert str(err.value).startswith(message)
    with pytest.raises(ValueError):  # also when the config comes from YAML through the registry
        registry.validate("task", {"name": "gsm8k", **values})
