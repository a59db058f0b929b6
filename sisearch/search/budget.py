"""Searching under a budget of generated tokens: problems go to the searcher a chunk at a time.

Recipes spend very different numbers of tokens per problem (best-of-8 about 240 on arith, move-by-move
MCTS about 80), so comparing them at equal `problems_per_iteration` is unfair. With a token budget, each
iteration searches problems in order until the budget is spent. The first chunk is a single problem, to
measure the rate: a whole first chunk could cost more than the budget (64 GSM8K problems at best-of-8 are
~130k tokens). Each next chunk holds as many problems as the remaining budget buys at the rate seen so far
(at most `chunk`), so the iteration overshoots by about one problem's worth of tokens.
"""

from __future__ import annotations

import math
from typing import Callable

from sisearch.progress import progress_task
from sisearch.search.tree import Tree
from sisearch.tasks.base import Problem


def next_chunk_size(remaining_tokens: float, tokens_per_problem: float, chunk: int) -> int:
    """Problems that `remaining_tokens` buys at `tokens_per_problem`, rounded up, between 1 and `chunk`."""
    if tokens_per_problem <= 0:
        return chunk
    return max(1, min(chunk, math.ceil(remaining_tokens / tokens_per_problem)))


def search_with_budget(
    search: Callable[[list[Problem]], list[Tree]], problems: list[Problem], budget: int | None, chunk: int,
    progress: bool = False,
) -> list[Tree]:
    """Search `problems` in order until `budget` generated tokens are spent (all of them when None).

    With a budget, `search` should show no progress bar of its own: this one counts tokens against the budget.
    """
    if budget is None:
        return search(problems)
    if budget < 1 or chunk < 1:
        raise ValueError(f"search_token_budget and search_chunk must be >= 1, got {budget} and {chunk}")
    trees: list[Tree] = []
    spent = 0
    with progress_task("search (generated tokens)", total=budget, enabled=progress, info="0 problems") as bar:
        while len(trees) < len(problems) and spent < budget:
            size = 1 if not trees else next_chunk_size(budget - spent, spent / len(trees), chunk)
            batch = search(problems[len(trees) : len(trees) + size])
            trees += batch
            spent += sum(t.cost.generated_tokens for t in batch)
            bar.update(completed=min(spent, budget), info=f"{len(trees)} problems")
    return trees


__all__ = ["next_chunk_size", "search_with_budget"]
