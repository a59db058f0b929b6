"""The math task: the shipped sample, MATH-style JSONL with configurable fields, boxed gold answers,
answer extraction from what instruct models write, math-verify equivalence."""

import json

import pytest

from sisearch import registry
from sisearch.tasks.answers import boxed, last_boxed
from sisearch.tasks.math import SHIPPED_SAMPLE, MathConfig, MathTask, extract_answer


def write(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return str(path)


def test_the_shipped_sample_is_found_from_any_working_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    task = registry.build("task", {"name": "math"})
    problems = task.problems("test")
    train = task.problems("train")  # one sample serves both splits
    assert len(problems) == 12 and [p.question for p in train] == [p.question for p in problems]
    assert problems[1].answer == "\\frac{3}{4}" and problems[1].difficulty == "level_1"
    assert problems[1].metadata == {"level": "Level 1", "type": "Prealgebra"}
    assert problems[8].answer == "(-3,3)"  # from the record's `answer` field, not its box
    assert task.prompt(problems[0]) == (
        "Problem: What is the value of $3x - 7$ when $x = 5$?\n"
        "Solution: Let's think step by step, and put the final answer in \\boxed{}.\n"
    )
    # every reference solution is judged correct and terminal
    assert all(task.check(p, p.solution).correct and task.is_terminal(p.solution) for p in problems)
    assert SHIPPED_SAMPLE.is_file()


def test_gold_answer_is_the_last_box_with_balanced_braces():
    solution = "First $\\boxed{1}$ is wrong; the answer is $\\boxed{\\frac{\\sqrt{2}}{2}}$."
    assert last_boxed(solution) == "\\frac{\\sqrt{2}}{2}"
    assert last_boxed("the set $\\boxed{\\{1, 2\\}}$") == "\\{1, 2\\}"  # escaped braces do not count
    assert last_boxed("so $\\boxed 5$.") == "5"
    assert last_boxed("\\fbox{7}") == "7"
    assert last_boxed("\\boxed{\\frac{1}{2}") is None  # never closed
    assert boxed("a \\boxed{1} b \\boxed{2}") == [(2, "1"), (14, "2")]


def test_fields_are_configurable_and_difficulty_groups_follow_group_by(tmp_path):
    path = write(tmp_path / "mine.jsonl", [
        {"q": "1+1?", "sol": "It is $\\boxed{2}$.", "difficulty": "Level 5", "subject": "Intermediate Algebra"},
        {"q": "2+2?", "final": 4},  # an answer field, no solution; a JSON number is read as its text
    ])
    fields = dict(problem_field="q", solution_field="sol", answer_field="final", level_field="difficulty",
                  type_field="subject")
    task = MathTask(MathConfig(train_path=path, test_path=path, **fields))
    first, second = task.problems("test")
    assert (first.question, first.answer, first.difficulty) == ("1+1?", "2", "level_5")
    assert (second.answer, second.solution, second.difficulty) == ("4", None, "all")
    by_type = MathTask(MathConfig(train_path=path, test_path=path, group_by="type", **fields))
    assert [p.difficulty for p in by_type.problems("test")] == ["intermediate_algebra", "all"]
    overall = MathTask(MathConfig(train_path=path, test_path=path, group_by="none", **fields))
    assert {p.difficulty for p in overall.problems("test")} == {"all"}


def test_an_answer_field_in_math_mode_is_read_without_the_dollars(tmp_path):
    path = write(tmp_path / "a.jsonl", [{"problem": "p", "answer": "$\\frac{1}{2}$"}])
    assert MathTask(MathConfig(test_path=path)).problems("test")[0].answer == "\\frac{1}{2}"


@pytest.mark.parametrize(
    "record, detail",
    [
        ({"question": "p", "solution": "\\boxed{1}"}, "missing field 'problem'"),
        ({"problem": "p"}, "missing field 'solution' (needed when there is no 'answer')"),
        ({"problem": "p", "solution": "it is 1"}, "no \\boxed{...} answer in field 'solution' and no 'answer' field"),
        ({"problem": "p", "solution": "\\boxed{}"}, "no \\boxed{...} answer in field 'solution'"),
        ({"problem": ["p"], "solution": "\\boxed{1}"}, "field 'problem' must be a string, got list"),
        ('{"problem": "p", "solution": ', "Expecting value"),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path, record, detail):
    good = {"problem": "p", "solution": "\\boxed{1}"}
    path = write(tmp_path / "bad.jsonl", [good, "", good, record])
    with pytest.raises(ValueError) as err:
        MathTask(MathConfig(train_path=path)).problems("train")
    message = str(err.value)
    assert message.startswith(f"task 'math': {path} line 4 is malformed ({detail}")
    assert 'each line must be a JSON object {"problem": str, "solution": "... \\boxed{<answer>}"}' in message
    assert "\n" not in message


def test_renamed_fields_are_named_in_errors(tmp_path):
    path = write(tmp_path / "bad.jsonl", [{"problem": "p", "solution": "\\boxed{1}"}])
    with pytest.raises(ValueError, match="line 1 is malformed \\(missing field 'q'\\).*\\{\"q\": str"):
        MathTask(MathConfig(test_path=path, problem_field="q")).problems("test")


def test_limits_and_missing_files(tmp_path):
    task = MathTask(MathConfig(train_limit=3, test_limit=None))
    assert len(task.problems("train")) == 3 and len(task.problems("test")) == 12
    with pytest.raises(FileNotFoundError, match="task 'math': test file not found: "):
        MathTask(MathConfig(test_path=str(tmp_path / "none.jsonl"))).problems("test")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("**Answer:** $18", "18"),
        ("So the sum is \\boxed{18}. Next, a new problem: compute \\boxed{3}.", "18"),
        ("2 + 16 = 18\n#### 18\n\nProblem: What is 2 + 2?\n#### 4", "18"),
        ("The final answer is $\\boxed{18}$", "18"),
        ("The answer is 1,234.", "1,234"),
        ("The answer is $18.00.", "18.00"),
        ("Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.", "\\frac{1}{2}"),
        ("The answer is \\(\\dfrac{3}{4}\\), since the rest cancels.", "\\dfrac{3}{4}"),
        ("**Final Answer**\n\n\\[\\boxed{\\left( -3, 3 \\right)}\\]", "\\left( -3, 3 \\right)"),
        ("Thus $x = \\boxed{-\\sqrt{3}}$ and we are done.", "-\\sqrt{3}"),
        ("The answer is x = 3.", "x = 3"),
        ("The answer is B.", "B"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        # no final answer stated: no fallback to a stray number
        ("x^2 = 9 gives 3 and -3", None),
        ("The answer is not obvious.", None),
        ("\\boxed{\\frac{1}{2", None),
        ("", None),
    ],
)
def test_answer_extraction(text, expected):
    assert extract_answer(text) == expected


def test_is_terminal_agrees_with_extraction():
    task = MathTask(MathConfig())
    for text in ("so \\boxed{18}", "**Answer:** $18", "The final answer is $\\frac{1}{2}$.", "#### -3"):
        assert task.is_terminal(text) and extract_answer(text) is not None, text
    for text in ("x = 3, so", "\\boxed{\\frac{1}{2", "Answer: let us see.", "$18.00"):
        assert not task.is_terminal(text) and extract_answer(text) is None, text


@pytest.mark.parametrize(
    "gold, stated, correct",
    [
        ("\\frac{1}{2}", "The answer is $0.5$.", True),
        ("\\frac{3}{4}", "\\boxed{\\dfrac{3}{4}}", True),
        ("3/4", "\\boxed{\\dfrac{3}{4}}", True),
        ("\\frac{\\sqrt{2}}{2}", "\\boxed{\\frac{1}{\\sqrt{2}}}", True),
        ("-\\frac{1}{2}", "\\boxed{-0.5}", True),
        ("2\\sqrt{3}", "\\boxed{\\sqrt{12}}", True),
        ("(-3,3)", "\\boxed{\\left( -3, 3 \\right)}", True),
        ("3", "The answer is x = 3.", True),
        ("18", "**Answer:** $18.00", True),
        ("\\frac{1}{2}", "\\boxed{\\frac{1}{3}}", False),
        ("-3", "\\boxed{3}", False),
        ("\\sqrt{13}", "\\boxed{13}", False),
    ],
)
def test_check_uses_math_verify_equivalence(gold, stated, correct):
    task = MathTask(MathConfig())
    problem = task.problems("test")[0]
    problem = type(problem)(problem.id, problem.question, gold)
    verdict = task.check(problem, stated)
    assert verdict.parsed and verdict.correct is correct
    unparsed = task.check(problem, "I could not solve it.")
    assert (unparsed.parsed, unparsed.correct, unparsed.answer) == (False, False, None)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"test_limit": 0}, "task 'math': test_limit must be at least 1 or null (no limit), got 0"),
        ({"max_steps": 0}, "task 'math': max_steps must be at least 1, got 0"),
        ({"group_by": "subject"}, "task 'math': unknown group_by 'subject'; allowed: level, type, none"),
        ({"answer_field": " "}, "task 'math': answer_field must name a JSON field, got an empty string"),
        ({"prompt_template": "Solve: {problem}"}, "task 'math': prompt_template is not a valid template"),
    ],
)
def test_config_values_are_checked(values, message):
    with pytest.raises(ValueError) as err:
        MathConfig(**values)
    assert str(err.value).startswith(message)
    with pytest.raises(ValueError):
        registry.validate("task", {"name": "math", **values})
