"""Hand-computed checks for sisearch.rewards.scoring."""

import itertools
import math
import random

import pytest
import torch

from sisearch.rewards.scoring import (
    AGGREGATION_MODES,
    aggregate_step_scores,
    auroc,
    best_of_k_value,
    bradley_terry_loss,
    follow_up_score,
    group_pairwise_loss,
    monte_carlo_step_labels,
    outcome_rm_loss,
    p_true_from_option_logprobs,
    pav_step_rewards,
    prm_step_loss,
    prover_success_estimate,
    renormalized_p_true,
    weighted_sum,
    weighted_vote,
    within_problem_auroc,
)

LN2 = math.log(2.0)
LN3 = math.log(3.0)


# ---------------------------------------------------------------- aggregation


def test_aggregate_modes_hand_values():
    s = [0.9, 0.5, 0.8]
    assert aggregate_step_scores(s, "min") == 0.5
    # 0.9 * 0.5 * 0.8 = 0.36
    assert aggregate_step_scores(s, "prod") == pytest.approx(0.36, abs=1e-12)
    assert aggregate_step_scores(s, "last") == 0.8
    # (0.9 + 0.5 + 0.8) / 3 = 2.2 / 3 = 0.7333...
    assert aggregate_step_scores(s, "mean") == pytest.approx(2.2 / 3, abs=1e-12)
    assert set(AGGREGATION_MODES) == {"min", "prod", "last", "mean"}


def test_aggregate_prod_with_zero_step_is_zero():
    # A certainly-wrong step makes P(all correct) = 0; no log(0) error.
    assert aggregate_step_scores([0.7, 0.0, 0.9], "prod") == 0.0


def test_aggregate_errors():
    with pytest.raises(ValueError, match="min, prod, last, mean"):
        aggregate_step_scores([0.5], "max")
    with pytest.raises(ValueError, match="empty"):
        aggregate_step_scores([], "min")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        aggregate_step_scores([0.5, 1.5], "prod")


# ----------------------------------------------------------- MC labels / PAV


def test_monte_carlo_step_labels():
    # 0/8, 3/8, 8/8 rollouts succeed after steps 1..3.
    hard, soft = monte_carlo_step_labels([0, 3, 8], [8, 8, 8])
    assert hard == [0.0, 1.0, 1.0]  # any success -> 1
    assert soft == [0.0, 0.375, 1.0]  # 3/8 = 0.375


def test_monte_carlo_step_labels_errors():
    with pytest.raises(ValueError, match="length"):
        monte_carlo_step_labels([1, 2], [8])
    with pytest.raises(ValueError, match="positive"):
        monte_carlo_step_labels([0], [0])
    with pytest.raises(ValueError, match="not in"):
        monte_carlo_step_labels([9], [8])


def test_best_of_k_and_prover_estimate():
    # 1 - (1 - 0.2)^2 = 1 - 0.64 = 0.36
    assert best_of_k_value(0.2, 2) == pytest.approx(0.36, abs=1e-12)
    assert best_of_k_value(0.3, 1) == pytest.approx(0.3, abs=1e-12)
    assert best_of_k_value(0.0, 4) == 0.0
    assert best_of_k_value(1.0, 4) == 1.0
    # 2/4 = 0.5 and 4/8 = 0.5; Bo4: 1 - 0.5^4 = 0.9375; 1/4 -> 1 - 0.75^4 = 0.68359375
    assert prover_success_estimate([2, 4, 1], [4, 8, 4]) == [0.5, 0.5, 0.25]
    assert prover_success_estimate([2, 4, 1], [4, 8, 4], k=4) == pytest.approx(
        [0.9375, 0.9375, 0.68359375], abs=1e-12
    )
    with pytest.raises(ValueError):
        best_of_k_value(0.5, 0)
    with pytest.raises(ValueError):
        best_of_k_value(1.5, 2)


def test_pav_step_rewards_hand_values():
    # Prover values per prefix: V(s1)=0.5, then after steps 0.75, 0.25, 1.0.
    values = [0.5, 0.75, 0.25, 1.0]
    q_before, q_after = values[:-1], values[1:]
    # A = [0.75-0.5, 0.25-0.75, 1.0-0.25] = [0.25, -0.5, 0.75]
    # alpha=2, base=Q^pi=[0.5, 0.5, 1.0]:
    #   [0.5 + 2*0.25, 0.5 + 2*(-0.5), 1.0 + 2*0.75] = [1.0, -0.5, 2.5]
    assert pav_step_rewards(q_before, q_after, 2.0, [0.5, 0.5, 1.0]) == pytest.approx(
        [1.0, -0.5, 2.5], abs=1e-12
    )
    # Without base: alpha * A = [0.5, -1.0, 1.5]
    assert pav_step_rewards(q_before, q_after, 2.0) == pytest.approx(
        [0.5, -1.0, 1.5], abs=1e-12
    )
    # alpha = 0 reduces to Q^pi.
    assert pav_step_rewards(q_before, q_after, 0.0, [0.1, 0.2, 0.3]) == pytest.approx(
        [0.1, 0.2, 0.3]
    )


def test_pav_step_rewards_errors():
    with pytest.raises(ValueError, match="length"):
        pav_step_rewards([0.1, 0.2], [0.3], 1.0)
    with pytest.raises(ValueError, match="base"):
        pav_step_rewards([0.1], [0.3], 1.0, [0.0, 0.0])


# ------------------------------------------------------------------- P(True)


def test_renormalized_p_true_hand_value():
    # 0.3 / (0.3 + 0.1) = 0.75
    assert renormalized_p_true(math.log(0.3), math.log(0.1)) == pytest.approx(0.75, abs=1e-12)
    assert renormalized_p_true(math.log(0.1), math.log(0.3)) == pytest.approx(0.25, abs=1e-12)
    assert renormalized_p_true(-2.0, -2.0) == 0.5


def test_renormalized_p_true_is_stable():
    # Naive exp(-1000) underflows to 0 -> 0/0. The ratio is still 3:1 -> 0.75.
    assert renormalized_p_true(-1000.0 + LN3, -1000.0) == pytest.approx(0.75, abs=1e-12)
    # Huge differences saturate without overflow.
    assert renormalized_p_true(0.0, -1000.0) == 1.0
    assert renormalized_p_true(-1000.0, 0.0) == pytest.approx(0.0, abs=1e-300)
    assert renormalized_p_true(-math.inf, -1.0) == 0.0
    with pytest.raises(ValueError):
        renormalized_p_true(-math.inf, -math.inf)
    with pytest.raises(ValueError):
        renormalized_p_true(float("nan"), -1.0)


def test_p_true_from_option_logprobs():
    # yes mass 0.2 + 0.1 = 0.3, no mass 0.05 + 0.05 = 0.1 -> 0.3 / 0.4 = 0.75
    yes = [math.log(0.2), math.log(0.1)]
    no = [math.log(0.05), math.log(0.05)]
    assert p_true_from_option_logprobs(yes, no) == pytest.approx(0.75, abs=1e-12)
    # A -inf variant (zero-probability surface form) adds no mass.
    assert p_true_from_option_logprobs([math.log(0.3), -math.inf], [math.log(0.1)]) == (
        pytest.approx(0.75, abs=1e-12)
    )
    # Stable with very small masses: 2e^-900 + e^-900 vs e^-900 -> 3/4.
    assert p_true_from_option_logprobs(
        [-900.0 + LN2, -900.0], [-900.0]
    ) == pytest.approx(0.75, abs=1e-12)
    with pytest.raises(ValueError):
        p_true_from_option_logprobs([], [-1.0])


# ----------------------------------------------------------------------- FLR


def test_follow_up_score_hand_value():
    # positive means: (-1-2)/2 = -1.5, -3/1 = -3  -> mean -2.25
    # negative means: (-4-6-8)/3 = -6, -2/1 = -2  -> mean -4.0
    # FLR = -2.25 - (-4.0) = 1.75
    pos = [[-1.0, -2.0], [-3.0]]
    neg = [[-4.0, -6.0, -8.0], [-2.0]]
    assert follow_up_score(pos, neg) == pytest.approx(1.75, abs=1e-12)
    # Without length normalisation it would be (-3-3)/2 - (-18-2)/2 = -3 + 10 = 7.
    assert follow_up_score(pos, neg) != pytest.approx(7.0)


def test_follow_up_score_errors():
    with pytest.raises(ValueError, match="positive"):
        follow_up_score([], [[-1.0]])
    with pytest.raises(ValueError, match="no tokens"):
        follow_up_score([[-1.0]], [[]])


# ---------------------------------------------------------------- composite


def test_weighted_sum_hand_values():
    # 0.5*[1, 2] + 2*[0.5, -1] = [0.5+1, 1-2] = [1.5, -1.0]
    out = weighted_sum({"a": [1.0, 2.0], "b": [0.5, -1.0]}, {"a": 0.5, "b": 2.0})
    assert out == pytest.approx([1.5, -1.0], abs=1e-12)


def test_weighted_sum_errors():
    with pytest.raises(ValueError, match="'b'"):
        weighted_sum({"a": [1.0], "b": [2.0]}, {"a": 1.0})
    with pytest.raises(ValueError, match="'c'"):
        weighted_sum({"a": [1.0]}, {"a": 1.0, "c": 1.0})
    with pytest.raises(ValueError, match="different numbers"):
        weighted_sum({"a": [1.0], "b": [2.0, 3.0]}, {"a": 1.0, "b": 1.0})
    with pytest.raises(ValueError):
        weighted_sum({}, {})


# --------------------------------------------------------------------- AUROC


def _auroc_pairs(scores, labels):
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    u = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return u / (len(pos) * len(neg))


def test_auroc_hand_values():
    # pos {0.35, 0.8} vs neg {0.1, 0.4}: 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3/4
    assert auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    # With a tie: pos {0.5, 0.9} vs neg {0.5, 0.2}: 0.5=0.5 -> 1/2, others 1 -> 3.5/4
    assert auroc([0.5, 0.5, 0.2, 0.9], [True, False, False, True]) == 0.875
    assert auroc([1.0, 2.0, 3.0], [False, True, True]) == 1.0
    assert auroc([1.0, 2.0, 3.0], [True, False, False]) == 0.0
    assert auroc([0.3, 0.3, 0.3, 0.3], [True, False, True, False]) == 0.5
    # int labels are accepted.
    assert auroc([0.1, 0.9], [0, 1]) == 1.0


def test_auroc_matches_pairwise_count_with_ties():
    rng = random.Random(0)
    for _ in range(20):
        n = rng.randint(2, 15)
        scores = [rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]) for _ in range(n)]
        labels = [rng.random() < 0.5 for _ in range(n)]
        labels[0], labels[1] = True, False  # both classes present
        assert auroc(scores, labels) == pytest.approx(_auroc_pairs(scores, labels), abs=1e-12)


def test_auroc_errors():
    with pytest.raises(ValueError, match="both classes"):
        auroc([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="both classes"):
        auroc([0.1, 0.2], [False, False])
    with pytest.raises(ValueError, match="length"):
        auroc([0.1], [True, False])


# -------------------------------------------------------------------- losses


def test_outcome_rm_loss_solution_level():
    # BCE(0, 1) = -log sigma(0) = ln 2
    # BCE(ln 3, 0) = -log(1 - sigma(ln 3)) = -log(1 - 0.75) = ln 4 = 2 ln 2
    # mean = 1.5 ln 2 = 1.03972...
    loss = outcome_rm_loss(torch.tensor([0.0, LN3]), torch.tensor([1, 0]))
    assert loss.item() == pytest.approx(1.5 * LN2, abs=1e-6)


def test_outcome_rm_loss_token_level_broadcast_and_mask():
    logits = torch.tensor([[0.0, LN3]], requires_grad=True)
    labels = torch.tensor([1.0])
    # label 1 on both tokens: (ln 2 + -log 0.75) / 2 = (ln 2 + ln(4/3)) / 2 = ln(8/3) / 2
    loss = outcome_rm_loss(logits, labels)
    assert loss.item() == pytest.approx(math.log(8.0 / 3.0) / 2, abs=1e-6)
    # Masking the second token leaves only ln 2.
    masked = outcome_rm_loss(logits, labels, torch.tensor([[True, False]]))
    assert masked.item() == pytest.approx(LN2, abs=1e-6)
    masked.backward()
    # d/dz BCE = sigma(z) - y = 0.5 - 1 = -0.5 for the one counted token; 0 for the masked one.
    assert logits.grad[0].tolist() == pytest.approx([-0.5, 0.0], abs=1e-6)


def test_outcome_rm_loss_shape_error():
    with pytest.raises(ValueError, match="shape"):
        outcome_rm_loss(torch.zeros(2, 3), torch.zeros(3))


def test_prm_step_loss_soft_labels_and_ignore_index():
    # BCE(0, 1) = ln 2 = 0.693147
    # BCE(ln 3, 0.75) = -(0.75 ln 0.75 + 0.25 ln 0.25) = 0.562335 (entropy of 0.75)
    # middle position is -100 (ignored). mean = (0.693147 + 0.562335) / 2 = 0.627741
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    logits = torch.tensor([[0.0, 99.0, LN3]], requires_grad=True)
    labels = torch.tensor([[1.0, -100.0, 0.75]])
    loss = prm_step_loss(logits, labels)
    assert loss.item() == pytest.approx((LN2 + h) / 2, abs=1e-6)
    assert (LN2 + h) / 2 == pytest.approx(0.627741, abs=1e-6)
    loss.backward()
    # grads: (sigma - y) / 2 = (0.5 - 1)/2 = -0.25; ignored -> 0; (0.75 - 0.75)/2 = 0
    assert logits.grad[0].tolist() == pytest.approx([-0.25, 0.0, 0.0], abs=1e-6)


def test_prm_step_loss_explicit_mask_and_empty_mask():
    logits = torch.tensor([[0.0, LN3]], requires_grad=True)
    labels = torch.tensor([[0.25, 0.0]])
    # BCE(0, 0.25) = -(0.25 ln 0.5 + 0.75 ln 0.5) = ln 2
    loss = prm_step_loss(logits, labels, torch.tensor([[1, 0]]))
    assert loss.item() == pytest.approx(LN2, abs=1e-6)
    # No labelled step -> 0, and backward still works (no NaN).
    empty = prm_step_loss(logits, labels, torch.zeros(1, 2, dtype=torch.bool))
    assert empty.item() == 0.0
    empty.backward()
    assert logits.grad.tolist() == [[0.0, 0.0]]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        prm_step_loss(torch.zeros(1, 1), torch.tensor([[2.0]]))


def test_bradley_terry_loss():
    # equal scores: -log sigma(0) = ln 2
    assert bradley_terry_loss(torch.tensor([1.0]), torch.tensor([1.0])).item() == (
        pytest.approx(LN2, abs=1e-6)
    )
    # margin ln 3: -log 0.75 = ln(4/3) = 0.287682; margin -ln 3: -log 0.25 = ln 4
    loss = bradley_terry_loss(torch.tensor([LN3, 0.0]), torch.tensor([0.0, LN3]))
    assert loss.item() == pytest.approx((math.log(4 / 3) + math.log(4)) / 2, abs=1e-6)
    # Large negative margin stays finite: -log sigma(-200) ~= 200.
    assert bradley_terry_loss(torch.tensor([0.0]), torch.tensor([200.0])).item() == (
        pytest.approx(200.0, rel=1e-6)
    )
    with pytest.raises(ValueError, match="shape"):
        bradley_terry_loss(torch.zeros(2), torch.zeros(3))


# ---------------------------------------------------------------- selection within a problem


def test_within_problem_auroc_hand_values():
    # problem a: the right sample (0.9) beats both wrong ones (0.1, 0.5): 1.0
    # problem b: the right sample (0.2) loses to the wrong one (0.8): 0.0
    # problem c: only right samples: skipped.  Mean of the two: 0.5, over 2 problems.
    scores = [0.9, 0.1, 0.5, 0.2, 0.8, 0.95, 0.95]
    labels = [1, 0, 0, 1, 0, 1, 1]
    groups = ["a", "a", "a", "b", "b", "c", "c"]
    assert within_problem_auroc(scores, labels, groups) == (0.5, 2)
    # pooled, the easy problem c's high scores count: 3 + 1 + 3 + 3 wins of 12 (right, wrong) pairs
    assert auroc(scores, labels) == pytest.approx(10 / 12)
    # a per-problem offset (difficulty) changes the pooled AUROC but not the within-problem one
    shifted = [s + (10.0 if g == "b" else 0.0) for s, g in zip(scores, groups)]
    assert within_problem_auroc(shifted, labels, groups) == (0.5, 2)
    # ties inside a problem count 1/2: (0.4 vs 0.4, 0.4 vs 0.1) -> (0.5 + 1) / 2
    assert within_problem_auroc([0.4, 0.4, 0.1], [1, 0, 0], [0, 0, 0]) == (0.75, 1)


def test_within_problem_auroc_without_mixed_problems_and_errors():
    value, count = within_problem_auroc([0.1, 0.2], [1, 0], ["a", "b"])
    assert math.isnan(value) and count == 0
    with pytest.raises(ValueError, match="length"):
        within_problem_auroc([0.1], [1, 0], ["a", "a"])


def test_group_pairwise_loss_hand_values():
    # group 0: right 0 (score 2) vs wrong 1 (0) and wrong 2 (1): margins 2 and 1; group 1 has no wrong sample.
    # L = (-log sigma(2) - log sigma(1)) / 2 = (0.126928 + 0.313262) / 2 = 0.220095
    scores = torch.tensor([2.0, 0.0, 1.0, -1.0], requires_grad=True)
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0])
    groups = torch.tensor([0, 0, 0, 1])
    loss = group_pairwise_loss(scores, labels, groups)
    assert loss.item() == pytest.approx(0.220095, abs=1e-6)
    loss.backward()
    # dL/ds_right = -(sigma(-2) + sigma(-1)) / 2; each wrong one gets its own +sigma(-margin) / 2; group 1 none
    s = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = [-(s(-2) + s(-1)) / 2, s(-2) / 2, s(-1) / 2, 0.0]
    assert scores.grad.tolist() == pytest.approx(expected, abs=1e-6)
    # a shift shared by one problem's samples (its difficulty) cancels
    shifted = scores.detach() + torch.tensor([5.0, 5.0, 5.0, -3.0])
    assert group_pairwise_loss(shifted, labels, groups).item() == pytest.approx(0.220095, abs=1e-6)


def test_group_pairwise_loss_pairs_never_cross_problems_and_empty_is_zero():
    # right in group 0, wrong in group 1: no pair, loss 0 and still differentiable
    scores = torch.tensor([0.0, 3.0], requires_grad=True)
    loss = group_pairwise_loss(scores, torch.tensor([1.0, 0.0]), torch.tensor([0, 1]))
    assert loss.item() == 0.0
    loss.backward()
    assert scores.grad.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="1-D"):
        group_pairwise_loss(torch.zeros(2), torch.zeros(3), torch.zeros(2))


def test_weighted_vote_hand_values():
    # answers 3 (0.2 + 0.3 = 0.5), 5 (0.45), 7 (0.1 + 0.4 = 0.5): 3 and 7 tie, 3 was seen first; its best sample
    assert weighted_vote([3, 5, 3, 7, 7], [0.2, 0.45, 0.3, 0.1, 0.4]) == 2
    # the top-scored sample alone (best-of-N would pick index 1) loses to two agreeing ones
    assert weighted_vote([4, 6, 4], [0.3, 0.5, 0.3]) == 0
    # unparsed answers do not vote; with no votes at all, the highest score
    assert weighted_vote([None, 2], [0.9, 0.1]) == 1
    assert weighted_vote([None, None], [0.1, 0.9]) == 1
    with pytest.raises(ValueError, match="one score per answer"):
        weighted_vote([1], [0.1, 0.2])
