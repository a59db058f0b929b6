"""Exact hand numbers for the searchers' pure math: PUCT, MCTS-DPO values and backup, commitment,
beam pruning, look-ahead values and iterative-deepening budgets."""

import math
import random

import pytest

from sisearch.search import puct
from sisearch.search.beam import prune
from sisearch.search.best_first import best_index, lookahead_value
from sisearch.search.iterative_deepening import segment_budgets, trigger_positions
from sisearch.search.tree import Node


def test_step_prior_is_length_penalised_probability():
    # 4^1.25 = 4 * sqrt(2), so -4 / 4^1.25 = -1/sqrt(2)
    assert puct.step_prior(-4.0, 4, 1.25) == pytest.approx(math.exp(-1 / math.sqrt(2)))
    assert puct.step_prior(-2.0, 4, 1.0) == pytest.approx(math.exp(-0.5))
    assert puct.step_prior(-0.7, 0, 1.25) == pytest.approx(math.exp(-0.7))  # empty step counts as one token


def test_puct_score():
    assert puct.puct_score(q=0.5, prior=0.5, parent_visits=4, visits=1, c_puct=1.0) == pytest.approx(1.0)
    assert puct.puct_score(q=0.0, prior=1.0, parent_visits=9, visits=2, c_puct=2.0) == pytest.approx(2.0)
    assert puct.puct_score(q=-1.0, prior=1.0, parent_visits=0, visits=0, c_puct=1.0) == pytest.approx(-1.0)


def test_node_value_combines_outcome_and_damped_step_score():
    kw = dict(outcome="score", outcome_weight=1.0, step_weight=1.0, damp_after=3, inherit_on_zero=True)
    # the old rule (O = 2s - 1): right answer at parent depth 5: O = +1, C' = 1 / max(5 - 3, 1) = 0.5
    at = dict(parent_value=0.25, parent_depth=5)
    assert puct.node_value(1.0, terminal=True, **at, **kw) == pytest.approx(1.5)
    assert puct.node_value(0.0, terminal=True, **at, **kw) == pytest.approx(-1.0)  # wrong: O = -1, C' = 0
    assert puct.node_value(0.0, terminal=False, **at, **kw) == pytest.approx(0.25)  # no evidence: inherit
    assert puct.node_value(0.0, terminal=False, **at, **{**kw, "inherit_on_zero": False}) == 0.0
    # unfinished, step weight 0.5, shallow (no damping yet): 0.5 * 0.8
    assert puct.node_value(
        0.8, terminal=False, parent_value=0.0, parent_depth=2,
        outcome="score", outcome_weight=1.0, step_weight=0.5, damp_after=3, inherit_on_zero=True,
    ) == pytest.approx(0.4)
    # outcome weight 2, step weight 0: 2 * (2 * 0.75 - 1)
    assert puct.node_value(
        0.75, terminal=True, parent_value=0.0, parent_depth=1,
        outcome="score", outcome_weight=2.0, step_weight=0.0, damp_after=None, inherit_on_zero=True,
    ) == pytest.approx(1.0)
    assert puct.damped_score(0.6, 10, None) == 0.6
    assert puct.damped_score(0.6, 7, 3) == pytest.approx(0.15)


def test_outcome_comes_from_the_verdict_and_the_critic_from_the_score():
    kw = dict(parent_value=0.0, parent_depth=1, outcome_weight=1.0, damp_after=3, inherit_on_zero=True)
    # ORM-only recipe (no critic, step_weight 0): terminal values are exactly +1 and -1, not +2 and -1
    assert puct.node_value(1.0, terminal=True, correct=True, step_weight=0.0, **kw) == 1.0
    assert puct.node_value(0.0, terminal=True, correct=False, step_weight=0.0, **kw) == -1.0
    # a composite score of a wrong answer (ORM 0 + 0.5 * P(True) 0.9 = 0.45) no longer looks like "unknown":
    # O = -1 from the verdict, C = 0.45 from the score; the old rule gave O = 2 * 0.45 - 1 = -0.1
    assert puct.node_value(0.45, terminal=True, correct=False, step_weight=1.0, **kw) == pytest.approx(-0.55)
    assert puct.node_value(0.45, terminal=True, correct=False, step_weight=1.0, outcome="score", **kw) == (
        pytest.approx(-0.1 + 0.45)
    )
    # critic only (self_judge 0.7) on a right answer: 1 + 0.7; an unfinished child gets the critic alone
    assert puct.node_value(0.7, terminal=True, correct=True, step_weight=1.0, **kw) == pytest.approx(1.7)
    assert puct.node_value(0.7, terminal=False, step_weight=1.0, **kw) == pytest.approx(0.7)
    # without a critic an unfinished child carries no evidence: it inherits its parent's value
    assert puct.node_value(0.7, terminal=False, step_weight=0.0, **{**kw, "parent_value": 0.3}) == 0.3
    assert puct.outcome_term(0.2, True, "verifier") == 1.0 and puct.outcome_term(0.2, None, "score") == pytest.approx(-0.6)
    with pytest.raises(ValueError, match="no verdict"):
        puct.outcome_term(1.0, None, "verifier")
    with pytest.raises(ValueError, match="allowed: verifier, score"):
        puct.outcome_term(1.0, True, "both")


def hand_tree():
    """root -> a (v=0.5), b (v=-1, finished); a -> c (v=2, finished), d (v=0.5)."""
    root = Node(metadata={"V": 0.0})
    a = root.add_child(Node(step="a", prior_logprob=-1.0, num_tokens=1))
    b = root.add_child(Node(step="b", prior_logprob=0.0, num_tokens=1, terminal=True))
    puct.init_child_stats(a, 0.5)
    puct.init_child_stats(b, -1.0)
    c = a.add_child(Node(step="c", terminal=True))
    d = a.add_child(Node(step="d"))
    puct.init_child_stats(c, 2.0)
    puct.init_child_stats(d, 0.5)
    return root, a, b, c, d


def test_child_stats_at_creation():
    root, a, b, c, d = hand_tree()
    assert (a.reward, a.q) == (0.5, 0.5)  # r = v - v_parent, Q = V_parent + r
    assert (b.reward, b.q) == (-1.0, -1.0)
    assert (c.reward, c.q) == (1.5, 1.5)
    assert (d.reward, d.q) == (0.0, 0.0)


def test_visit_weighted_backup_exact_numbers():
    root, a, b, c, d = hand_tree()
    puct.backup([root, a, c])
    assert (c.q, c.visits) == (1.5, 1)
    assert a.metadata["V"] == pytest.approx((1 * 1.5 + 1 * 0.0) / 2)  # d unvisited counts with weight 1
    assert (a.q, a.visits) == (pytest.approx(1.25), 1)
    assert root.metadata["V"] == pytest.approx((1.25 - 1.0) / 2)
    assert (root.q, root.visits) == (0.0, 1)  # the root has no step: its Q is left alone

    puct.backup([root, b])
    assert (b.q, b.visits) == (-1.0, 1)
    assert root.metadata["V"] == pytest.approx(0.125) and root.visits == 2

    puct.backup([root, a, c])
    assert (c.q, c.visits) == (1.5, 2)
    assert a.metadata["V"] == pytest.approx((2 * 1.5 + 1 * 0.0) / 3)
    assert a.q == pytest.approx(1.5) and a.visits == 2
    assert root.metadata["V"] == pytest.approx((2 * 1.5 + 1 * -1.0) / 3) and root.visits == 3

    puct.backup([root, a, c], gamma=0.5)
    assert a.metadata["V"] == pytest.approx((3 * 1.5 + 1 * 0.0) / 4)
    assert a.q == pytest.approx(0.5 + 0.5 * 1.125)


def test_mean_backup_averages_the_leaf_values_exact_numbers():
    root, a, b, c, d = hand_tree()
    puct.mean_backup([root, a, c])  # c's own value 2 into c, a and the root
    assert (c.q, c.visits, a.q, a.visits, root.visits) == (2.0, 1, 2.0, 1, 1)
    assert root.metadata["V"] == 2.0 and root.q == 0.0  # the root has no step: its Q is left alone
    puct.mean_backup([root, b])  # b's -1: the root's mean is (2 - 1) / 2
    assert (b.q, b.visits) == (-1.0, 1) and root.metadata["V"] == pytest.approx(0.5)
    puct.mean_backup([root, a, d])  # d's 0.5: a averages (2 + 0.5) / 2, the root (2 - 1 + 0.5) / 3
    assert (d.q, a.q, a.visits) == (0.5, pytest.approx(1.25), 2)
    assert root.metadata["V"] == pytest.approx(0.5) and root.visits == 3
    # the visit-weighted rule on the same first path gives a different a: (1 * 1.5 + 1 * 0) / 2 + r_a 0.5
    root2, a2, _, c2, _ = hand_tree()
    puct.backup([root2, a2, c2])
    assert a2.q == pytest.approx(1.25) and c2.q == pytest.approx(1.5)


def test_select_child_by_puct_on_hand_tree():
    root, a, b, c, d = hand_tree()
    for path in ([root, a, c], [root, b], [root, a, c]):
        puct.backup(path)
    # a: 1.5 + e^-1 * sqrt(3) / 3 = 1.7124; b: -1 + 1 * sqrt(3) / 2 = -0.134
    assert puct.select_child(root, c_puct=1.0, length_penalty=1.25) == 0
    # a huge exploration weight favours b's larger prior and fewer visits
    score_a = 1.5 + 100 * math.exp(-1) * math.sqrt(3) / 3
    score_b = -1.0 + 100 * 1.0 * math.sqrt(3) / 2
    assert score_b > score_a
    assert puct.select_child(root, c_puct=100.0, length_penalty=1.25) == 1
    # overridden priors (root noise): equal priors at c=100 still favour the less visited b
    assert puct.select_child(root, c_puct=100.0, length_penalty=1.25, priors=[0.5, 0.5]) == 1
    with pytest.raises(ValueError, match="no children"):
        puct.select_child(c, c_puct=1.0, length_penalty=1.25)


def test_first_selection_at_an_unvisited_node_uses_the_prior():
    node = Node()
    node.add_child(Node(q=0.5, prior_logprob=-10.0, num_tokens=1))  # p = e^-10
    node.add_child(Node(q=0.4, prior_logprob=0.0, num_tokens=1))  # p = 1
    # N = 0 counts as 1: a 0.5 + e^-10 against b 0.4 + 1 (with sqrt(0) it was argmax Q, a)
    assert puct.select_child(node, c_puct=1.0, length_penalty=1.25) == 1
    assert node.visits == 0  # the count itself is not changed


def test_commitment_rule():
    root, a, b, c, d = hand_tree()
    for path in ([root, a, c], [root, b], [root, a, c]):
        puct.backup(path)
    # a: N=2, div = 2 - 0 -> 2 * 3 = 6; b: 1 * 1 = 1
    assert puct.visit_spread(a) == 2 and puct.visit_spread(b) == 0
    assert puct.commit_index(root) == 0
    # tie on N*(div+1): Q decides
    tie = Node()
    x = tie.add_child(Node(visits=2, q=0.1))
    y = tie.add_child(Node(visits=2, q=0.3))
    assert puct.commit_index(tie) == 1
    y.q = x.q = 0.1
    y.metadata["V"] = 0.2
    assert puct.commit_index(tie) == 1  # then V
    probs = puct.commit_probabilities(root, 1.0)
    expected_a = math.exp(1.5) * 3 / (math.exp(1.5) * 3 + math.exp(-1.0) * 1)
    assert probs[0] == pytest.approx(expected_a) and sum(probs) == pytest.approx(1.0)
    sharp = puct.commit_probabilities(root, 0.5)
    assert sharp[0] == pytest.approx((math.exp(1.5) * 3) ** 2 / ((math.exp(1.5) * 3) ** 2 + math.exp(-1.0) ** 2))


def test_root_noise_mixing():
    assert puct.mix_priors([0.5, 0.1], [0.2, 0.8], 0.25) == pytest.approx([0.425, 0.275])
    noise = puct.dirichlet(0.3, 4, random.Random(0))
    assert len(noise) == 4 and sum(noise) == pytest.approx(1.0) and min(noise) >= 0


def test_beam_pruning_order():
    scores = [0.2, 0.9, 0.5, 0.9, 0.1, 0.5]
    terminal = [False, True, False, False, False, True]
    result = prune(scores, terminal, width=3)
    # top 3 by score, ties in generation order: 1 (0.9), 3 (0.9), 2 (0.5); 5 (0.5) loses the tie to 2
    assert result.finished == [1]
    assert result.active == [3, 2]
    assert result.dropped == [0, 4, 5]
    assert result.width == 2  # the finished beam left: B1 shrinks by one
    done = prune([0.3, 0.3, 0.3], [True, True, False], width=2)
    assert (done.active, done.finished, done.dropped, done.width) == ([], [0, 1], [2], 0)
    wide = prune([0.1, 0.4], [False, False], width=5)
    assert (wide.active, wide.width) == ([1, 0], 5)


def test_lookahead_value_and_best_child():
    assert lookahead_value([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0], 0.5) == 0.5
    assert lookahead_value([0.49, 0.5, 0.7], 0.5) == pytest.approx(2 / 3)
    assert best_index([0.25, 0.75, 0.75, 0.0]) == 1


def test_iterative_deepening_budgets():
    assert segment_budgets(12, 2.0, 96) == [12, 24, 48, 12]
    assert trigger_positions([12, 24, 48, 12]) == [12, 36, 84]
    # b_k = 8, 12, 18, 27 -> the last cut to 60 - 38 = 22
    assert segment_budgets(8, 1.5, 60) == [8, 12, 18, 22]
    assert segment_budgets(10, 1.25, 30) == [10, 13, 7]  # 12.5 rounds half up to 13
    assert segment_budgets(5, 1.0, 15) == [5, 5, 5]
    assert segment_budgets(50, 2.0, 20) == [20]
    # without a final cut the triggers land at b0 (gamma^k - 1) / (gamma - 1)
    assert trigger_positions(segment_budgets(4, 2.0, 60)) == [4 * (2**k - 1) for k in (1, 2, 3)]
    with pytest.raises(ValueError, match="growth >= 1"):
        segment_budgets(4, 0.5, 10)
