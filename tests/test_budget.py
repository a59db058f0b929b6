"""The per-iteration budget of generated tokens: chunk sizes by hand, a scripted search, and the loop."""

import pytest
from conftest import compose

from sisearch.loop import run
from sisearch.search.budget import next_chunk_size, search_with_budget
from sisearch.search.tree import Tree
from sisearch.tasks.base import Problem


def test_next_chunk_size_by_hand():
    assert next_chunk_size(1000, 100, 64) == 10  # exactly ten problems' worth
    assert next_chunk_size(1001, 100, 64) == 11  # rounded up: the budget is spent, not left over
    assert next_chunk_size(50, 100, 64) == 1  # at least one problem
    assert next_chunk_size(10_000, 100, 64) == 64  # at most one chunk
    assert next_chunk_size(500, 0, 8) == 8  # nothing spent so far: a whole chunk


def fake_search(tokens_per_problem: int, calls: list[int]):
    def search(problems: list[Problem]) -> list[Tree]:
        calls.append(len(problems))
        trees = [Tree(p.id, p.question) for p in problems]
        for tree in trees:
            tree.cost.generated_tokens = tokens_per_problem
        return trees

    return search


def test_search_stops_when_the_budget_is_spent():
    problems = [Problem(id=f"p{i}", question=f"q{i}", answer="0") for i in range(100)]
    calls: list[int] = []
    # 30 tokens a problem, budget 400: one problem to measure the rate (30), a whole chunk of 8 (270), then
    # ceil(130/30) = 5 more (420 >= 400)
    trees = search_with_budget(fake_search(30, calls), problems, budget=400, chunk=8)
    assert calls == [1, 8, 5]
    assert [t.problem_id for t in trees] == [f"p{i}" for i in range(14)]
    calls.clear()
    # a budget larger than all problems cost searches them all, chunk by chunk
    assert len(search_with_budget(fake_search(30, calls), problems[:20], budget=10_000, chunk=8)) == 20
    assert calls == [1, 8, 8, 3]
    calls.clear()
    # expensive problems: the rate is measured on one problem, so a budget below a chunk's cost is not overshot
    assert len(search_with_budget(fake_search(1000, calls), problems, budget=2500, chunk=64)) == 3
    assert calls == [1, 2]
    calls.clear()
    assert len(search_with_budget(fake_search(30, calls), problems[:20], budget=None, chunk=8)) == 20
    assert calls == [20]  # no budget: one batched search over every problem
    with pytest.raises(ValueError, match="search_token_budget"):
        search_with_budget(fake_search(30, calls), problems, budget=0, chunk=8)


def test_loop_searches_within_the_token_budget(tmp_path, small_run):
    cfg = compose(small_run + ["problems_per_iteration=64", "search_token_budget=300", "search_chunk=4", "searcher.n=2"])
    row = run(cfg, tmp_path)[-1]
    assert 300 <= row["search/generated_tokens"] < 300 + 4 * 2 * 40  # stops within one chunk of the budget
    assert row["search/problems"] < 64
    trees = (tmp_path / "iterations" / "iter_01" / "trees.jsonl").read_text().splitlines()
    assert len(trees) == row["search/problems"]
