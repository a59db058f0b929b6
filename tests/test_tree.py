"""The shared tree: lossless JSON round trip (hand-built and searched trees) and the HTML view."""

from __future__ import annotations

import json

from test_searchers import search

from sisearch.search import puct
from sisearch.search.mcts import MCTS, MCTSConfig
from sisearch.search.render import load_tree, main, render_html
from sisearch.search.tree import Cost, Node, Tree, Verdict


def hand_tree() -> Tree:
    root = Node(visits=3, metadata={"V": 0.5})
    a = root.add_child(Node(step="3+4=7\n", state="3+4=7\n", prior_logprob=-0.25, num_tokens=6, value=0.5,
                            visits=2, reward=0.5, q=1.25, metadata={"lookahead": 0.75, "rollouts": [{"text": "A:7"}]}))
    done = a.add_child(Node(step="A:7", state="3+4=7\nA:7", prior_logprob=-0.5, num_tokens=4, value=2.0, visits=2,
                            reward=1.5, q=1.5, terminal=True, verdict=Verdict(True, "7", True)))
    root.add_child(Node(step="A:<b>", state="A:<b>", terminal=True, verdict=Verdict(False, None, False),
                        metadata={"truncated": True}))
    return Tree(problem_id="p0", prompt="Q:3+4=?\n", root=root, answer="7", chosen=done, cost=Cost(3, 30, 14),
                metadata={"committed_depth": 2})


def test_json_round_trip_is_lossless():
    tree = hand_tree()
    text = tree.to_json()
    back = Tree.from_json(text)
    assert back.to_json() == text
    assert back.root == tree.root  # every field of every node, recursively
    assert back.chosen is back.root.children[0].children[0] and back.chosen.parent is back.root.children[0]
    assert back.cost == Cost(3, 30, 14) and back.metadata == {"committed_depth": 2}
    assert back.root.children[1].verdict == Verdict(False, None, False)
    assert [n.depth for n in back.nodes()] == [0, 1, 2, 1]
    assert back.chosen.steps() == ["3+4=7\n", "A:7"]


def test_searched_tree_round_trip_keeps_search_statistics():
    script = {"": ["x\n", "A:2$"]}
    tree, _, _ = search(MCTS(MCTSConfig(simulations=2, commit=False, depth_limit=None)), script, {"x\n": 0.5, "A:2": 1.0})
    back = Tree.from_json(tree.to_json())
    assert back.to_json() == tree.to_json()
    assert back.root.metadata[puct.V_KEY] == tree.root.metadata[puct.V_KEY]
    assert [c.visits for c in back.root.children] == [0, 2]
    assert back.answer == "2" and back.chosen.state == "A:2"


def test_render_html_shows_steps_statistics_and_chosen_path(tmp_path):
    tree = hand_tree()
    page = render_html(tree)
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page  # self-contained, no scripts
    assert "3+4=7\\n" in page and "A:7" in page  # the steps (newlines shown as \n)
    assert "A:&lt;b&gt;" in page  # step text is escaped
    assert "Q=1.25 N=2" in page and "&#10003;" in page and "&#10007;" in page
    assert page.count('class="chosen"') == 2  # the chosen path: 3+4=7 and A:7
    assert "lookahead=0.75" in page

    path = tmp_path / "trees.jsonl"
    path.write_text(hand_tree().to_json() + "\n" + json.dumps(Tree("p1", "Q:1+1=?\n").to_dict()) + "\n")
    assert load_tree(path, 1).problem_id == "p1"
    out = tmp_path / "view.html"
    assert main([str(path), "--index", "0", "--out", str(out)]) == 0
    assert "3+4=7" in out.read_text()
    assert main([str(path), "--index", "1"]) == 0
    assert (tmp_path / "trees-1.html").is_file()
    assert main([str(path), "--index", "5"]) == 2  # out of range: a clear error, no traceback
