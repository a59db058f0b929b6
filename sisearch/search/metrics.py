"""What an iteration's search found and spent, as `search/*` metrics."""

from __future__ import annotations

from sisearch.search.tree import Tree


def search_metrics(trees: list[Tree], seconds: float) -> dict[str, float]:
    terminals = [n for tree in trees for n in tree.terminals()]
    correct = [n for n in terminals if n.verdict and n.verdict.correct]
    solved = [tree for tree in trees if any(n.verdict and n.verdict.correct for n in tree.terminals())]
    chosen_right = [t for t in trees if t.chosen is not None and t.chosen.verdict and t.chosen.verdict.correct]
    return {
        "search/seconds": seconds,
        "search/problems": float(len(trees)),
        "search/solutions": float(len(terminals)),
        "search/solution_accuracy": len(correct) / max(1, len(terminals)),
        "search/coverage": len(solved) / max(1, len(trees)),
        "search/answer_accuracy": len(chosen_right) / max(1, len(trees)),
        "search/generated_tokens": float(sum(t.cost.generated_tokens for t in trees)),
        "search/prompt_tokens": float(sum(t.cost.prompt_tokens for t in trees)),
        "search/engine_calls": float(sum(t.cost.engine_calls for t in trees)),
    }
