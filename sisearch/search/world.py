"""The world-model step: what a sampled continuation does to a solution (llm-reasoners' `WorldModel.step`).

A searcher only asks for continuations; the task says what one means. The new state is the old one plus
the sampled text, the task decides whether that finishes the solution, and a finished solution gets the
task's verdict. The scheduler applies these functions to each engine answer; they know nothing of batching.
"""

from __future__ import annotations

from sisearch.engines.base import Sample
from sisearch.search.requests import RolloutResult
from sisearch.search.tree import Node
from sisearch.tasks.base import Problem, Task


def make_child(
    parent: Node, sample: Sample, task: Task, problem: Problem, *, whole: bool, segment: bool = False
) -> Node:
    """Attach `sample` to `parent` as a new child: its state, whether it finishes the solution, and its verdict.

    A step finishes the solution at EOS, at a final answer, when the token budget cut it, at the task's step
    cap, or when it was asked for whole. An open segment of a longer solution (`segment`) ends only at EOS.
    """
    state = parent.state + sample.text
    depth = parent.depth + 1
    truncated = sample.finish_reason == "length"
    if segment:
        terminal = sample.finish_reason == "eos"
        truncated = False
    else:
        terminal = (
            sample.finish_reason == "eos" or task.is_terminal(state) or truncated or depth >= task.max_steps or whole
        )
    ids = sample.token_ids[:-1] if sample.finish_reason == "eos" else sample.token_ids  # text has no EOS either
    child = Node(
        step=sample.text,
        state=state,
        prior_logprob=sample.logprob,
        num_tokens=sample.num_tokens,
        token_ids=list(ids),
        terminal=terminal,
        verdict=task.check(problem, state) if terminal else None,
    )
    if truncated:
        child.metadata["truncated"] = True
    return parent.add_child(child)


def rollout_result(node: Node, sample: Sample, task: Task, problem: Problem) -> RolloutResult:
    """A completion of the solution from `node`, judged by the task and not attached to the tree."""
    return RolloutResult(sample.text, task.check(problem, node.state + sample.text), sample.num_tokens, sample.logprob)
