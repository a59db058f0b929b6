"""Hand-computed checks for sisearch.optim.losses.

Notation: sp(z) = softplus(z) = log(1 + e^z), so -log sigma(z) = sp(-z).
Handy constants:
    sp(0)  = log 2           = 0.6931471805599453
    sp(-1) = -log sigma(1)   = 0.31326168751822286
    sp(1)  = -log sigma(-1)  = 1.3132616875182228
    sp(2)  = -log sigma(-2)  = 2.1269280110429727
    sp(-2) = -log sigma(2)   = 0.12692801104297263
and sp(z) - sp(-z) = z, so cDPO (1-e) sp(-z) + e sp(z) = sp(-z) + e*z.
"""

from __future__ import annotations

import math

import pytest
import torch

from sisearch.optim.losses import (
    LossOutput,
    dpo_loss,
    leave_one_out_advantages,
    policy_gradient_loss,
    score_shaped_rewards,
    step_apo_loss,
    tpo_loss,
    tpo_step_weighted_scores,
)

LOG2 = 0.6931471805599453
SP_M1 = 0.31326168751822286  # -log sigma(1)
SP_1 = 1.3132616875182228  # -log sigma(-1)
SP_2 = 2.1269280110429727  # -log sigma(-2)
SP_M2 = 0.12692801104297263  # -log sigma(2)

TRL_KEYS = {
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
}


def t(*xs: float, grad: bool = False) -> torch.Tensor:
    return torch.tensor(list(xs), dtype=torch.float64, requires_grad=grad)


def approx(x: float, rel: float = 1e-9, abs: float = 1e-12):  # noqa: A002
    return pytest.approx(x, rel=rel, abs=abs)


def test_constants_are_what_the_comments_say():
    assert math.log1p(math.exp(-1)) == approx(SP_M1)
    assert math.log1p(math.exp(1)) == approx(SP_1)
    assert math.log1p(math.exp(2)) == approx(SP_2)
    assert math.log1p(math.exp(-2)) == approx(SP_M2)


# ----------------------------------------------------------------------------
# DPO
# ----------------------------------------------------------------------------


def test_sigmoid_dpo_is_log2_when_policy_equals_reference():
    # h = 0 for every pair -> -log sigma(0) = log 2, whatever beta is.
    pc, pr = t(-3.0, -7.5, grad=True), t(-4.0, -1.0, grad=True)
    out = dpo_loss(pc, pr, pc.detach().clone(), pr.detach().clone(), beta=0.37)
    assert isinstance(out, LossOutput)
    assert out.loss.dim() == 0
    assert out.loss.item() == approx(LOG2)
    # Ties count as inaccurate (strict '>' as in TRL).
    assert out.metrics["rewards/accuracies"] == 0.0
    out.loss.backward()
    # d/dpc of sp(-beta h)/B = -beta*sigma(-beta h)/B = -0.37*0.5/2 = -0.0925
    assert pc.grad.tolist() == [approx(-0.0925), approx(-0.0925)]
    assert pr.grad.tolist() == [approx(0.0925), approx(0.0925)]


def test_sigmoid_dpo_hand_value():
    # h = (-1 - -2) - (-3 - -2) = 1 - (-1) = 2, beta = 0.5 -> -log sigma(1)
    out = dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.0), beta=0.5)
    assert out.loss.item() == approx(SP_M1)


def test_dpo_metrics_keys_and_values():
    # beta = 0.5
    # chosen log-ratios   = [-1 - -1.5, -2 - -2] = [0.5, 0]  -> rewards [0.25, 0]
    # rejected log-ratios = [-3 - -2,   -1 - -2] = [-1, 1]   -> rewards [-0.5, 0.5]
    out = dpo_loss(t(-1.0, -2.0), t(-3.0, -1.0), t(-1.5, -2.0), t(-2.0, -2.0), beta=0.5)
    m = out.metrics
    assert set(m) == TRL_KEYS
    assert all(isinstance(v, float) for v in m.values())
    assert m["rewards/chosen"] == approx(0.125)  # mean(0.25, 0)
    assert m["rewards/rejected"] == approx(0.0)  # mean(-0.5, 0.5)
    assert m["rewards/margins"] == approx(0.125)  # mean(0.75, -0.5)
    assert m["rewards/accuracies"] == approx(0.5)  # [True, False]
    assert m["logps/chosen"] == approx(-1.5)
    assert m["logps/rejected"] == approx(-2.0)
    # loss = mean(sp(-0.75), sp(0.5))
    assert out.loss.item() == approx((math.log1p(math.exp(-0.75)) + math.log1p(math.exp(0.5))) / 2)


def test_ipo_minimum_at_half_inverse_beta():
    beta = 0.5  # target margin 1/(2*0.5) = 1
    for h, expected in [(1.0, 0.0), (0.0, 1.0), (3.0, 4.0), (-1.0, 4.0)]:
        pc = t(h, grad=True)
        out = dpo_loss(pc, t(0.0), t(0.0), t(0.0), beta=beta, loss_type="ipo")
        assert out.loss.item() == approx(expected)
        out.loss.backward()
        # dL/dh = 2 (h - 1)
        assert pc.grad.item() == approx(2 * (h - 1.0))
    # gradient is exactly zero at the minimum, loss strictly positive either side
    pc = t(1.0, grad=True)
    out = dpo_loss(pc, t(0.0), t(0.0), t(0.0), beta=beta, loss_type="ipo")
    out.loss.backward()
    assert pc.grad.item() == 0.0
    for h in (0.99, 1.01):
        assert dpo_loss(t(h), t(0.0), t(0.0), t(0.0), beta=beta, loss_type="ipo").loss.item() > 0


def test_conservative_with_label_smoothing():
    # beta h = 0.5 * 2 = 1, eps = 0.1:
    # 0.9 * sp(-1) + 0.1 * sp(1) = 0.9*0.313261687 + 0.1*1.313261687 = sp(-1) + 0.1
    out = dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.0), beta=0.5, loss_type="conservative", label_smoothing=0.1)
    assert out.loss.item() == approx(0.9 * SP_M1 + 0.1 * SP_1)
    assert out.loss.item() == approx(SP_M1 + 0.1)
    # eps = 0 reduces to sigmoid
    out0 = dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.0), beta=0.5, loss_type="conservative")
    assert out0.loss.item() == approx(SP_M1)


def test_conservative_with_visit_counts():
    # All three pairs have beta h = 1 (h = 2, beta = 0.5).
    # (N_w, N_l) = (3, 1): conf = 3/4          -> eps = 0.25
    #              (0, 4): conf = 1/(1+4) = 0.2 -> eps = min(0.8, 0.5) = 0.5
    #              (4, 0): conf = 1             -> eps = 0
    # losses = sp(-1) + eps*1 -> mean = sp(-1) + (0.25 + 0.5 + 0)/3 = sp(-1) + 0.25
    pc = t(-1.0, -1.0, -1.0, grad=True)
    out = dpo_loss(
        pc,
        t(-3.0, -3.0, -3.0),
        t(-2.0, -2.0, -2.0),
        t(-2.0, -2.0, -2.0),
        beta=0.5,
        loss_type="conservative",
        chosen_visits=[3, 0, 4],
        rejected_visits=[1, 4, 0],
    )
    assert out.loss.item() == approx(SP_M1 + 0.25)  # 0.5632616875182229
    out.loss.backward()
    # dL_i/dpc_i = beta * (-(1-eps) sigma(-1) + eps sigma(1)) / 3
    sig = 1 / (1 + math.exp(-1))
    expected = [0.5 * (-(1 - e) * (1 - sig) + e * sig) / 3 for e in (0.25, 0.5, 0.0)]
    assert pc.grad.tolist() == [approx(x) for x in expected]


def test_dpo_rejects_bad_arguments():
    a = t(0.0)
    with pytest.raises(ValueError, match="sigmoid, ipo, conservative"):
        dpo_loss(a, a, a, a, loss_type="hinge")
    with pytest.raises(ValueError):
        dpo_loss(a, a, a, a, label_smoothing=0.1)  # smoothing only for conservative
    with pytest.raises(ValueError):
        dpo_loss(a, a, a, a, loss_type="conservative", chosen_visits=[1])  # one side only
    with pytest.raises(ValueError):
        dpo_loss(a, t(0.0, 1.0), a, a)  # shape mismatch


def test_reference_gets_no_gradient():
    ref = t(-2.0, grad=True)
    out = dpo_loss(t(-1.0, grad=True), t(-3.0), ref, t(-2.0), beta=0.5)
    out.loss.backward()
    assert ref.grad is None


# ----------------------------------------------------------------------------
# Step-APO
# ----------------------------------------------------------------------------


def test_step_apo_alpha_zero_equals_dpo():
    pc, pr, rc, rr = t(-1.0, -4.0, -2.5), t(-3.0, -2.0, -2.5), t(-2.0, -3.0, -2.0), t(-2.0, -2.5, -3.0)
    apo = step_apo_loss(pc, pr, rc, rr, chosen_q=[0.9, 0.2, 0.5], rejected_q=[-0.7, 0.1, -1.0], beta=0.3, alpha=0.0)
    dpo = dpo_loss(pc, pr, rc, rr, beta=0.3)
    assert apo.loss.item() == approx(dpo.loss.item())
    assert apo.metrics == pytest.approx(dpo.metrics)


def test_step_apo_hand_values_and_sign():
    # h = 2, beta = 0.5 -> beta h = 1
    # Q_w - Q_l = 0.5 - (-0.5) = 1, alpha = 1 -> logit = 1 - 1 = 0 -> log 2
    pc = t(-1.0, grad=True)
    out = step_apo_loss(pc, t(-3.0), t(-2.0), t(-2.0), chosen_q=[0.5], rejected_q=[-0.5], beta=0.5, alpha=1.0)
    assert out.loss.item() == approx(LOG2)
    out.loss.backward()
    # dL/dpc = -beta * sigma(-logit) = -0.5 * 0.5
    assert pc.grad.item() == approx(-0.25)
    # A larger Q gap is a larger required margin -> larger loss than plain DPO (sp(-1)).
    assert out.loss.item() > SP_M1
    # Reversed gap (Q_w - Q_l = -1): logit = 1 + 1 = 2 -> sp(-2)
    out2 = step_apo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.0), chosen_q=[0.0], rejected_q=[1.0], beta=0.5, alpha=1.0)
    assert out2.loss.item() == approx(SP_M2)
    assert set(out.metrics) == TRL_KEYS


# ----------------------------------------------------------------------------
# TPO
# ----------------------------------------------------------------------------
#
# Reference list (beta = 1): policy = [0, -2, 1], ref = [-1, -2, -1]
#   -> s = [1, 0, 2], labels psi = [2, 1, 0].
# Ranks by current s (descending): entry 2 (s=2) -> 1, entry 0 -> 2, entry 1 -> 3,
#   so tau = [2, 3, 1] and 1/D(tau) = 1/log2(1+tau) = [1/log2 3, 1/2, 1]
#   = [0.6309297535714575, 0.5, 1.0].
# psi_hat = [1, 0.5, 0] -> G = 2^psi_hat - 1 = [1, sqrt2 - 1, 0] = [1, 0.41421356, 0].
# Ordered pairs (psi_i > psi_j) and their losses sp(-(s_i - s_j)):
#   (0,1): s diff  1 -> sp(-1) = 0.31326168751822286
#   (0,2): s diff -1 -> sp(1)  = 1.3132616875182228
#   (1,2): s diff -2 -> sp(2)  = 2.1269280110429727
# lambda:
#   (0,1): |1 - 0.41421356| * |0.63092975 - 0.5| = 0.58578644 * 0.13092975 = 0.07669687392399263
#   (0,2): |1 - 0|          * |0.63092975 - 1|   = 0.36907024642854247
#   (1,2): |0.41421356 - 0| * |0.5 - 1|          = 0.20710678118654757
# lambda loss = sum(lam * l) / sum(lam) = 1.4538997787095795
# uniform loss = (0.31326 + 1.31326 + 2.12693) / 3 = 1.2511504620264728

TPO_POLICY = [0.0, -2.0, 1.0]
TPO_REF = [-1.0, -2.0, -1.0]
TPO_PSI = [2.0, 1.0, 0.0]


def _tpo_lambda_hand() -> float:
    inv_d = [1 / math.log2(3), 0.5, 1.0]
    g = [1.0, math.sqrt(2) - 1, 0.0]
    losses = {(0, 1): SP_M1, (0, 2): SP_1, (1, 2): SP_2}
    lam = {(i, j): abs(g[i] - g[j]) * abs(inv_d[i] - inv_d[j]) for (i, j) in losses}
    assert lam[(0, 1)] == approx(0.07669687392399263)
    assert lam[(0, 2)] == approx(0.36907024642854247)
    assert lam[(1, 2)] == approx(0.20710678118654757)
    return sum(lam[p] * losses[p] for p in losses) / sum(lam.values())


def test_tpo_lambda_hand_value():
    expected = _tpo_lambda_hand()
    assert expected == approx(1.4538997787095795)
    pol = torch.tensor([TPO_POLICY], dtype=torch.float64, requires_grad=True)
    out = tpo_loss(pol, torch.tensor([TPO_REF], dtype=torch.float64), torch.tensor([TPO_PSI]), beta=1.0)
    assert out.loss.item() == approx(expected)
    out.loss.backward()
    assert torch.isfinite(pol.grad).all() and pol.grad.abs().sum() > 0


def test_tpo_uniform_hand_value():
    out = tpo_loss(
        torch.tensor([TPO_POLICY]), torch.tensor([TPO_REF]), torch.tensor([TPO_PSI]), beta=1.0, weighting="uniform"
    )
    assert out.loss.item() == approx((SP_M1 + SP_1 + SP_2) / 3, rel=1e-6)  # 1.2511504620264728


def test_tpo_beta_scales_rewards():
    # beta = 0.5 with log-ratios doubled ([2, 0, 4]) gives the same s as above.
    pol = torch.tensor([[1.0, -2.0, 3.0]], dtype=torch.float64)
    out = tpo_loss(pol, torch.tensor([TPO_REF], dtype=torch.float64), torch.tensor([TPO_PSI]), beta=0.5)
    assert out.loss.item() == approx(1.4538997787095795)


def test_tpo_metrics_top_and_bottom_labelled():
    out = tpo_loss(
        torch.tensor([TPO_POLICY], dtype=torch.float64),
        torch.tensor([TPO_REF], dtype=torch.float64),
        torch.tensor([TPO_PSI]),
        beta=1.0,
    )
    m = out.metrics
    assert set(m) == TRL_KEYS
    # chosen = entry 0 (psi 2): s = 1, logp = 0; rejected = entry 2 (psi 0): s = 2, logp = 1
    assert m["rewards/chosen"] == approx(1.0)
    assert m["rewards/rejected"] == approx(2.0)
    assert m["rewards/margins"] == approx(-1.0)
    assert m["rewards/accuracies"] == 0.0
    assert m["logps/chosen"] == approx(0.0)
    assert m["logps/rejected"] == approx(1.0)


@pytest.mark.parametrize("weighting", ["lambda", "uniform"])
def test_tpo_loss_lower_when_scores_follow_labels(weighting):
    psi = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    ref = torch.zeros(1, 4)
    ordered = torch.tensor([[1.5, 0.5, -0.5, -1.5]])
    reversed_ = ordered.flip(-1)
    lo = tpo_loss(ordered, ref, psi, beta=0.5, weighting=weighting).loss.item()
    hi = tpo_loss(reversed_, ref, psi, beta=0.5, weighting=weighting).loss.item()
    tie = tpo_loss(torch.zeros(1, 4), ref, psi, beta=0.5, weighting=weighting).loss.item()
    assert lo < tie < hi
    assert tie == approx(LOG2, rel=1e-6)  # every pair at s_i - s_j = 0 (float32)


def test_tpo_at_init_is_log2_and_order_invariant():
    # s all equal: every pair loss is log 2 whatever the weights, and ties in the
    # ranking are broken by label so permuting the list changes nothing.
    psi = torch.tensor([[100.0, -20.0, 40.0]])  # raw judge scores; 2^100 must not overflow
    z = torch.zeros(1, 3, dtype=torch.float32, requires_grad=True)
    out = tpo_loss(z, torch.zeros(1, 3), psi, beta=0.5)
    assert out.loss.item() == approx(LOG2, rel=1e-6)
    out.loss.backward()
    assert torch.isfinite(z.grad).all()
    perm = [2, 0, 1]
    pol = torch.tensor([[0.3, -0.2, 0.7]])
    a = tpo_loss(pol, torch.zeros(1, 3), psi, beta=0.5).loss.item()
    b = tpo_loss(pol[:, perm], torch.zeros(1, 3), psi[:, perm], beta=0.5).loss.item()
    assert a == approx(b, rel=1e-6)


def test_tpo_lists_and_padding_mask():
    # List 1: the reference list (loss 1.4538997787095795).
    # List 2: s = [0.5, -0.5], psi = [1, 0]: one pair, weight cancels -> sp(-1).
    # Batch loss = mean over lists.
    # The second list is zero-padded to K = 3; the mask leaves the padding slot out.
    expected = (1.4538997787095795 + SP_M1) / 2
    mask = torch.tensor([[True, True, True], [True, True, False]])
    zero_padded = torch.tensor([TPO_POLICY, [0.5, -0.5, 0.0]], dtype=torch.float64, requires_grad=True)
    out = tpo_loss(zero_padded, torch.tensor([TPO_REF, [0.0, 0.0, 0.0]]), torch.tensor([TPO_PSI, [1.0, 0.0, 0.0]]),
                   beta=1.0, mask=mask)
    assert out.loss.item() == approx(expected, rel=1e-6)
    out.loss.backward()
    assert zero_padded.grad is not None

    # The same batch with garbage (-inf logp, huge label) in the padding slot.
    pol = torch.tensor([TPO_POLICY, [0.5, -0.5, -math.inf]], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([TPO_REF, [0.0, 0.0, 0.0]], dtype=torch.float64)
    psi = torch.tensor([TPO_PSI, [1.0, 0.0, 99.0]])
    out2 = tpo_loss(pol, ref, psi, beta=1.0, mask=mask)
    assert out2.loss.item() == approx(expected)
    out2.loss.backward()
    assert torch.isfinite(pol.grad).all()
    assert pol.grad[1, 2].item() == 0.0
    # Metrics average the two lists: chosen s = (1 + 0.5)/2, rejected s = (2 - 0.5)/2
    assert out2.metrics["rewards/chosen"] == approx(0.75)
    assert out2.metrics["rewards/rejected"] == approx(0.75)
    assert out2.metrics["rewards/accuracies"] == approx(0.5)


def test_tpo_no_pairs_gives_zero_loss_that_backprops():
    pol = torch.tensor([[0.2, -0.4]], requires_grad=True)
    out = tpo_loss(pol, torch.zeros(1, 2), torch.tensor([[1.0, 1.0]]))  # tie: no ordered pair
    assert out.loss.item() == 0.0
    out.loss.backward()


def test_tpo_rejects_unknown_weighting():
    with pytest.raises(ValueError, match="lambda, uniform"):
        tpo_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), weighting="softmax")


# ----------------------------------------------------------------------------
# TPO adaptive step reward
# ----------------------------------------------------------------------------
#
# B=1, K=3 responses, S=2 steps, H=2, floor = 0.1, top response = 0.
#   response 0 hidden: step0 [1,0], step1 [0,1]; rho = [0.5, 0.3]
#     cos = [1, 1] -> w = [0.1, 0.1] -> s0 = (0.05 + 0.03)/0.2 = 0.4
#   response 1 hidden: step0 [1,0] (same as top, cos 1), step1 [1,0] (cos 0); rho = [0.2, -1.0]
#     w = [0.1, 1.1] -> s1 = (0.02 - 1.1)/1.2 = -0.9
#   response 2 hidden: step0 [0,1] (cos 0), step1 [0,-1] (cos -1); rho = [1.0, 0.0]
#     w = [1.1, 2.1] -> s2 = 1.1/3.2 = 0.34375


def _step_inputs():
    rho = torch.tensor([[[0.5, 0.3], [0.2, -1.0], [1.0, 0.0]]], dtype=torch.float64, requires_grad=True)
    hid = torch.tensor(
        [[[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, -1.0]]]],
        dtype=torch.float64,
        requires_grad=True,
    )
    return rho, hid


def test_step_weighted_scores_hand_values():
    rho, hid = _step_inputs()
    s = tpo_step_weighted_scores(rho, hid, floor=0.1)
    assert s.shape == (1, 3)
    assert s[0].tolist() == [approx(0.4), approx(-0.9), approx(0.34375)]
    s[0, 1].backward()
    # ds1/drho_1 = w / sum w = [0.1/1.2, 1.1/1.2]; hidden states are stop-gradient
    assert rho.grad[0, 1].tolist() == [approx(0.1 / 1.2), approx(1.1 / 1.2)]
    assert hid.grad is None


def test_step_weighted_scores_with_step_mask():
    rho, hid = _step_inputs()
    with torch.no_grad():
        hid[0, 1, 1] = torch.tensor([0.0, 1.0])  # now identical to top's step 1
    mask = torch.tensor([[[True, True], [True, True], [True, False]]])
    s = tpo_step_weighted_scores(rho, hid, step_mask=mask, floor=0.1)
    # response 1: step 1 identical to top -> w = [0.1, 0.1] -> (0.02 - 0.1)/0.2 = -0.4
    # response 2: only step 0 valid -> s = rho = 1.0
    assert s[0].tolist() == [approx(0.4), approx(-0.4), approx(1.0)]
    # If the top response lacks step 1, response 1's step 1 has no counterpart:
    # cos := 0 -> w = [0.1, 1.1] -> -0.9 again.
    mask_top = torch.tensor([[[True, False], [True, True], [True, True]]])
    s2 = tpo_step_weighted_scores(rho, hid, step_mask=mask_top, floor=0.1)
    assert s2[0, 0].item() == approx(0.5)
    assert s2[0, 1].item() == approx(-0.9)


def test_step_weighted_scores_feed_tpo_loss():
    rho, hid = _step_inputs()
    s = tpo_step_weighted_scores(rho, hid, floor=0.1)  # [0.4, -0.9, 0.34375]
    out = tpo_loss(None, None, torch.tensor([[2.0, 0.0, 1.0]]), beta=1.0, weighting="uniform", logratios=s)
    # pairs (0,1): sp(-1.3), (0,2): sp(-0.05625), (2,1): sp(-1.24375)
    sp = lambda z: math.log1p(math.exp(z))  # noqa: E731
    assert out.loss.item() == approx((sp(-1.3) + sp(-0.05625) + sp(-1.24375)) / 3)
    out.loss.backward()
    assert rho.grad is not None and torch.isfinite(rho.grad).all()


# ----------------------------------------------------------------------------
# SCoRe / RLOO / REINFORCE
# ----------------------------------------------------------------------------


def test_score_shaped_rewards():
    r1 = torch.tensor([1.0, 0.0, 1.0, 0.0])
    r2 = torch.tensor([1.0, 1.0, 0.0, 0.0])
    a1, a2 = score_shaped_rewards(r1, r2, alpha=10.0, stage=2)
    assert a1.tolist() == [1.0, 0.0, 1.0, 0.0]
    # r2 + 10 (r2 - r1): keep-right 1, fix 1+10, break 0-10, stay-wrong 0
    assert a2.tolist() == [1.0, 11.0, -10.0, 0.0]
    b1, b2 = score_shaped_rewards(r1, r2, alpha=10.0, stage=1)
    assert b1.tolist() == [0.0, 0.0, 0.0, 0.0]
    assert b2.tolist() == [1.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        score_shaped_rewards(r1, r2, alpha=10.0, stage=3)


def test_leave_one_out_advantages():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [3.0, 1.0, 2.0, 2.0]])
    a = leave_one_out_advantages(r)
    # row 0: 1 - (0+0+1)/3 = 2/3; 0 - (1+0+1)/3 = -2/3; ...
    # row 1: 3 - 5/3 = 4/3; 1 - 7/3 = -4/3; 2 - 6/3 = 0; 0
    expected = [[2 / 3, -2 / 3, -2 / 3, 2 / 3], [4 / 3, -4 / 3, 0.0, 0.0]]
    for row, exp in zip(a.tolist(), expected):
        assert row == [approx(x, rel=1e-6, abs=1e-6) for x in exp]
    with pytest.raises(ValueError):
        leave_one_out_advantages(torch.tensor([[1.0]]))


def test_policy_gradient_loss():
    logps = t(-1.0, -2.0, grad=True)
    adv = t(1.0, -1.0, grad=True)
    out = policy_gradient_loss(logps, adv)
    # -mean([1*-1, -1*-2]) = -mean([-1, 2]) = -0.5
    assert out.loss.item() == approx(-0.5)
    out.loss.backward()
    assert logps.grad.tolist() == [approx(-0.5), approx(0.5)]  # -A / N
    assert adv.grad is None  # advantages are constants
    kl = t(0.5, 1.5, grad=True)
    out2 = policy_gradient_loss(t(-1.0, -2.0), t(1.0, -1.0), kl=kl, kl_coef=0.1)
    assert out2.loss.item() == approx(-0.5 + 0.1 * 1.0)
    assert out2.metrics["objective/kl"] == approx(1.0)
    out2.loss.backward()
    assert kl.grad.tolist() == [approx(0.05), approx(0.05)]
    with pytest.raises(ValueError):
        policy_gradient_loss(logps, adv, kl_coef=0.1)


def test_length_normalised_nll_by_hand():
    from sisearch.optim.losses import length_normalised_nll

    # rows: -6 over 3 tokens -> 2 per token; -1 over 0 tokens counts as 1 token -> 1; mean 1.5
    assert length_normalised_nll(torch.tensor([-6.0, -1.0]), torch.tensor([3, 0])).item() == pytest.approx(1.5)


def test_weighted_nll_and_confidence_weights_by_hand():
    from sisearch.optim.losses import confidence_weights, weighted_nll

    logps, counts = torch.tensor([-6.0, -1.0]), torch.tensor([3, 0])
    # weights 1 and 0: the second row drops out, the mean still divides by 2: -(-2 + 0) / 2
    assert weighted_nll(logps, counts, torch.tensor([1.0, 0.0])).item() == pytest.approx(1.0)
    assert weighted_nll(logps, counts, torch.tensor([1.0, 1.0])).item() == pytest.approx(1.5)  # the plain term
    # eps = 0.5 (a neutral cDPO pair) gives no NLL; eps = 0 the full term; eps = 0.25 half of it
    assert confidence_weights(torch.tensor([0.5, 0.0, 0.25])).tolist() == [0.0, 1.0, 0.5]
    assert weighted_nll(logps, counts, confidence_weights(torch.tensor([0.5, 0.5]))).item() == 0.0
    with pytest.raises(ValueError, match=r"\[0, 0.5\]"):
        confidence_weights(torch.tensor([0.6]))
