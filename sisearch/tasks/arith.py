"""`arith`: generated chains of modular arithmetic with exact truth for every step.

A problem is `Q:7+5-9+3=?` and its solution writes one line per operation, carrying the running value,
then the answer:

    Q:7+5-9+3=?
    7+5=12
    12-9=3
    3+3=6
    A:6

All arithmetic is modulo `modulus` (23 by default, so a guessed answer is right 1 time in 23, about 4.3%).
A line `Wait:<step>` re-does the previous step; the tiny model's training data uses it for self-corrections.
Which questions are held out for testing depends only on the question text (a hash), never on the seed, so
no seed or training set of the tiny model ever sees a test question.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field

from sisearch.registry import register
from sisearch.search.tree import Verdict
from sisearch.tasks.base import Problem, Task, check_split
from sisearch.tasks.prompts import PromptConfig

OPS = ("+", "-")
ANSWER_PREFIX = "A:"
WAIT_PREFIX = "Wait:"
HELD_OUT_BUCKETS = 10  # one question in ten (by hash) is reserved for the test split


@dataclass
class ArithConfig:
    name: str = "arith"
    prompt: PromptConfig = field(default_factory=PromptConfig)  # chat or plain, system prompt, few-shot
    modulus: int = 10
    # Which operations a chain uses and the range of its numbers ([0, operand_max); null: the modulus).
    # `operators: ['+']` with a small operand_max and a modulus above every reachable sum is plain
    # small-number addition: the setting where a small pretrained model has headroom.
    operators: list[str] = field(default_factory=lambda: list(OPS))
    operand_max: int | None = None
    train_ops: list[int] = field(default_factory=lambda: [2, 3, 4, 5, 6])
    test_ops: list[int] = field(default_factory=lambda: [2, 4, 6])
    train_size: int = 4000
    test_size_per_difficulty: int = 100
    seed: int = 0


@dataclass(frozen=True)
class Chain:
    start: int
    ops: tuple[tuple[str, int], ...]
    modulus: int

    @property
    def question(self) -> str:
        return f"Q:{self.start}" + "".join(f"{op}{b}" for op, b in self.ops) + "=?"

    def values(self) -> list[int]:
        """The running value before the first operation and after each one."""
        values = [self.start]
        for op, b in self.ops:
            values.append(apply_op(values[-1], op, b, self.modulus))
        return values

    def gold_steps(self) -> list[str]:
        values = self.values()
        return [format_step(values[i], op, b, values[i + 1]) for i, (op, b) in enumerate(self.ops)]

    @property
    def answer(self) -> int:
        return self.values()[-1]


def apply_op(a: int, op: str, b: int, modulus: int) -> int:
    return (a + b) % modulus if op == "+" else (a - b) % modulus


def wraps(a: int, op: str, b: int, modulus: int) -> bool:
    """Whether the step crosses the modulus (the steps where the tiny model's misconception strikes)."""
    return a + b >= modulus if op == "+" else a - b < 0


def format_step(a: int, op: str, b: int, result: int) -> str:
    return f"{a}{op}{b}={result}"


def random_chain(
    rng: random.Random,
    num_ops: int,
    modulus: int,
    operators: tuple[str, ...] = OPS,
    operand_max: int | None = None,
) -> Chain:
    high = modulus if operand_max is None else operand_max
    start = rng.randrange(high)
    ops = tuple((rng.choice(operators), rng.randrange(high)) for _ in range(num_ops))
    return Chain(start, ops, modulus)


def is_held_out(question: str) -> bool:
    return zlib.crc32(question.encode()) % HELD_OUT_BUCKETS == 0


def parse_question(question: str, modulus: int) -> Chain:
    body = question.strip()
    if not (body.startswith("Q:") and body.endswith("=?")):
        raise ValueError(f"not an arith question: {question!r}")
    expr = body[2:-2]
    numbers, ops, current = [], [], ""
    for char in expr:
        if char in OPS:
            numbers.append(int(current))
            ops.append(char)
            current = ""
        else:
            current += char
    numbers.append(int(current))
    return Chain(numbers[0], tuple(zip(ops, numbers[1:])), modulus)


def written_solution(
    chain: Chain, rng: random.Random, misconception_rate: float = 0.0, self_correction_rate: float = 0.0
) -> str:
    """A solution as a student with a systematic misconception writes it.

    At a step that wraps around the modulus, the written result is one too large with probability
    `misconception_rate`, and later steps carry the wrong value on. After such a slip, with probability
    `self_correction_rate`, a `Wait:` line redoes the step correctly and the chain continues from there.
    """
    lines, value = [], chain.start
    for op, b in chain.ops:
        true = apply_op(value, op, b, chain.modulus)
        written = true
        if wraps(value, op, b, chain.modulus) and rng.random() < misconception_rate:
            written = (true + 1) % chain.modulus
        lines.append(format_step(value, op, b, written))
        if written != true and rng.random() < self_correction_rate:
            lines.append(WAIT_PREFIX + format_step(value, op, b, true))
            written = true
        value = written
    lines.append(f"{ANSWER_PREFIX}{value}")
    return "\n".join(lines)


def step_labels(chain: Chain, steps: list[str]) -> list[bool]:
    """Per-step truth: after each step, is the solution still on a path to the right answer?

    A normal step is right when it is the next gold line and everything before it was on track. A `Wait:`
    line is right when it rewrites the previous operation correctly from an on-track state, which puts the
    solution back on track. The answer line is right when it states the gold answer.
    """
    gold = chain.gold_steps()
    labels: list[bool] = []
    done = 0  # operations written so far
    on_track = True
    on_track_before_last = True
    for raw in steps:
        line = raw.strip()
        if line.startswith(ANSWER_PREFIX):
            labels.append(line[len(ANSWER_PREFIX):].strip() == str(chain.answer))
        elif line.startswith(WAIT_PREFIX):
            redo = line[len(WAIT_PREFIX):].strip()
            # (a Wait: after more operations than the chain has redoes none of its steps)
            ok = 1 <= done <= len(gold) and on_track_before_last and redo == gold[done - 1]
            on_track = ok
            labels.append(ok)
        else:
            ok = on_track and done < len(gold) and line == gold[done]
            on_track_before_last = on_track
            on_track = ok
            done += 1
            labels.append(ok)
    return labels


def extract_answer(solution: str) -> str | None:
    for line in reversed(solution.strip().split("\n")):
        line = line.strip()
        if line.startswith(ANSWER_PREFIX):
            return line[len(ANSWER_PREFIX):].strip()
    return None


@register("task", "arith", schema=ArithConfig)
class ArithTask(Task):
    step_delimiter = "\n"

    def __init__(self, cfg: ArithConfig):
        self.prompt_cfg = cfg.prompt
        if cfg.modulus < 2:
            raise ValueError(f"task 'arith': modulus must be at least 2, got {cfg.modulus}")
        for key in ("train_ops", "test_ops"):
            ops = getattr(cfg, key)
            if not ops or min(ops) < 1:
                raise ValueError(f"task 'arith': {key} must list operation counts of at least 1, got {ops}")
        if cfg.train_size < 1 or cfg.test_size_per_difficulty < 1:
            raise ValueError("task 'arith': train_size and test_size_per_difficulty must be at least 1")
        bad = sorted(set(cfg.operators) - set(OPS))
        if not cfg.operators or bad:
            raise ValueError(f"task 'arith': operators must be a non-empty subset of {list(OPS)}, got {cfg.operators}")
        if cfg.operand_max is not None and not 1 <= cfg.operand_max <= cfg.modulus:
            raise ValueError(
                f"task 'arith': operand_max must be between 1 and the modulus ({cfg.modulus}) or null, "
                f"got {cfg.operand_max}"
            )
        self.cfg = cfg
        longest = max(cfg.train_ops + cfg.test_ops)
        self.chance_rate = 1.0 / self._possible_answers(longest)
        digits = len(str(cfg.modulus - 1))
        # Each line is at most `a op b = c` plus a newline; allow one self-correction per step.
        self.max_new_tokens = (2 * longest + 1) * (3 * digits + 3) + digits + 4
        self.max_steps = 2 * longest + 1
        self._cache: dict[str, list[Problem]] = {}

    def _possible_answers(self, longest: int) -> int:
        """How many answers a chain can have: all residues, unless additions of small numbers stay below."""
        if self.cfg.operand_max is None or "-" in self.cfg.operators:
            return self.cfg.modulus
        return min(self.cfg.modulus, (longest + 1) * (self.cfg.operand_max - 1) + 1)

    def problems(self, split: str) -> list[Problem]:
        check_split(split)
        if split not in self._cache:
            self._cache[split] = self._generate(split)
        return self._cache[split]

    def _generate(self, split: str) -> list[Problem]:
        rng = random.Random(f"arith-{split}-{self.cfg.seed}")
        held_out = split == "test"
        if held_out:
            plan = [(ops, self.cfg.test_size_per_difficulty) for ops in self.cfg.test_ops]
        else:
            plan = [(None, self.cfg.train_size)]
        problems: list[Problem] = []
        seen: set[str] = set()
        for ops, count in plan:
            made, attempts = 0, 0
            while made < count:
                attempts += 1
                if attempts > 200 * count:
                    raise ValueError(
                        f"task 'arith': could not draw {count} distinct {split} problems with "
                        f"{ops if ops is not None else '/'.join(map(str, self.cfg.train_ops))} operations "
                        f"modulo {self.cfg.modulus}; lower the size or raise the modulus"
                    )
                num_ops = ops if ops is not None else rng.choice(self.cfg.train_ops)
                chain = random_chain(
                    rng, num_ops, self.cfg.modulus, tuple(self.cfg.operators), self.cfg.operand_max
                )
                question = chain.question
                if question in seen or is_held_out(question) != held_out:
                    continue
                seen.add(question)
                problems.append(self._problem(chain, split, len(problems)))
                made += 1
        return problems

    def _problem(self, chain: Chain, split: str, index: int) -> Problem:
        return Problem(
            id=f"{split}-{index}",
            question=chain.question,
            answer=str(chain.answer),
            difficulty=f"ops_{len(chain.ops)}",
            solution="\n".join(chain.gold_steps() + [f"{ANSWER_PREFIX}{chain.answer}"]),
        )

    def chain(self, problem: Problem) -> Chain:
        return parse_question(problem.question, self.cfg.modulus)

    def plain_prompt(self, question: str) -> str:
        return question + "\n"

    def check(self, problem: Problem, solution: str) -> Verdict:
        answer = extract_answer(solution)
        return Verdict(correct=answer == problem.answer, answer=answer, parsed=answer is not None)

    def check_steps(self, problem: Problem, steps: list[str]) -> list[bool]:
        return step_labels(self.chain(problem), steps)

    def is_terminal(self, solution: str) -> bool:
        return extract_answer(solution) is not None
