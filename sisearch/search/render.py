"""`sisearch-tree PATH [--index i] [--out file.html]`: render a searched tree as one self-contained HTML page.

Each node shows its step text, Q, visits, value and, for finished solutions, the verdict; the chosen path is
highlighted and the prompt, answer and cost head the page. No scripts or external files: `<details>`
elements fold the subtrees, so the page works offline in any browser.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path

from sisearch.search.tree import Node, Tree

STYLE = """
body { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; margin: 1.5em; color: #222; }
h1 { font-size: 16px; } .meta { color: #555; margin-bottom: 1em; white-space: pre-wrap; }
details { margin-left: 1.4em; border-left: 1px dotted #bbb; padding-left: 0.5em; }
summary { cursor: pointer; padding: 1px 0; }
.step { white-space: pre; background: #f4f4f4; padding: 0 3px; border-radius: 3px; }
.stats { color: #666; margin-left: 0.6em; }
.chosen > summary .step { background: #ffe58a; font-weight: bold; }
.right { color: #1a7f37; font-weight: bold; } .wrong { color: #c62828; font-weight: bold; }
.tag { color: #6a4c93; margin-left: 0.4em; }
"""


def load_tree(path: Path, index: int) -> Tree:
    """The `index`-th tree (0-based) of a trees.jsonl file."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path}: no trees in this file")
    if not 0 <= index < len(lines):
        raise IndexError(f"{path}: tree index {index} out of range; the file holds {len(lines)} trees (0..{len(lines) - 1})")
    return Tree.from_dict(json.loads(lines[index]))


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _node_html(node: Node, on_path: set[int], is_root: bool) -> str:
    step = "(root)" if is_root else html.escape(repr(node.step)[1:-1])
    stats = f"Q={_fmt(node.q)} N={node.visits} v={_fmt(node.value)} r={_fmt(node.reward)} tok={node.num_tokens}"
    verdict = ""
    if node.verdict is not None:
        mark, cls = ("&#10003;", "right") if node.verdict.correct else ("&#10007;", "wrong")
        verdict = f' <span class="{cls}">{mark} {html.escape(str(node.verdict.answer))}</span>'
    tags = "".join(
        f'<span class="tag">[{html.escape(str(k))}={html.escape(json.dumps(v))}]</span>'
        for k, v in sorted(node.metadata.items())
        if isinstance(v, (bool, int, float, str)) and k != "V"
    )
    cls = ' class="chosen"' if id(node) in on_path else ""
    opened = " open" if is_root or id(node) in on_path or len(node.children) <= 3 else ""
    inner = "".join(_node_html(c, on_path, False) for c in node.children)
    return (
        f"<details{cls}{opened}><summary><span class=\"step\">{step}</span>"
        f'<span class="stats">{stats}</span>{verdict}{tags}</summary>{inner}</details>'
    )


def render_html(tree: Tree) -> str:
    """The whole page for `tree`."""
    on_path = {id(n) for n in tree.chosen.path()} if tree.chosen is not None else set()
    nodes = tree.nodes()
    finished = [n for n in nodes if n.terminal]
    right = sum(1 for n in finished if n.verdict and n.verdict.correct)
    meta = (
        f"prompt: {tree.prompt!r}\nanswer: {tree.answer}\n"
        f"nodes: {len(nodes)}  finished: {len(finished)} ({right} right)\n"
        f"cost: {tree.cost.engine_calls} engine calls, {tree.cost.prompt_tokens} prompt tokens, "
        f"{tree.cost.generated_tokens} generated tokens"
    )
    title = html.escape(f"sisearch tree {tree.problem_id}")
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title><style>{STYLE}</style></head>"
        f"<body><h1>{title}</h1><div class=\"meta\">{html.escape(meta)}</div>"
        f"{_node_html(tree.root, on_path, True)}</body></html>\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sisearch-tree", description="Render a searched tree as an HTML page.")
    parser.add_argument("path", type=Path, help="a trees.jsonl file written by the loop")
    parser.add_argument("--index", type=int, default=0, help="which tree of the file (0-based, default 0)")
    parser.add_argument("--out", type=Path, default=None, help="output file (default: <path stem>-<index>.html)")
    args = parser.parse_args(argv)
    try:
        tree = load_tree(args.path, args.index)
    except (OSError, ValueError, IndexError) as err:
        print(f"sisearch-tree: {err}", file=sys.stderr)
        return 2
    out = args.out or args.path.with_name(f"{args.path.stem}-{args.index}.html")
    out.write_text(render_html(tree), encoding="utf-8")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
