"""`correction_traces` (SCoRe): a first attempt, the correction prompt, a second attempt, both rewards.

From a searched tree's finished solutions: each drawn first attempt is paired with a second attempt that is
a verified-correct solution where the tree has one (a different text where possible), else another attempt.
The `score` optimizer samples its own attempts on-policy from these problems; the offline traces serve as
extra first attempts (SCoRe's "first attempts from the base model") and as a record of the search.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from sisearch.data.base import Builder
from sisearch.data.outcome import finished
from sisearch.data.records import register_record_type
from sisearch.registry import register
from sisearch.checks import require_at_least, require_text
from sisearch.search.tree import Node, Tree
from sisearch.tasks.base import Problem

PROMPT_FIELD = "{prompt}"


@dataclass
class CorrectionTrace:
    """Turn 1 is `prompt` -> `first_attempt`; turn 2 is `prompt + first_attempt + correction` -> `second_attempt`."""

    problem_id: str
    prompt: str
    first_attempt: str
    correction: str
    second_attempt: str
    first_reward: float
    second_reward: float
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def second_prompt(self) -> str:
        return self.prompt + self.first_attempt + self.correction


register_record_type("correction_trace", CorrectionTrace)


def correction_text(template: str, prompt: str) -> str:
    """The correction instruction; `{prompt}` in the template stands for the task prompt (a re-asked question)."""
    return template.replace(PROMPT_FIELD, prompt)


@dataclass
class CorrectionTracesConfig:
    name: str = "correction_traces"
    # Appended after the first attempt; `{prompt}` stands for the task prompt. The default re-asks the question,
    # which the tiny model (trained only on `Q:...=?` prompts) can answer; a real model would get an
    # instruction such as SCoRe's.
    correction_prompt: str = "\n{prompt}"
    traces_per_problem: int = 2  # first attempts drawn per tree, each with its second attempt

    def __post_init__(self) -> None:
        require_at_least(self, 1, "traces_per_problem")
        require_text(self, "correction_prompt")


@register("builder", "correction_traces", schema=CorrectionTracesConfig)
class CorrectionTraces(Builder):
    produces = CorrectionTrace

    def __init__(self, cfg: CorrectionTracesConfig):
        self.cfg = cfg

    def build(self, trees: list[Tree], problems: dict[str, Problem], seed: int) -> list[CorrectionTrace]:
        rng = random.Random(seed)
        traces: list[CorrectionTrace] = []
        for tree in trees:
            correct, incorrect = finished(tree)
            attempts = correct + incorrect
            if not attempts:
                continue
            correction = correction_text(self.cfg.correction_prompt, tree.prompt)
            for first in rng.sample(attempts, min(self.cfg.traces_per_problem, len(attempts))):
                second = pick_second(first, correct, incorrect, rng)
                traces.append(
                    CorrectionTrace(
                        problem_id=tree.problem_id,
                        prompt=tree.prompt,
                        first_attempt=first.state,
                        correction=correction,
                        second_attempt=second.state,
                        first_reward=reward(first),
                        second_reward=reward(second),
                        metadata={"source": "correction_traces"},
                    )
                )
        return traces


def reward(node: Node) -> float:
    return float(node.verdict is not None and node.verdict.correct)


def pick_second(first: Node, correct: list[Node], incorrect: list[Node], rng: random.Random) -> Node:
    """A correct solution other than `first` if any, else `first` itself if correct, else another attempt."""
    for pool in (correct, incorrect):
        others = [n for n in pool if n is not first]
        if others:
            return rng.choice(others)
        if any(n is first for n in pool):
            return first
    return first
