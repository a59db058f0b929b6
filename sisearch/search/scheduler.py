"""The one place that batches: drives every problem's search generator and merges their requests.

Each round, the pending requests of all problems are grouped by their batch key (groups in the order they
first appear), each group goes to the engine or the rewarder as one call, and each answer is sent back into
its generator. What a sample does to a tree (the world-model step) lives in `world.py`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sisearch.engines.base import Engine
from sisearch.progress import Bar, progress_task
from sisearch.rewards.base import Rewarder, ScoreItem
from sisearch.search.base import SearchGenerator, Searcher
from sisearch.search.requests import BatchKey, Expand, GenerationKey, Request, Rollout, Score, ScoreKey
from sisearch.search.tree import Cost, Tree
from sisearch.search.world import make_child, rollout_result
from sisearch.tasks.base import Problem, Task


@dataclass
class SearchContext:
    task: Task
    engine: Engine
    rewarder: Rewarder
    step_max_new_tokens: int = 32  # token budget of one step (an Expand that is not whole)
    progress: bool = True


@dataclass(frozen=True)
class Slot:
    """Where an answer goes: problem `problem`'s request, or the one at `position` of the list it yielded."""

    problem: int
    position: int | None = None


class SearchRun:
    """The state of one scheduler run: each problem's tree and generator, the requests waiting for an answer
    and the progress bar."""

    def __init__(self, searcher: Searcher, problems: list[Problem], trees: list[Tree], bar: Bar):
        self.searcher, self.problems, self.trees, self.bar = searcher, problems, trees, bar
        self.generators: dict[int, SearchGenerator] = {i: searcher.search(p, trees[i]) for i, p in enumerate(problems)}
        self.pending: dict[int, Request | list[Request]] = {}

    def start(self) -> None:
        for i in self.generators:
            self.advance(i, None)

    def advance(self, i: int, answer: Any) -> None:
        """Send `answer` into problem i's generator and keep its next request; a finished search is finished."""
        try:
            self.pending[i] = self.generators[i].send(answer)
        except StopIteration:
            self.searcher.finish(self.trees[i])
            self.bar.advance()

    def requests(self) -> dict[Slot, Request]:
        """The pending requests, a yielded list flattened into its members so that they batch like the rest."""
        flat: dict[Slot, Request] = {}
        for i, request in self.pending.items():
            if isinstance(request, list):
                flat.update({Slot(i, j): r for j, r in enumerate(request)})
            else:
                flat[Slot(i)] = request
        return flat

    def answer(self, answers: dict[Slot, Any]) -> None:
        """Send every pending request its answer (a list's answers as a list), in the order they were asked."""
        current, self.pending = self.pending, {}
        for i, request in current.items():
            if isinstance(request, list):
                self.advance(i, [answers[Slot(i, j)] for j in range(len(request))])
            else:
                self.advance(i, answers[Slot(i)])


class Scheduler:
    def __init__(self, searcher: Searcher, ctx: SearchContext):
        self.searcher, self.ctx = searcher, ctx

    def run(self, problems: list[Problem]) -> list[Tree]:
        prompts = [self.ctx.task.prompt(p) for p in problems]
        trees = [Tree(problem_id=p.id, prompt=x, prompt_ids=self.ctx.engine.encode(x)) for p, x in zip(problems, prompts)]
        with progress_task("search (problems)", total=len(problems), enabled=self.ctx.progress) as bar:
            run = SearchRun(self.searcher, problems, trees, bar)
            run.start()
            while run.pending:
                run.answer(self._dispatch(run, run.requests()))
        return trees

    def _dispatch(self, run: SearchRun, requests: dict[Slot, Request]) -> dict[Slot, Any]:
        """One engine or rewarder call per batch key; the answer to each request."""
        groups: dict[BatchKey, list[Slot]] = defaultdict(list)
        for slot, request in requests.items():
            if not isinstance(request, (Expand, Rollout, Score)):
                raise TypeError(
                    f"searcher yielded {type(request).__name__}; allowed: Expand, Score, Rollout or a list of them"
                )
            groups[request.batch_key()].append(slot)
        answers: dict[Slot, Any] = {}
        for key, slots in groups.items():
            if isinstance(key, ScoreKey):
                answers.update(self._score(run, slots, requests))
            else:
                answers.update(self._generate(run, key, slots, requests))
        return answers

    def _generate(self, run: SearchRun, key: GenerationKey, slots: list[Slot], requests: dict[Slot, Any]) -> dict:
        task = self.ctx.task
        budget = key.max_new_tokens
        if budget is None:
            budget = task.max_new_tokens if key.whole else self.ctx.step_max_new_tokens
        stop = None if key.whole else [task.step_delimiter]
        prompts = [run.trees[slot.problem].context(requests[slot].node) for slot in slots]
        outputs = self.ctx.engine.generate(
            prompts, n=key.n, max_new_tokens=budget, temperature=key.temperature, stop=stop
        )
        answers: dict[Slot, Any] = {}
        charged: set[int] = set()  # a tree counts one engine call per call, however many of its requests it held
        for slot, samples in zip(slots, outputs):
            tree, problem, node = run.trees[slot.problem], run.problems[slot.problem], requests[slot].node
            calls = 0 if slot.problem in charged else 1
            charged.add(slot.problem)
            tree.cost.add(Cost(calls, samples[0].prompt_tokens if samples else 0, sum(s.num_tokens for s in samples)))
            if key.attach:
                answers[slot] = [
                    make_child(node, s, task, problem, whole=key.whole, segment=key.segment) for s in samples
                ]
            else:
                answers[slot] = [rollout_result(node, s, task, problem) for s in samples]
        return answers

    def _score(self, run: SearchRun, slots: list[Slot], requests: dict[Slot, Any]) -> dict:
        items, owners = [], []
        for slot in slots:
            for node in requests[slot].nodes:
                items.append(ScoreItem(run.problems[slot.problem], run.trees[slot.problem].prompt, node))
                owners.append(slot)
        scores = self.ctx.rewarder.score(items) if items else []
        answers: dict[Slot, list[float]] = {slot: [] for slot in slots}
        for slot, score in zip(owners, scores):
            answers[slot].append(float(score))
        return answers


def run_search(searcher: Searcher, problems: list[Problem], ctx: SearchContext) -> list[Tree]:
    return Scheduler(searcher, ctx).run(problems)
