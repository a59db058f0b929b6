"""The one place that batches: drives every problem's search generator and merges their requests.

Each round, the pending requests of all problems are grouped by kind (and generation settings), sent to
the engine or rewarder as one call per group, and each answer is sent back into its generator.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sisearch.engines.base import Engine
from sisearch.progress import Bar, progress_task
from sisearch.search.base import Searcher
from sisearch.search.requests import Expand, Rollout, Score
from sisearch.search.tree import Cost, Tree
from sisearch.search.world import make_child, rollout_result
from sisearch.tasks.base import Problem, Task


@dataclass
class SearchContext:
    task: Task
    engine: Engine
    rewarder: Any  # sisearch.rewards.base.Rewarder (kept loose to avoid an import cycle)
    step_max_new_tokens: int = 32
    progress: bool = True


class Scheduler:
    def __init__(self, searcher: Searcher, ctx: SearchContext):
        self.searcher, self.ctx = searcher, ctx

    def run(self, problems: list[Problem]) -> list[Tree]:
        task = self.ctx.task
        trees = [Tree(problem_id=p.id, prompt=task.prompt(p)) for p in problems]
        gens = {i: self.searcher.search(p, trees[i]) for i, p in enumerate(problems)}
        pending: dict[int, Any] = {}
        with progress_task("search (problems)", total=len(problems), enabled=self.ctx.progress) as bar:
            for i in gens:
                self._advance(i, None, gens, pending, trees, bar)
            while pending:
                answers = self._dispatch(pending, problems, trees)
                current = dict(pending)
                pending.clear()
                for i in current:
                    self._advance(i, answers[i], gens, pending, trees, bar)
        return trees

    def _advance(self, i, answer, gens, pending, trees, bar: Bar) -> None:
        try:
            pending[i] = gens[i].send(answer)
        except StopIteration:
            self.searcher.finish(trees[i])
            bar.advance()

    def _dispatch(self, pending: dict[int, Any], problems: list[Problem], trees: list[Tree]) -> dict[int, Any]:
        # A list of requests is flattened into (problem, position) entries so that it is batched like the rest.
        flat: dict[tuple[int, int | None], Any] = {}
        for i, request in pending.items():
            if isinstance(request, list):
                flat.update({(i, j): r for j, r in enumerate(request)})
            else:
                flat[(i, None)] = request
        flat_problems = {key: problems[key[0]] for key in flat}
        flat_trees = {key: trees[key[0]] for key in flat}
        flat_answers = self._dispatch_flat(flat, flat_problems, flat_trees)
        answers: dict[int, Any] = {}
        for i, request in pending.items():
            if isinstance(request, list):
                answers[i] = [flat_answers[(i, j)] for j in range(len(request))]
            else:
                answers[i] = flat_answers[(i, None)]
        return answers

    def _dispatch_flat(self, pending: dict[Any, Any], problems: dict[Any, Problem], trees: dict[Any, Tree]) -> dict:
        answers: dict[Any, Any] = {}
        groups: dict[tuple, list[Any]] = defaultdict(list)
        for i, request in pending.items():
            if isinstance(request, Expand):
                key = ("expand", request.n, request.temperature, request.whole, request.max_new_tokens, request.segment)
                groups[key].append(i)
            elif isinstance(request, Rollout):
                groups[("rollout", request.n, request.temperature)].append(i)
            elif isinstance(request, Score):
                groups[("score",)].append(i)
            else:
                raise TypeError(
                    f"searcher yielded {type(request).__name__}; allowed: Expand, Score, Rollout or a list of them"
                )
        for key, members in groups.items():
            if key[0] == "score":
                self._score(members, pending, problems, trees, answers)
            else:
                self._generate(key, members, pending, problems, trees, answers)
        return answers

    def _generate(self, key, members, pending, problems, trees, answers) -> None:
        task, engine = self.ctx.task, self.ctx.engine
        kind, n, temperature = key[0], key[1], key[2]
        whole = kind == "rollout" or key[3]
        budget = key[4] if kind == "expand" and key[4] is not None else None
        if budget is None:
            budget = task.max_new_tokens if whole else self.ctx.step_max_new_tokens
        stop = None if whole else [task.step_delimiter]
        prompts = [trees[i].prompt + pending[i].node.state for i in members]
        outputs = engine.generate(prompts, n=n, max_new_tokens=budget, temperature=temperature, stop=stop)
        charged: set[int] = set()  # a tree counts one engine call per call, however many of its requests it held
        for i, samples in zip(members, outputs):
            tree = trees[i]
            calls = 0 if id(tree) in charged else 1
            charged.add(id(tree))
            cost = Cost(calls, samples[0].prompt_tokens if samples else 0, sum(s.num_tokens for s in samples))
            tree.cost.add(cost)
            node = pending[i].node
            if kind == "expand":
                answers[i] = [make_child(node, s, task, problems[i], whole=whole, segment=key[5]) for s in samples]
            else:
                answers[i] = [rollout_result(node, s, task, problems[i]) for s in samples]

    def _score(self, members, pending, problems, trees, answers) -> None:
        from sisearch.rewards.base import ScoreItem

        items, owners = [], []
        for i in members:
            for node in pending[i].nodes:
                items.append(ScoreItem(problems[i], trees[i].prompt, node))
                owners.append(i)
        scores = self.ctx.rewarder.score(items) if items else []
        for i in members:
            answers[i] = []
        for i, score in zip(owners, scores):
            answers[i].append(float(score))


def run_search(searcher: Searcher, problems: list[Problem], ctx: SearchContext) -> list[Tree]:
    return Scheduler(searcher, ctx).run(problems)
