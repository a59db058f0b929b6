"""What a searcher asks the scheduler for. The scheduler batches requests with equal batch keys across all
problems: one engine call per generation key, one rewarder call for every Score of a round."""

from __future__ import annotations

from dataclasses import dataclass

from sisearch.search.tree import Node, Verdict


@dataclass(frozen=True, kw_only=True)
class GenerationKey:
    """The settings of one engine call; generation requests with equal keys share it."""

    attach: bool  # Expand: the samples become children of the node; Rollout: they are only returned
    n: int
    temperature: float
    whole: bool  # to the end of the solution, else one step (up to the task's step delimiter)
    max_new_tokens: int | None  # None: the task's budget (whole) or the searcher's step budget
    segment: bool  # an open segment: only EOS finishes it (see Expand)


@dataclass(frozen=True)
class ScoreKey:
    """Every Score request of a round goes into one rewarder call."""


@dataclass
class Expand:
    """Generate `n` continuations of `node` and attach them as its children; answered with the new children.

    With `whole=True` each continuation runs to the end of the solution (one child per sample); otherwise
    each child is one step, ending at the task's step delimiter.
    """

    node: Node
    n: int
    temperature: float = 1.0
    whole: bool = False
    max_new_tokens: int | None = None  # None: the task's budget (whole) or the searcher's step budget
    # With whole=True: a continuation cut by the token budget is an open segment, not a finished solution
    # (iterative deepening appends to it); only EOS ends it.
    segment: bool = False

    def batch_key(self) -> GenerationKey:
        return GenerationKey(
            attach=True, n=self.n, temperature=self.temperature, whole=self.whole,
            max_new_tokens=self.max_new_tokens, segment=self.segment,
        )


@dataclass
class Score:
    """Score `nodes` with the rewarder; answered with one float per node."""

    nodes: list[Node]

    def batch_key(self) -> ScoreKey:
        return ScoreKey()


@dataclass
class Rollout:
    """Complete the solution from `node` `n` times without attaching anything; answered with RolloutResults."""

    node: Node
    n: int
    temperature: float = 1.0

    def batch_key(self) -> GenerationKey:
        return GenerationKey(
            attach=False, n=self.n, temperature=self.temperature, whole=True, max_new_tokens=None, segment=False
        )


@dataclass
class RolloutResult:
    text: str  # the continuation after node.state
    verdict: Verdict
    num_tokens: int
    logprob: float


Request = Expand | Score | Rollout
BatchKey = GenerationKey | ScoreKey
# A searcher may also yield a list of requests (e.g. expand every beam at once); the answer is the list of
# their answers in the same order, and the list's requests are batched with everyone else's.
