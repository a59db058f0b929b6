"""Labelled data for reward models, from the policy's own samples: outcome labels and Monte-Carlo step labels.

Math-Shepherd labels (rewards_rl.md §2): from each step prefix `s_h ⊕ a_h` draw `n` completions and check them
with the task; the hard label is "any correct", the soft label the fraction correct (`Q̂`). All prefixes of all
solutions go to the engine in one `generate` call.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Sequence


from sisearch.engines.base import Engine
from sisearch.progress import progress_task
from sisearch.rewards.heads import STEP_LABELS, HeadExample, HeadTrainConfig, RewardHead, train_head
from sisearch.rewards.scoring import monte_carlo_step_labels
from sisearch.search.tree import Tree
from sisearch.tasks.base import Problem, Task


@dataclass
class LabelledSolution:
    problem: Problem
    prompt: str
    text: str  # the solution after the prompt
    steps: list[str]
    correct: bool


@dataclass
class PrefixQuery:
    problem: Problem
    prompt: str
    state: str  # the solution so far (may be empty: roll out from the problem alone)


def train_problems(task: Task, count: int, seed: int) -> list[Problem]:
    pool = task.problems("train")
    return random.Random(seed).sample(pool, min(count, len(pool)))


def sample_solutions(task: Task, engine: Engine, problems: Sequence[Problem], n: int, temperature: float) -> list[LabelledSolution]:
    """`n` whole solutions per problem from the engine's policy, labelled by the task's checker."""
    prompts = [task.prompt(p) for p in problems]
    outputs = engine.generate(prompts, n=n, max_new_tokens=task.max_new_tokens, temperature=temperature)
    solutions = []
    for problem, prompt, samples in zip(problems, prompts, outputs):
        for s in samples:
            solutions.append(
                LabelledSolution(problem, prompt, s.text, task.split_steps(s.text), task.check(problem, s.text).correct)
            )
    return solutions


def solutions_from_trees(trees: Sequence[Tree], problems_by_id: dict[str, Problem], task: Task) -> list[LabelledSolution]:
    """Every finished solution in searched trees, with its verdict (deduplicated per problem)."""
    solutions, seen = [], set()
    for tree in trees:
        problem = problems_by_id[tree.problem_id]
        for node in tree.terminals():
            if (tree.problem_id, node.state) in seen:
                continue
            seen.add((tree.problem_id, node.state))
            verdict = node.verdict or task.check(problem, node.state)
            solutions.append(LabelledSolution(problem, tree.prompt, node.state, task.split_steps(node.state), verdict.correct))
    return solutions


def rollout_successes(
    task: Task, engine: Engine, queries: Sequence[PrefixQuery], n: int, temperature: float
) -> list[tuple[int, int]]:
    """(correct completions, n) for each prefix; finished prefixes are checked directly (no rollouts).

    Identical prefixes are rolled out once; the rest go to the engine in one call.
    """
    results: list[tuple[int, int] | None] = [None] * len(queries)
    unique: dict[tuple[str, str], list[int]] = {}
    for i, q in enumerate(queries):
        if q.state and task.is_terminal(q.state):
            results[i] = (n if task.check(q.problem, q.state).correct else 0, n)
        else:
            unique.setdefault((q.problem.id, q.prompt + q.state), []).append(i)
    if unique:
        firsts = [members[0] for members in unique.values()]
        prompts = [queries[i].prompt + queries[i].state for i in firsts]
        outputs = engine.generate(prompts, n=n, max_new_tokens=task.max_new_tokens, temperature=temperature)
        for members, first, samples in zip(unique.values(), firsts, outputs):
            q = queries[first]
            wins = sum(task.check(q.problem, q.state + s.text).correct for s in samples)
            for i in members:
                results[i] = (wins, n)
    return results  # type: ignore[return-value]


def outcome_examples(solutions: Sequence[LabelledSolution]) -> list[HeadExample]:
    return [
        HeadExample(s.prompt, s.steps, [1.0 if s.correct else 0.0], group=s.problem.id, outcome=float(s.correct))
        for s in solutions
        if s.steps
    ]


def step_examples(
    task: Task, engine: Engine, solutions: Sequence[LabelledSolution], labels: str, rollouts: int, temperature: float
) -> list[HeadExample]:
    """One target per step: Monte-Carlo soft/hard labels (rollouts from each prefix) or exact per-step truth."""
    if labels not in STEP_LABELS:
        raise ValueError(f"unknown step labels '{labels}'; allowed: {', '.join(STEP_LABELS)}")
    solutions = [s for s in solutions if s.steps]
    if labels == "exact":
        examples = []
        for s in solutions:
            truth = task.check_steps(s.problem, s.steps)
            if truth is None:
                raise ValueError(f"step labels 'exact' need a task with per-step truth; {type(task).__name__} has none")
            examples.append(HeadExample(s.prompt, s.steps, [float(t) for t in truth], s.problem.id, float(s.correct)))
        return examples
    if rollouts < 1:
        raise ValueError(f"Monte-Carlo step labels need rollouts >= 1, got {rollouts}")
    queries = [
        PrefixQuery(s.problem, s.prompt, "".join(s.steps[: h + 1])) for s in solutions for h in range(len(s.steps))
    ]
    counts = rollout_successes(task, engine, queries, rollouts, temperature)
    examples, k = [], 0
    for s in solutions:
        wins = [c[0] for c in counts[k : k + len(s.steps)]]
        totals = [c[1] for c in counts[k : k + len(s.steps)]]
        k += len(s.steps)
        hard, soft = monte_carlo_step_labels(wins, totals)
        targets = soft if labels == "mc_soft" else hard
        examples.append(HeadExample(s.prompt, s.steps, targets, s.problem.id, float(s.correct)))
    return examples


# ---------------------------------------------------------------------------------------------------------
# Getting a trained head for a rewarder: load it, or train it from the policy's own samples
# ---------------------------------------------------------------------------------------------------------

HEAD_CACHE = "~/.cache/sisearch/reward_heads"


def default_head_path(rewarder: str, kind: str, policy_path: str, task: Task, train_cfg: HeadTrainConfig) -> Path:
    """A cache location keyed by everything that decides what the head learns."""
    train = {k: v for k, v in asdict(train_cfg).items() if k != "progress"}
    task_cfg = getattr(task, "cfg", None)
    key = {
        "rewarder": rewarder,
        "kind": kind,
        "policy": str(Path(policy_path).expanduser().resolve()),
        "task": type(task).__name__,
        "task_cfg": asdict(task_cfg) if is_dataclass(task_cfg) else repr(task_cfg),
        "train": train,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(os.path.expanduser(HEAD_CACHE)) / f"{rewarder}-{digest}"


def training_examples(
    kind: str, task: Task, engine: Engine, cfg: HeadTrainConfig, solutions: Sequence[LabelledSolution] | None = None,
    rollout_engine: Engine | None = None,
) -> list[HeadExample]:
    """Examples for a head of `kind`: the given solutions, or fresh samples of the policy on train problems.

    Step labels from rollouts use `rollout_engine` (a prover) when given, else the policy's engine.
    """
    if solutions is None:
        problems = train_problems(task, cfg.problems, cfg.seed)
        engine.reseed(cfg.seed)
        solutions = sample_solutions(task, engine, problems, cfg.samples_per_problem, cfg.temperature)
    if kind == "outcome":
        return outcome_examples(solutions)
    return step_examples(task, rollout_engine or engine, solutions, cfg.labels, cfg.rollouts, cfg.temperature)


def fit_new_head(
    kind: str, task: Task, engine: Engine, cfg: HeadTrainConfig, solutions: Sequence[LabelledSolution] | None = None,
    rollout_engine: Engine | None = None,
) -> tuple[RewardHead, dict[str, float]]:
    """A head on a copy of the engine's policy, trained on labelled samples of that policy."""
    with progress_task(f"{kind} reward head", total=2, enabled=cfg.progress, info="sampling and labelling") as bar:
        examples = training_examples(kind, task, engine, cfg, solutions, rollout_engine)
        bar.update(advance=1, info="training")
        head = RewardHead.fresh(engine.policy, kind, cfg.dropout, task.step_delimiter)
        metrics = train_head(head, examples, cfg)
        bar.advance()
    metrics["train/examples"] = float(len(examples))
    head.meta.metrics = {k: float(v) for k, v in metrics.items()}
    return head, metrics


def obtain_head(
    rewarder: str, kind: str, path: str | None, train_if_missing: bool, cfg: HeadTrainConfig, task: Task,
    engine: Engine, rollout_engine: Engine | None = None,
) -> tuple[RewardHead, Path]:
    """Load the head at `path` (or the default cache path); if absent, train and save it, or explain how."""
    if engine is None:
        raise ValueError(f"rewarder '{rewarder}': a trained head needs the engine (its policy is the backbone)")
    target = Path(path).expanduser() if path else default_head_path(rewarder, kind, engine.policy.path, task, cfg)
    if (target / "head.safetensors").is_file():
        head = RewardHead.load(target, device=engine.policy.device)
        if head.meta.kind != kind:
            raise ValueError(f"rewarder '{rewarder}': {target} holds a '{head.meta.kind}' head, not a '{kind}' head")
        return head, target
    if not train_if_missing:
        raise FileNotFoundError(
            f"rewarder '{rewarder}': no trained head at {target}. Train one by running with "
            f"rewarder.train_if_missing=true (it trains on the policy's own samples and saves there), or call "
            f"sisearch.rewards.labelling.fit_new_head(...) and RewardHead.save(path), then set rewarder.path"
        )
    head, _ = fit_new_head(kind, task, engine, cfg, rollout_engine=rollout_engine)
    head.save(target)
    return head, target


def as_solutions(
    data: Sequence[LabelledSolution] | Sequence[Tree], task: Task, problems_by_id: dict[str, Problem] | None = None
) -> list[LabelledSolution]:
    """Labelled solutions from either labelled solutions or searched trees (whose finished nodes are used)."""
    data = list(data)
    if data and isinstance(data[0], Tree):
        if problems_by_id is None:
            raise ValueError("fitting on trees needs problems_by_id (the trees hold problem ids only)")
        return solutions_from_trees(data, problems_by_id, task)
    return data  # type: ignore[return-value]
