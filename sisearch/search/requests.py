"""What a searcher asks the scheduler for. The scheduler batches each kind across all problems."""

from __future__ import annotations

from dataclasses import dataclass

from sisearch.search.tree import Node, Verdict


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


@dataclass
class Score:
    """Score `nodes` with the rewarder; answered with one float per node."""

    nodes: list[Node]


@dataclass
class Rollout:
    """Complete the solution from `node` `n` times without attaching anything; answered with RolloutResults."""

    node: Node
    n: int
    temperature: float = 1.0


@dataclass
class RolloutResult:
    text: str  # the continuation after node.state
    verdict: Verdict
    num_tokens: int
    logprob: float


Request = Expand | Score | Rollout
# A searcher may also yield a list of requests (e.g. expand every beam at once); the answer is the list of
# their answers in the same order, and the list's requests are batched with everyone else's.
