"""`ranked_lists` (TPO): several continuations of one prefix, each a list of steps, with scores.

At a branching node, each child opens one response: the child's step followed by the path to the best
finished solution in its subtree. The list is the flattened preference tree TPO trains on listwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sisearch.data.base import Builder
from sisearch.data.branches import best_terminal_path, branching_nodes, check_node_set, is_complete
from sisearch.data.records import register_record_type
from sisearch.registry import register
from sisearch.checks import require_at_least, require_choice, require_text
from sisearch.search.tree import Node, Tree
from sisearch.tasks.base import Problem

SCORE_RULES = ("q", "outcome")


@dataclass
class RankedList:
    """Responses to one context (`prompt`, which includes any shared solution prefix), best score first."""

    problem_id: str
    prompt: str
    responses: list[list[str]]  # each response as its steps (the step delimiter kept on each)
    scores: list[float]
    complete: list[bool]  # whether each response ends the solution (EOS is then scored)
    metadata: dict[str, Any] = field(default_factory=dict)
    # token-exact: the ids the engine read and sampled (None: the optimizer tokenizes the texts)
    prompt_ids: list[int] | None = None
    response_ids: list[list[int]] | None = None

    def __post_init__(self) -> None:
        if not (len(self.responses) == len(self.scores) == len(self.complete)):
            raise ValueError(
                f"ranked list for {self.problem_id}: {len(self.responses)} responses, {len(self.scores)} scores and "
                f"{len(self.complete)} completion flags; they must match"
            )


register_record_type("ranked_list", RankedList)


def split_text(text: str, delimiter: str) -> list[str]:
    """Steps of `text`, each keeping its delimiter (a searcher's node may hold several lines)."""
    parts = text.split(delimiter)
    steps = [p + delimiter for p in parts[:-1]]
    if parts[-1]:
        steps.append(parts[-1])
    return steps


@dataclass
class RankedListsConfig:
    name: str = "ranked_lists"
    nodes: str = "chosen_path"  # chosen_path | all: which branching nodes open a list
    score: str = "q"  # q (the branch's search value) | outcome (1 if its solution is verified correct, else 0)
    min_size: int = 2  # a branching node with fewer distinct responses opens no list
    max_size: int = 5  # TPO's lists hold 5 responses
    max_lists_per_tree: int = 4
    step_delimiter: str = "\n"  # splits a response into its steps
    # only responses that reach a finished solution: TPO ranks finished responses, and an unfinished branch
    # (Q 0) would outrank a finished wrong one (Q -1)
    require_complete: bool = True

    def __post_init__(self) -> None:
        check_node_set(self.nodes)
        require_choice("score", self.score, SCORE_RULES)
        if not 2 <= self.min_size <= self.max_size:
            raise ValueError(f"need 2 <= min_size <= max_size, got {self.min_size}, {self.max_size}")
        require_at_least(self, 1, "max_lists_per_tree")
        require_text(self, "step_delimiter")


@register("builder", "ranked_lists", schema=RankedListsConfig)
class RankedLists(Builder):
    produces = RankedList

    def __init__(self, cfg: RankedListsConfig):
        self.cfg = cfg

    def build(self, trees: list[Tree], problems: dict[str, Problem], seed: int) -> list[RankedList]:
        lists: list[RankedList] = []
        for tree in trees:
            taken = 0
            for node in branching_nodes(tree, self.cfg.nodes):
                if taken >= self.cfg.max_lists_per_tree:
                    break
                ranked = self.list_at(tree, node)
                if ranked is not None:
                    lists.append(ranked)
                    taken += 1
        return lists

    def score_of(self, child: Node, last: Node) -> float:
        if self.cfg.score == "q":
            return child.q
        return float(last.verdict is not None and last.verdict.correct)

    def list_at(self, tree: Tree, node: Node) -> RankedList | None:
        entries, seen = [], set()
        for child in node.children:
            path = best_terminal_path(child)
            if self.cfg.require_complete and not is_complete(path[-1]):
                continue
            text = "".join(n.step for n in path)
            if text in seen:
                continue
            seen.add(text)
            entries.append((self.score_of(child, path[-1]), text, is_complete(path[-1]), path_ids(tree, path)))
        if len(entries) < self.cfg.min_size or len({e[0] for e in entries}) < 2:
            return None  # no ordered pair to learn from
        entries.sort(key=lambda e: -e[0])  # stable: equal scores keep the tree's order
        entries = spread(entries, self.cfg.max_size)
        context_ids = node.state_ids() if tree.prompt_ids is not None else None
        exact = context_ids is not None and all(e[3] is not None for e in entries)
        return RankedList(
            problem_id=tree.problem_id,
            prompt=tree.prompt + node.state,
            responses=[split_text(text, self.cfg.step_delimiter) for _, text, _, _ in entries],
            scores=[s for s, _, _, _ in entries],
            complete=[c for _, _, c, _ in entries],
            metadata={"source": "ranked_lists", "depth": node.depth},
            prompt_ids=tree.prompt_ids + context_ids if exact else None,
            response_ids=[e[3] for e in entries] if exact else None,
        )


def path_ids(tree: Tree, path: list[Node]) -> list[int] | None:
    """The sampled token ids of a response (its nodes' ids in order), when the tree has them."""
    if tree.prompt_ids is None or any(n.step and not n.token_ids for n in path):
        return None
    return [t for n in path for t in n.token_ids]


def spread(items: list, size: int) -> list:
    """At most `size` items evenly spaced over a sorted list, always keeping the first and the last."""
    if len(items) <= size:
        return items
    picks = sorted({round(i * (len(items) - 1) / (size - 1)) for i in range(size)})
    return [items[i] for i in picks]


__all__ = ["RankedList", "RankedLists", "RankedListsConfig", "path_ids", "split_text", "spread"]
