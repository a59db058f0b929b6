"""Reading sibling branches out of a searched tree: the shared helpers of the step-level builders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from sisearch.checks import require_choice
from sisearch.search.tree import Node, Tree

NODE_SETS = ("chosen_path", "all")
T = TypeVar("T")


@dataclass
class Branch:
    """One child of a branching node, with the text a preference is expressed on."""

    node: Node  # the child itself (its q, visits and value describe the branch)
    text: str  # the child's step plus any forced continuation
    last: Node  # the node the text ends at
    complete: bool  # whether the text ends the solution (EOS is then part of what is scored)
    ids: list[int] | None = None  # the text's sampled token ids (None where unknown)


def is_complete(node: Node) -> bool:
    # A truncated generation did not end the solution; scoring EOS after it would teach a false stop.
    return node.terminal and not node.metadata.get("truncated", False)


def branch(child: Node, extend: bool) -> Branch:
    """The child's step, extended through a chain of only-children when `extend` (MCTS-DPO's candidate text)."""
    text, last, nodes = child.step, child, [child]
    while extend and len(last.children) == 1:
        last = last.children[0]
        text += last.step
        nodes.append(last)
    known = all(n.token_ids or not n.step for n in nodes)
    ids = [t for n in nodes for t in n.token_ids] if known else None
    return Branch(child, text, last, is_complete(last), ids)


def check_node_set(which: str) -> None:
    require_choice("node set", which, NODE_SETS)


def branching_nodes(tree: Tree, which: str) -> list[Node]:
    """Nodes with at least two children, shallow first: on the chosen trajectory, or anywhere in the tree.

    The chosen trajectory is the committed one where the searcher commits move by move (MCTS-DPO),
    else the path from the root to the tree's chosen solution.
    """
    check_node_set(which)
    if which == "chosen_path":
        committed = committed_path(tree)
        if committed:
            nodes = [tree.root, *committed]
        elif tree.chosen is not None:
            nodes = [tree.root, *tree.chosen.path()]
        else:
            return []
    else:
        nodes = sorted(tree.root.walk(), key=lambda n: n.depth)  # stable: pre-order within a depth
    return [n for n in nodes if len(n.children) >= 2]


def committed_path(tree: Tree) -> list[Node]:
    """The trajectory a move-by-move searcher committed to (children marked `metadata["committed"]`)."""
    path, node = [], tree.root
    while True:
        nxt = next((c for c in node.children if c.metadata.get("committed")), None)
        if nxt is None:
            return path
        path.append(nxt)
        node = nxt


def ends_correct(node: Node) -> bool:
    """Whether `node` ends a finished, not truncated solution that the task verified correct."""
    return is_complete(node) and node.verdict is not None and node.verdict.correct


def chosen_is_correct(tree: Tree) -> bool:
    """Whether the committed trajectory (if it finished) or else the chosen solution is verified correct and
    was not cut by the token budget (MCTS-DPO's `check_available`)."""
    committed = committed_path(tree)
    end = committed[-1] if committed and committed[-1].terminal else tree.chosen
    return end is not None and ends_correct(end)


def split_common_prefix(a: Sequence[T], b: Sequence[T]) -> tuple[Sequence[T], Sequence[T], Sequence[T]]:
    """(shared prefix, rest of a, rest of b) of two texts or token-id lists, leaving at least one element
    (character or token) on each side.

    Tokens before the first difference have identical contexts in both sequences, so their log-ratios
    cancel in the DPO margin; moving them into the prompt makes the scored suffix exactly the difference.
    """
    limit = min(len(a), len(b)) - 1
    k = 0
    while k < limit and a[k] == b[k]:
        k += 1
    return a[:k], a[k:], b[k:]


def best_terminal_path(child: Node) -> list[Node]:
    """From `child` down to its best finished descendant (by q, then value), or its forced chain if none."""
    terminals = [n for n in child.walk() if n.terminal]
    if not terminals:
        chain = [child]
        while len(chain[-1].children) == 1:
            chain.append(chain[-1].children[0])
        return chain
    best = max(terminals, key=lambda n: (n.q, n.value))
    path = best.path()
    return path[path.index(child):]
