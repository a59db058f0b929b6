"""Prompts: a task's messages rendered by the policy's chat template, or its plain template with few-shot."""

from __future__ import annotations

import copy

import pytest
from conftest import compose

from sisearch import registry
from sisearch.tasks.arith import ArithConfig, ArithTask
from sisearch.tasks.base import Problem
from sisearch.tasks.prompts import FewShot, PromptConfig

# A minimal ChatML-style template (the shape of SmolLM2's and Qwen's), so the expected text is exact.
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SHOT = FewShot(question="Q:1+2=?", solution="1+2=3\nA:3")
PROBLEM = Problem(id="p", question="Q:4+5=?", answer="9")


def arith(**prompt) -> ArithTask:
    return ArithTask(ArithConfig(train_size=4, test_size_per_difficulty=1, prompt=PromptConfig(**prompt)))


def test_plain_prompt_is_unchanged_without_few_shot():
    assert arith().prompt(PROBLEM) == "Q:4+5=?\n"


def test_plain_few_shot_examples_are_written_in_the_task_format_before_the_question():
    assert arith(few_shot=[SHOT]).prompt(PROBLEM) == "Q:1+2=?\n1+2=3\nA:3\n\nQ:4+5=?\n"


def test_chat_template_renders_system_few_shot_and_question_with_the_generation_prompt(tiny_policy):
    tokenizer = copy.deepcopy(tiny_policy.tokenizer)
    tokenizer.chat_template = CHATML
    task = arith(system="Be exact.", user_template="Solve {question}", few_shot=[SHOT])
    task.use_tokenizer(tokenizer)
    assert task.prompt(PROBLEM) == (
        "<|im_start|>system\nBe exact.<|im_end|>\n"
        "<|im_start|>user\nSolve Q:1+2=?<|im_end|>\n<|im_start|>assistant\n1+2=3\nA:3<|im_end|>\n"
        "<|im_start|>user\nSolve Q:4+5=?<|im_end|>\n<|im_start|>assistant\n"
    )
    plain = arith(format="plain")
    plain.use_tokenizer(tokenizer)  # plain is kept even when a template exists
    assert plain.prompt(PROBLEM) == "Q:4+5=?\n"


def test_auto_falls_back_to_plain_and_chat_without_a_template_is_refused(tiny_policy):
    task = arith()
    task.use_tokenizer(tiny_policy.tokenizer)  # tiny has no chat template
    assert task.prompt(PROBLEM) == "Q:4+5=?\n"
    with pytest.raises(ValueError, match="task 'arith': prompt.format is 'chat' but the policy's tokenizer has no chat"):
        arith(format="chat").use_tokenizer(tiny_policy.tokenizer)


def test_bad_prompt_settings_fail_in_validation_naming_the_task_and_the_allowed_values():
    with pytest.raises(registry.ConfigError, match=r"^task 'gsm8k': unknown prompt.format 'chatml'; allowed: auto, chat"):
        registry.validate("task", compose(["task=gsm8k", "task.prompt.format=chatml"]).task)
    with pytest.raises(registry.ConfigError, match="user_template must contain {question}"):
        registry.validate("task", compose(["task.prompt.user_template=hello"]).task)


def test_a_few_shot_solution_with_a_literal_backslash_n_from_the_command_line_is_refused():
    override = "task.prompt.few_shot=[{question: 'Q:7+5=?', solution: \"7+5=2\\nA:2\"}]"  # as typed in a shell
    with pytest.raises(registry.ConfigError, match=r"few_shot\[0\].solution has no line break but a literal '\\n'"):
        registry.validate("task", compose([override]).task)
    # LaTeX macros that start with \n are not line breaks; real line breaks are fine
    assert PromptConfig(few_shot=[FewShot("Q", r"$x \neq 2$ so \boxed{3}")]).few_shot
    assert PromptConfig(few_shot=[FewShot("Q", "1+2=3\nA:3")]).few_shot
