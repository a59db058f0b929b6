"""Answer rules, the verifier rewarder, the outcome builders and the best_of_n search, with exact expectations."""

import pytest

from sisearch.data.outcome import CorrectSamples, CorrectSamplesConfig, OutcomePairs, OutcomePairsConfig
from sisearch.rewards.base import ScoreItem
from sisearch.rewards.orm import ORMConfig, ORMRewarder
from sisearch.search.answers import choose_answer
from sisearch.search.baselines import BestOfN, BestOfNConfig
from sisearch.search.scheduler import SearchContext, run_search
from sisearch.search.tree import Node, Tree, Verdict


def terminal(state: str, answer: str, correct: bool, value: float = 0.0) -> Node:
    return Node(step=state, state=state, terminal=True, value=value, verdict=Verdict(correct, answer))


def test_answer_rules_pick_by_value_by_count_and_by_summed_value():
    nodes = [terminal("a", "3", False, 0.9), terminal("b", "6", True, 0.5), terminal("c", "6", True, 0.3),
             terminal("d", "4", False, 0.7)]
    assert choose_answer(nodes, "highest_value") is nodes[0]
    assert choose_answer(nodes, "majority") is nodes[1]  # "6" twice; its best-valued node
    # weighted: "3" -> 0.9, "6" -> 0.8, "4" -> 0.7
    assert choose_answer(nodes, "weighted_vote") is nodes[0]
    assert choose_answer([], "majority") is None
    with pytest.raises(ValueError, match="highest_value, majority, weighted_vote"):
        choose_answer(nodes, "best")


def tree_with(*nodes: Node) -> Tree:
    tree = Tree("p1", "Q:1+1=?\n")
    for node in nodes:
        tree.root.add_child(node)
    return tree


def test_correct_samples_keeps_distinct_correct_solutions_up_to_the_cap():
    tree = tree_with(terminal("1+1=2\nA:2", "2", True), terminal("1+1=2\nA:2", "2", True),
                     terminal("1+1=3\nA:3", "3", False), terminal("1+1=2\nWait:1+1=2\nA:2", "2", True))
    records = CorrectSamples(CorrectSamplesConfig(max_per_problem=4)).build([tree], {}, seed=0)
    assert [r.completion for r in records] == ["1+1=2\nA:2", "1+1=2\nWait:1+1=2\nA:2"]
    assert all(r.prompt == "Q:1+1=?\n" and r.problem_id == "p1" for r in records)
    assert len(CorrectSamples(CorrectSamplesConfig(max_per_problem=1)).build([tree], {}, 0)) == 1


def test_outcome_pairs_need_both_a_correct_and_an_incorrect_solution():
    both = tree_with(terminal("1+1=2\nA:2", "2", True, 1.0), terminal("1+1=3\nA:3", "3", False, 0.0))
    only_right = tree_with(terminal("1+1=2\nA:2", "2", True))
    pairs = OutcomePairs(OutcomePairsConfig(pairs_per_problem=2)).build([both, only_right], {}, seed=0)
    assert len(pairs) == 1
    assert (pairs[0].chosen, pairs[0].rejected) == ("1+1=2\nA:2", "1+1=3\nA:3")
    assert (pairs[0].chosen_value, pairs[0].rejected_value) == (1.0, 0.0)
    assert (pairs[0].chosen_complete, pairs[0].rejected_complete, pairs[0].chosen_correct) == (True, True, True)


def test_outcome_pairs_append_no_eos_after_a_truncated_solution():
    cut = terminal("1+1=3\n1+1=3\n1+1", "", False)
    cut.metadata["truncated"] = True  # the token budget ended it, not the model
    (pair,) = OutcomePairs(OutcomePairsConfig()).build([tree_with(terminal("1+1=2\nA:2", "2", True), cut)], {}, 0)
    assert pair.rejected == cut.state and pair.chosen_complete and not pair.rejected_complete


def test_verifier_scores_and_strict_mode(arith_task):
    problem = arith_task.problems("test")[0]
    gold = problem.solution
    lucky = "\n".join(["0+0=0"] * len(gold.split("\n")[:-1]) + [f"A:{problem.answer}"])  # right answer, wrong steps
    items = [ScoreItem(problem, arith_task.prompt(problem), n) for n in (
        Node(state=gold, terminal=True), Node(state=lucky, terminal=True), Node(state="1+1=2\n"))]
    assert ORMRewarder(ORMConfig(), arith_task).score(items) == [1.0, 1.0, 0.0]
    assert ORMRewarder(ORMConfig(strict=True), arith_task).score(items) == [1.0, 0.0, 0.0]
    assert ORMRewarder(ORMConfig(), arith_task).uses_gold


def test_best_of_n_search_builds_scored_trees_and_counts_cost(arith_task, engine):
    problems = arith_task.problems("train")[:5]
    ctx = SearchContext(arith_task, engine, ORMRewarder(ORMConfig(), arith_task), progress=False)
    trees = run_search(BestOfN(BestOfNConfig(n=4)), problems, ctx)
    assert len(trees) == 5
    for problem, tree in zip(problems, trees):
        assert len(tree.root.children) == 4
        for child in tree.root.children:
            assert child.terminal and child.verdict is not None
            assert child.value == (1.0 if child.verdict.correct else 0.0)
        assert tree.cost.engine_calls == 1  # all five problems went out in one engine call
        assert tree.cost.generated_tokens == sum(c.num_tokens for c in tree.root.children)
        if tree.chosen is not None:
            assert tree.answer == tree.chosen.verdict.answer
    # the round trip keeps everything, the chosen link included
    again = Tree.from_json(trees[0].to_json())
    assert again.to_json() == trees[0].to_json()
