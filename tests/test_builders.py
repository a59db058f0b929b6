"""Step-level builders on hand-built trees, with exact expected records."""

from __future__ import annotations

import pytest

from sisearch import registry
from sisearch.data.correction_traces import CorrectionTrace, CorrectionTraces, CorrectionTracesConfig
from sisearch.data.ranked_lists import RankedList, RankedLists, RankedListsConfig, spread, split_text
from sisearch.data.records import PreferencePair, read_records, write_records
from sisearch.data.step_pairs import AdvantagePairs, AdvantagePairsConfig, StepPairs, StepPairsConfig
from sisearch.search.tree import Node, Tree, Verdict

PROMPT = "Q:1+2+3=?\n"


def child(parent: Node, step: str, q: float, visits: int = 1, terminal: bool = False, correct: bool | None = None,
          **metadata) -> Node:
    node = Node(step=step, state=parent.state + step, q=q, value=q, visits=visits, terminal=terminal,
                verdict=None if correct is None else Verdict(correct, step[2:] if step.startswith("A:") else None),
                metadata=dict(metadata))
    return parent.add_child(node)


def searched_tree() -> tuple[Tree, dict[str, Node]]:
    """
    root
     ├ a  "1+2=3\\n"  q  0.8  N 5
     │  ├ a1  "3+3=6\\n" q  0.9 N 3 ─ a1x "A:6" q  1.0 (correct, terminal)   <- chosen
     │  └ a2  "3+3=7\\n" q -0.5 N 2 ─ a2x "A:7" q -1.0 (wrong, terminal)
     ├ b  "1+2=4\\n"  q -0.6  N 2
     │  ├ b1  "4+3=7\\n" q -0.6 N 1
     │  └ b2  "4+3=8\\n" q -0.7 N 1
     └ c  "1+2=3\\n"  q  0.2  N 1   (same text as a)
    """
    tree = Tree("p1", PROMPT)
    n: dict[str, Node] = {}
    n["a"] = child(tree.root, "1+2=3\n", 0.8, 5)
    n["a1"] = child(n["a"], "3+3=6\n", 0.9, 3)
    n["a1x"] = child(n["a1"], "A:6", 1.0, 1, terminal=True, correct=True)
    n["a2"] = child(n["a"], "3+3=7\n", -0.5, 2)
    n["a2x"] = child(n["a2"], "A:7", -1.0, 1, terminal=True, correct=False)
    n["b"] = child(tree.root, "1+2=4\n", -0.6, 2)
    n["b1"] = child(n["b"], "4+3=7\n", -0.6, 1)
    n["b2"] = child(n["b"], "4+3=8\n", -0.7, 1)
    n["c"] = child(tree.root, "1+2=3\n", 0.2, 1)
    tree.chosen = n["a1x"]
    return tree, n


def as_tuples(pairs: list[PreferencePair]):
    return [
        (p.prompt, p.chosen, p.rejected, p.chosen_value, p.rejected_value, p.chosen_visits, p.rejected_visits,
         p.chosen_complete, p.rejected_complete)
        for p in pairs
    ]


# --------------------------------------------------------------------------------------------------
# step_pairs
# --------------------------------------------------------------------------------------------------


def test_step_pairs_on_the_chosen_path():
    tree, _ = searched_tree()
    pairs = StepPairs(StepPairsConfig()).build([tree], {}, seed=0)
    assert as_tuples(pairs) == [
        # root: best a (0.8) vs worst b (-0.6); c has a's text and is skipped. Shared "1+2=" joins the prompt.
        (PROMPT + "1+2=", "3\n", "4\n", 0.8, -0.6, 5, 2, False, False),
        # a: a1 runs on through its only child to the answer, so both candidates end the solution.
        (PROMPT + "1+2=3\n3+3=", "6\nA:6", "7\nA:7", 0.9, -0.5, 3, 2, True, True),
    ]
    assert all(p.problem_id == "p1" for p in pairs)
    assert [p.metadata["depth"] for p in pairs] == [0, 1]
    # only the second chosen side ends in a verified-correct solution (the first is a bare step)
    assert [p.chosen_correct for p in pairs] == [False, True]


def test_step_pairs_options():
    tree, n = searched_tree()
    untrimmed = StepPairs(StepPairsConfig(trim_common_prefix=False, max_pairs_per_tree=1)).build([tree], {}, 0)
    assert as_tuples(untrimmed) == [(PROMPT, "1+2=3\n", "1+2=4\n", 0.8, -0.6, 5, 2, False, False)]

    unextended = StepPairs(StepPairsConfig(extend_only_children=False)).build([tree], {}, 0)
    assert [(p.chosen, p.rejected, p.chosen_complete) for p in unextended][1] == ("6\n", "7\n", False)

    everywhere = StepPairs(StepPairsConfig(nodes="all")).build([tree], {}, 0)
    # the off-path node b adds b1 (-0.6) vs b2 (-0.7), after the two depth-0/1 pairs above
    assert as_tuples(everywhere)[2] == (PROMPT + "1+2=4\n4+3=", "7\n", "8\n", -0.6, -0.7, 1, 1, False, False)
    assert len(everywhere) == 3

    # both gaps are 1.4: a larger required gap leaves nothing
    assert StepPairs(StepPairsConfig(min_q_gap=1.5)).build([tree], {}, 0) == []
    # the MCTS-DPO filter keeps a tree only when its chosen solution is right
    assert len(StepPairs(StepPairsConfig(require_correct=True)).build([tree], {}, 0)) == 2
    n["a1x"].metadata["truncated"] = True  # right answer, but cut by the token budget: not available
    assert StepPairs(StepPairsConfig(require_correct=True)).build([tree], {}, 0) == []
    del n["a1x"].metadata["truncated"]
    tree.chosen = n["a2x"]
    assert StepPairs(StepPairsConfig(require_correct=True)).build([tree], {}, 0) == []
    # a tree without a chosen solution has no committed path
    tree.chosen = None
    assert StepPairs(StepPairsConfig()).build([tree], {}, 0) == []


def test_step_pairs_random_rejection_draws_only_worse_distinct_siblings():
    tree = Tree("p2", PROMPT)
    child(tree.root, "1+2=3\n", 0.9)
    child(tree.root, "1+2=3\n", 0.1)  # same text as the best: never a rejected candidate
    child(tree.root, "1+2=5\n", 0.0)
    child(tree.root, "1+2=6\n", -0.2)
    child(tree.root, "1+2=9\n", 0.9)  # equal Q: not worse, so no preference
    tree.chosen = tree.root.children[0]
    rejected = {StepPairs(StepPairsConfig(rejected="random")).build([tree], {}, s)[0].rejected for s in range(30)}
    assert rejected == {"5\n", "6\n"}


def test_step_pairs_cap_and_bad_config():
    tree, _ = searched_tree()
    assert len(StepPairs(StepPairsConfig(nodes="all", max_pairs_per_tree=2)).build([tree], {}, 0)) == 2
    with pytest.raises(ValueError, match="worst, random"):  # the schema refuses it
        StepPairsConfig(rejected="best")
    with pytest.raises(ValueError, match="chosen_path, all"):
        StepPairsConfig(nodes="leaves")


# --------------------------------------------------------------------------------------------------
# advantage_pairs
# --------------------------------------------------------------------------------------------------


def test_advantage_pairs_threshold_and_solution_scale():
    tree, _ = searched_tree()
    pairs = AdvantagePairs(AdvantagePairsConfig()).build([tree], {}, seed=0)
    assert as_tuples(pairs) == [
        # root: every (i, j) with Q_i > 0 > Q_j and different text: (a, b) and (c, b)
        (PROMPT + "1+2=", "3\n", "4\n", 0.8, -0.6, 5, 2, False, False),
        (PROMPT + "1+2=", "3\n", "4\n", 0.2, -0.6, 1, 2, False, False),
        # a: both children end the solution -> only (argmax, argmin), Q scaled by 0.3
        (PROMPT + "1+2=3\n3+3=", "6\nA:6", "7\nA:7", pytest.approx(0.27), pytest.approx(-0.15), 3, 2, True, True),
        # b: no child above the threshold -> nothing
    ]
    assert [p.metadata["q_gap"] for p in pairs] == [pytest.approx(1.4), pytest.approx(0.8), pytest.approx(0.42)]


def test_advantage_pairs_caps_keep_the_largest_gaps():
    tree, _ = searched_tree()
    one = AdvantagePairs(AdvantagePairsConfig(max_pairs_per_node=1)).build([tree], {}, 0)
    assert [(p.chosen_value, p.rejected_value) for p in one][0] == (0.8, -0.6)
    assert len(one) == 2
    assert len(AdvantagePairs(AdvantagePairsConfig(max_pairs_per_tree=1)).build([tree], {}, 0)) == 1
    # a threshold of 0.5 leaves only a (0.8) above it at the root; at a, 0.9 > 0.5 > -0.5
    high = AdvantagePairs(AdvantagePairsConfig(threshold=0.5, solution_scale=1.0)).build([tree], {}, 0)
    assert [(p.chosen_value, p.rejected_value) for p in high] == [(0.8, -0.6), (0.9, -0.5)]


# --------------------------------------------------------------------------------------------------
# ranked_lists
# --------------------------------------------------------------------------------------------------


def test_ranked_lists_keep_finished_responses_by_default():
    tree, _ = searched_tree()
    # at the root only a reaches a finished solution, so the root opens no list; at a both children finish
    (at_a,) = RankedLists(RankedListsConfig()).build([tree], {}, 0)
    assert at_a.prompt == PROMPT + "1+2=3\n"
    assert at_a.responses == [["3+3=6\n", "A:6"], ["3+3=7\n", "A:7"]]
    assert at_a.scores == [0.9, -0.5]


def test_ranked_lists_by_q():
    tree, _ = searched_tree()
    lists = RankedLists(RankedListsConfig(require_complete=False)).build([tree], {}, 0)
    assert len(lists) == 2
    root, at_a = lists
    assert root.prompt == PROMPT
    # a continues to its best finished solution; b and c have none, so they stop (incomplete)
    assert root.responses == [["1+2=3\n", "3+3=6\n", "A:6"], ["1+2=3\n"], ["1+2=4\n"]]
    assert root.scores == [0.8, 0.2, -0.6]
    assert root.complete == [True, False, False]
    assert at_a.prompt == PROMPT + "1+2=3\n"
    assert at_a.responses == [["3+3=6\n", "A:6"], ["3+3=7\n", "A:7"]]
    assert at_a.scores == [0.9, -0.5]
    assert at_a.complete == [True, True]


def test_ranked_lists_by_outcome_and_size_cap():
    tree, _ = searched_tree()
    root = RankedLists(RankedListsConfig(score="outcome", max_lists_per_tree=1, require_complete=False)).build([tree], {}, 0)
    assert len(root) == 1
    # a's solution is right (1); b and c never finish (0), kept in tree order
    assert root[0].scores == [1.0, 0.0, 0.0]
    assert root[0].responses == [["1+2=3\n", "3+3=6\n", "A:6"], ["1+2=4\n"], ["1+2=3\n"]]
    capped = RankedLists(RankedListsConfig(max_size=2, require_complete=False)).build([tree], {}, 0)[0]
    assert capped.scores == [0.8, -0.6]  # the best and the worst survive the cap
    # a list needs min_size responses and two distinct scores
    assert RankedLists(RankedListsConfig(min_size=3, require_complete=False)).build([tree], {}, 0)[0].scores == [0.8, 0.2, -0.6]
    flat = Tree("p3", PROMPT)
    child(flat.root, "1+2=3\n", 0.5)
    child(flat.root, "1+2=4\n", 0.5)
    flat.chosen = flat.root.children[0]
    assert RankedLists(RankedListsConfig()).build([flat], {}, 0) == []


def test_spread_and_split_text():
    assert spread(list(range(8)), 5) == [0, 2, 4, 5, 7]
    assert spread([1, 2], 5) == [1, 2]
    assert split_text("1+2=3\n3+3=6\nA:6", "\n") == ["1+2=3\n", "3+3=6\n", "A:6"]
    assert split_text("1+2=3\n", "\n") == ["1+2=3\n"]
    with pytest.raises(ValueError, match="must match"):
        RankedList("p", PROMPT, [["x"]], [1.0, 0.0], [True])


# --------------------------------------------------------------------------------------------------
# correction_traces
# --------------------------------------------------------------------------------------------------


def solutions_tree(verdicts: list[bool]) -> Tree:
    tree = Tree("p4", PROMPT)
    for i, ok in enumerate(verdicts):
        answer = 6 if ok else 7 + i
        child(tree.root, f"1+2=3\n3+3={answer}\nA:{answer}", 1.0 if ok else 0.0, terminal=True, correct=ok)
    return tree


def test_correction_traces_pair_each_attempt_with_a_correct_one():
    tree = solutions_tree([True, False, False])
    traces = CorrectionTraces(CorrectionTracesConfig(traces_per_problem=3)).build([tree], {}, 0)
    right, wrong1, wrong2 = (c.state for c in tree.root.children)
    got = sorted((t.first_attempt, t.second_attempt, t.first_reward, t.second_reward) for t in traces)
    assert got == sorted([(right, right, 1.0, 1.0), (wrong1, right, 0.0, 1.0), (wrong2, right, 0.0, 1.0)])
    t = traces[0]
    assert t.correction == "\n" + PROMPT
    assert t.second_prompt == PROMPT + t.first_attempt + "\n" + PROMPT
    assert len(CorrectionTraces(CorrectionTracesConfig(traces_per_problem=2)).build([tree], {}, 0)) == 2


def test_correction_traces_without_a_correct_solution():
    tree = solutions_tree([False, False])
    traces = CorrectionTraces(CorrectionTracesConfig(traces_per_problem=2, correction_prompt="\nWait:")).build([tree], {}, 1)
    a, b = (c.state for c in tree.root.children)
    assert sorted((t.first_attempt, t.second_attempt) for t in traces) == sorted([(a, b), (b, a)])
    assert all(t.first_reward == t.second_reward == 0.0 and t.correction == "\nWait:" for t in traces)
    assert CorrectionTraces(CorrectionTracesConfig()).build([Tree("p5", PROMPT)], {}, 0) == []


def test_new_record_types_round_trip_through_jsonl(tmp_path):
    tree, _ = searched_tree()
    records = RankedLists(RankedListsConfig(require_complete=False)).build([tree], {}, 0)
    records += CorrectionTraces(CorrectionTracesConfig()).build([solutions_tree([True, False])], {}, 0)
    path = tmp_path / "data.jsonl"
    write_records(path, records)
    back = read_records(path)
    assert back == records
    assert {type(r) for r in back} == {RankedList, CorrectionTrace}


def test_step_pairs_follow_a_committed_trajectory():
    # A move-by-move searcher marks its committed nodes; that trajectory beats the chosen solution's path.
    tree, n = searched_tree()
    n["b"].metadata["committed"] = True
    n["b1"].metadata["committed"] = True
    pairs = StepPairs(StepPairsConfig()).build([tree], {}, 0)
    assert [(p.chosen, p.rejected, p.metadata["depth"]) for p in pairs] == [("3\n", "4\n", 0), ("7\n", "8\n", 1)]
    # the committed trajectory did not finish, so the filter falls back to the chosen solution (correct)
    assert len(StepPairs(StepPairsConfig(require_correct=True)).build([tree], {}, 0)) == 2


# --------------------------------------------------------------------------------------------------
# every builder's schema
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg,message",
    [
        ({"name": "step_pairs", "rejected": "best"}, "unknown rejected rule 'best'; allowed: worst, random"),
        ({"name": "step_pairs", "min_q_gap": -0.1}, "min_q_gap must be at least 0, got -0.1"),
        ({"name": "advantage_pairs", "max_pairs_per_node": 0}, "max_pairs_per_node must be at least 1, got 0"),
        ({"name": "advantage_pairs", "solution_scale": 0}, "solution_scale must be > 0, got 0.0"),
        ({"name": "advantage_pairs", "nodes": "leaves"}, "unknown node set 'leaves'; allowed: chosen_path, all"),
        ({"name": "ranked_lists", "score": "v"}, "unknown score 'v'; allowed: q, outcome"),
        ({"name": "ranked_lists", "min_size": 6}, "need 2 <= min_size <= max_size, got 6, 5"),
        ({"name": "ranked_lists", "step_delimiter": ""}, "step_delimiter must not be empty"),
        ({"name": "correction_traces", "traces_per_problem": 0}, "traces_per_problem must be at least 1, got 0"),
        ({"name": "correction_traces", "correction_prompt": ""}, "correction_prompt must not be empty"),
    ],
)
def test_builder_schemas_refuse_bad_values_before_anything_is_built(cfg, message):
    with pytest.raises(registry.ConfigError) as err:
        registry.validate("builder", cfg)
    assert str(err.value) == f"builder '{cfg['name']}': {message}"  # the component named once
