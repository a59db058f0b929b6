"""Preference-optimisation and policy-gradient losses as pure tensor functions.

Every function takes per-sequence (or per-step) log-prob tensors that the
caller has already computed (summed completion log-probs, as in TRL) and
returns plain tensors or a :class:`LossOutput`. Nothing here touches a model,
a tokenizer or an optimiser, so each loss can be tested with hand numbers.

Notation (see shared/research/algorithms.md §0 and rewards_rl.md §6):

* ``h = [log pi(y_w) - log ref(y_w)] - [log pi(y_l) - log ref(y_l)]``, the
  log-ratio margin *without* beta.
* implicit reward ``r = beta * (log pi(y) - log ref(y))``.

Reference log-probs are always detached: the reference model is frozen, and
detaching here guarantees no gradient leaks into it even when the caller
computed them from a shared module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, Union

import torch
import torch.nn.functional as F

__all__ = [
    "LossOutput",
    "DPO_LOSS_TYPES",
    "TPO_WEIGHTINGS",
    "dpo_loss",
    "mcts_adaptive_epsilon",
    "step_apo_loss",
    "tpo_loss",
    "tpo_step_weighted_scores",
    "score_shaped_rewards",
    "leave_one_out_advantages",
    "policy_gradient_loss",
    "length_normalised_nll",
    "weighted_nll",
    "confidence_weights",
]

DPO_LOSS_TYPES: tuple[str, ...] = ("sigmoid", "ipo", "conservative")
TPO_WEIGHTINGS: tuple[str, ...] = ("lambda", "uniform")

TensorLike = Union[torch.Tensor, float, Sequence[float]]


@dataclass
class LossOutput:
    """A scalar loss plus detached float metrics (TRL metric names)."""

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------


def _as_tensor(x: TensorLike, like: torch.Tensor, name: str) -> torch.Tensor:
    """Convert ``x`` to a float tensor on ``like``'s device and dtype."""
    t = torch.as_tensor(x, device=like.device).to(like.dtype)
    if t.shape != like.shape:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {tuple(like.shape)}")
    return t


def _pair_metrics(
    beta: float,
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
) -> dict[str, float]:
    """TRL DPOTrainer metrics: rewards = beta * (policy - ref), batch means."""
    with torch.no_grad():
        chosen = beta * (policy_chosen_logps.detach() - ref_chosen_logps)
        rejected = beta * (policy_rejected_logps.detach() - ref_rejected_logps)
        return _reward_metrics(
            chosen, rejected, policy_chosen_logps.detach(), policy_rejected_logps.detach()
        )


def _reward_metrics(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
) -> dict[str, float]:
    # Strict '>' as in TRL: a tie (e.g. step 0, policy == ref) is not accurate.
    return {
        "rewards/chosen": chosen_rewards.float().mean().item(),
        "rewards/rejected": rejected_rewards.float().mean().item(),
        "rewards/margins": (chosen_rewards - rejected_rewards).float().mean().item(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
        "logps/chosen": chosen_logps.float().mean().item(),
        "logps/rejected": rejected_logps.float().mean().item(),
    }


def _logratio_margin(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
) -> torch.Tensor:
    """h = (pi_w - ref_w) - (pi_l - ref_l), per pair."""
    return (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)


# ----------------------------------------------------------------------------
# DPO family
# ----------------------------------------------------------------------------


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_visits: TensorLike | None = None,
    rejected_visits: TensorLike | None = None,
) -> LossOutput:
    """DPO-family loss on a batch of pairs, averaged over the batch.

    With ``h`` the log-ratio margin (no beta):

    * ``"sigmoid"``:      ``L = -log sigma(beta*h)``
    * ``"ipo"``:          ``L = (h - 1/(2*beta))**2``. TRL length-averages the
      log-ratios for IPO; pass length-normalised log-probs to get that.
    * ``"conservative"``: cDPO, ``L = -(1-eps) log sigma(beta*h) - eps log sigma(-beta*h)``
      with ``eps = label_smoothing``, or, when visit counts are given,
      MCTS-DPO's per-pair adaptive ``eps = min(1 - conf, 0.5)`` with
      ``conf = max(1,N_w) / (max(1,N_w) + N_l)``.

    ``label_smoothing`` and visit counts are only meaningful for
    ``"conservative"``; passing them with another loss type raises, rather
    than being silently ignored (TRL >= 0.29 dropped smoothing from sigmoid).

    Every log-prob tensor is ``[B]``, one summed log-prob per sequence.
    """
    _check_dpo_args(loss_type, beta, label_smoothing, chosen_visits, rejected_visits,
                    policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    ref_chosen_logps = ref_chosen_logps.detach()  # [B]
    ref_rejected_logps = ref_rejected_logps.detach()  # [B]

    h = _logratio_margin(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)  # [B]
    logits = beta * h  # [B]

    if loss_type == "sigmoid":
        # -log sigma(z) == softplus(-z), numerically stable for large |z|.
        losses = F.softplus(-logits)  # [B]
    elif loss_type == "ipo":
        # Squared loss pulls h to the fixed target 1/(2 beta) instead of
        # pushing it to infinity (IPO's fix for DPO overfitting).
        losses = (h - 1.0 / (2.0 * beta)) ** 2  # [B]
    else:  # conservative; eps [B] from the visit counts (given both or neither), else label_smoothing
        if chosen_visits is not None:
            eps = mcts_adaptive_epsilon(chosen_visits, rejected_visits, like=h)  # type: ignore[arg-type]
        else:
            eps = torch.full_like(h, label_smoothing)
        losses = (1.0 - eps) * F.softplus(-logits) + eps * F.softplus(logits)  # [B]

    metrics = _pair_metrics(beta, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return LossOutput(loss=losses.mean(), metrics=metrics)


def mcts_adaptive_epsilon(
    chosen_visits: TensorLike, rejected_visits: TensorLike, like: torch.Tensor
) -> torch.Tensor:
    """MCTS-DPO label noise from visit counts: ``eps = min(1 - conf, 0.5)``,
    ``conf = max(1,N_w) / (max(1,N_w) + N_l)``.

    A well-visited winner against a rarely visited loser is trusted (eps -> 0);
    the cap at 0.5 keeps the pair from ever being flipped.
    """
    n_w = _as_tensor(chosen_visits, like, "chosen_visits").detach()  # [B]
    n_l = _as_tensor(rejected_visits, like, "rejected_visits").detach()  # [B]
    if (n_w < 0).any() or (n_l < 0).any():
        raise ValueError("visit counts must be >= 0")
    n_w = n_w.clamp_min(1.0)
    conf = n_w / (n_w + n_l)  # [B]
    return (1.0 - conf).clamp_max(0.5)


def step_apo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    chosen_q: TensorLike,
    rejected_q: TensorLike,
    beta: float = 0.3,
    alpha: float = 1.0,
) -> LossOutput:
    """Step-APO (CPL): ``L = -log sigma(beta*h - alpha*(Q_w - Q_l))``.

    Siblings share V(s), so ``Q_w - Q_l = A_w - A_l``: the advantage gap is a
    margin that ``beta*h`` must exceed. A larger gap lowers the logit, raising
    both the loss and the gradient weight ``sigma(alpha*dQ - beta*h)``, so
    critical steps are pushed harder. ``alpha = 0`` is exactly sigmoid DPO.

    Every log-prob tensor and each Q is ``[B]``.
    """
    _check_pair_args(beta, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    ref_chosen_logps = ref_chosen_logps.detach()  # [B]
    ref_rejected_logps = ref_rejected_logps.detach()  # [B]
    q_w = _as_tensor(chosen_q, policy_chosen_logps, "chosen_q").detach()  # [B]
    q_l = _as_tensor(rejected_q, policy_chosen_logps, "rejected_q").detach()  # [B]

    h = _logratio_margin(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)  # [B]
    # Sign as in CPL's released trainer: it adds alpha*(q_rejected - q_chosen).
    logits = beta * h - alpha * (q_w - q_l)  # [B]
    losses = F.softplus(-logits)  # [B]

    metrics = _pair_metrics(beta, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return LossOutput(loss=losses.mean(), metrics=metrics)


# ----------------------------------------------------------------------------
# TPO: listwise preference ranking
# ----------------------------------------------------------------------------


def tpo_loss(
    policy_logps: torch.Tensor | None,
    ref_logps: torch.Tensor | None,
    scores: torch.Tensor,
    beta: float = 0.5,
    weighting: str = "lambda",
    mask: torch.Tensor | None = None,
    logratios: torch.Tensor | None = None,
) -> LossOutput:
    """TPO preference-list ranking loss on B lists of K entries: every tensor is ``[B, K]``.

    Implicit rewards ``s_i = beta * (logp_i - ref_logp_i)`` (or
    ``beta * logratios_i``); labels ``psi = scores``. Per list::

        L = sum_{psi_i > psi_j} lam_ij * -log sigma(s_i - s_j) / sum lam_ij

    * ``"lambda"`` (LiPO-lambda): ``lam_ij = |G_i - G_j| * |1/D(tau_i) - 1/D(tau_j)|``
      with ``G = 2**psi_hat - 1`` where ``psi_hat`` is psi min-max normalised
      to [0, 1] within the list (raw 2**100 overflows), ``D(tau) = log2(1 + tau)``
      and ``tau`` the 1-based rank of the entry sorted by the detached current
      ``s`` (descending; ties broken by higher label, then list position, so
      the loss at init, where every s is 0, does not depend on list order).
      log2 vs natural log only rescales every lam by 1/ln 2, which the
      normalisation cancels.
    * ``"uniform"``: ``lam_ij = 1`` (TPO's released code), i.e. the mean over
      strictly ordered pairs.

    The per-list losses are averaged over lists that have at least one
    ordered pair. Lists shorter than K are padded; padding entries (``mask``
    False) never form pairs. When ``logratios`` is given (e.g. from
    :func:`tpo_step_weighted_scores`) it replaces ``logp - ref_logp``;
    ``policy_logps`` then only feeds the ``logps/*`` metrics and may be None.

    Metrics: TRL names with chosen = top-labelled and rejected =
    bottom-labelled entry of each list.
    """
    _check_list_args(beta, weighting, policy_logps, ref_logps, scores, mask, logratios)
    lr = logratios if logratios is not None else policy_logps - ref_logps.detach()  # [B, K]
    if mask is None:
        valid = torch.ones(lr.shape, dtype=torch.bool, device=lr.device)  # [B, K]
    else:
        valid = mask.to(device=lr.device, dtype=torch.bool)  # [B, K]
    psi = scores.detach().to(lr.dtype)  # [B, K]

    # Zero padding entries so garbage (e.g. -inf) there cannot create NaNs.
    s = torch.where(valid, beta * lr, torch.zeros_like(lr))  # [B, K]
    psi = torch.where(valid, psi, torch.zeros_like(psi))  # [B, K]

    # pair[b, i, j]: entry i is labelled strictly better than entry j.
    vv = valid[:, :, None] & valid[:, None, :]  # [B, K, K]
    pair = vv & (psi[:, :, None] > psi[:, None, :])  # [B, K, K]

    if weighting == "uniform":
        lam = pair.to(s.dtype)  # [B, K, K]
    else:
        lam = _lambda_weights(s.detach(), psi, valid) * pair.to(s.dtype)  # [B, K, K]

    diff = s[:, :, None] - s[:, None, :]  # [B, K, K]
    pair_losses = F.softplus(-diff)  # [B, K, K]: -log sigma(s_i - s_j)
    weight_sum = lam.sum(dim=(1, 2))  # [B]
    has_pairs = weight_sum > 0  # [B]
    if has_pairs.any():
        per_list = (lam * pair_losses).sum(dim=(1, 2)) / weight_sum.clamp_min(torch.finfo(s.dtype).tiny)  # [B]
        loss = per_list[has_pairs].mean()
    else:
        # No ordered pair anywhere: zero loss that is still connected to the
        # graph, so backward() is a no-op instead of an error.
        loss = (s * 0.0).sum()

    metrics = _tpo_metrics(s.detach(), psi, valid, has_pairs, None if policy_logps is None else policy_logps.detach())
    return LossOutput(loss=loss, metrics=metrics)


def _lambda_weights(s: torch.Tensor, psi: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Unmasked LiPO-lambda weights ``|G_i - G_j| * |1/D(tau_i) - 1/D(tau_j)|``, [B, K, K]."""
    k = s.shape[1]
    idx = torch.arange(k, device=s.device)  # [K]
    s_i, s_j = s[:, :, None], s[:, None, :]  # [B, K, 1], [B, 1, K]
    p_i, p_j = psi[:, :, None], psi[:, None, :]  # [B, K, 1], [B, 1, K]
    # ahead[b, i, j]: valid entry j is ranked before i under the current s.
    tie = s_j == s_i  # [B, K, K]
    ahead = (s_j > s_i) | (tie & (p_j > p_i)) | (tie & (p_j == p_i) & (idx[None, None, :] < idx[None, :, None]))
    ahead = ahead & valid[:, None, :]  # [B, K, K]
    tau = 1.0 + ahead.to(s.dtype).sum(dim=2)  # [B, K]: 1-based rank
    inv_d = 1.0 / torch.log2(1.0 + tau)  # [B, K]

    big = torch.finfo(psi.dtype).max
    lo = torch.where(valid, psi, torch.full_like(psi, big)).amin(dim=1, keepdim=True)  # [B, 1]
    hi = torch.where(valid, psi, torch.full_like(psi, -big)).amax(dim=1, keepdim=True)  # [B, 1]
    span = hi - lo  # [B, 1]
    # A list with one label value has no pairs; avoid 0/0 there.
    psi_hat = torch.where(span > 0, (psi - lo) / span.clamp_min(torch.finfo(psi.dtype).tiny), torch.zeros_like(psi))
    psi_hat = torch.where(valid, psi_hat, torch.zeros_like(psi_hat))  # [B, K]
    gain = torch.exp2(psi_hat) - 1.0  # [B, K]
    return (gain[:, :, None] - gain[:, None, :]).abs() * (inv_d[:, :, None] - inv_d[:, None, :]).abs()


def _tpo_metrics(
    s: torch.Tensor,
    psi: torch.Tensor,
    valid: torch.Tensor,
    has_pairs: torch.Tensor,
    logps: torch.Tensor | None,
) -> dict[str, float]:
    """TRL-named metrics over lists with >= 1 ordered pair (zeros if none).

    ``logps/*`` are NaN when no policy log-probs were given (logratios-only call).
    """
    keys = (
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
    )
    if not has_pairs.any():
        return {k: 0.0 for k in keys}
    inf = torch.finfo(psi.dtype).max
    # argmax/argmin return the first index on ties, which is deterministic.
    top = torch.where(valid, psi, torch.full_like(psi, -inf)).argmax(dim=1, keepdim=True)
    bot = torch.where(valid, psi, torch.full_like(psi, inf)).argmin(dim=1, keepdim=True)
    sel = has_pairs
    chosen_r = s.gather(1, top).squeeze(1)[sel]
    rejected_r = s.gather(1, bot).squeeze(1)[sel]
    if logps is None:
        chosen_lp = rejected_lp = torch.zeros_like(chosen_r)
    else:
        chosen_lp = logps.gather(1, top).squeeze(1)[sel]
        rejected_lp = logps.gather(1, bot).squeeze(1)[sel]
    out = _reward_metrics(chosen_r, rejected_r, chosen_lp, rejected_lp)
    if logps is None:
        out["logps/chosen"] = out["logps/rejected"] = float("nan")
    return out


def tpo_step_weighted_scores(
    step_logratios: torch.Tensor,
    step_hidden: torch.Tensor,
    step_mask: torch.Tensor | None = None,
    top_index: int | torch.Tensor = 0,
    floor: float = 0.01,
) -> torch.Tensor:
    """TPO adaptive step reward: per-response score ``s_n = sum_k w_nk rho_nk / sum_k w_nk``.

    * ``step_logratios`` [B, K, S]: ``rho_nk``, the per-step *mean* token
      log-ratio ``log pi - log ref`` (the caller averages over a step's tokens).
    * ``step_hidden`` [B, K, S, H]: mean last-layer policy hidden state per step.
    * ``step_mask`` [B, K, S]: valid steps (default: all).
    * ``top_index``: index (int, or [B] long tensor) of the top-ranked response
      of each list (TPO puts it at 0).

    ``w_nk = 1 - cos(h_nk, h_top,k) + floor``: steps that differ from the
    top-ranked response's step at the same index count most; shared steps
    only get ``floor``, which also keeps the top response itself (all
    cos = 1) from being 0/0. This deliberately inverts the released code's
    ``1 + cos``, which up-weights shared steps. Steps are aligned by index;
    a step with no counterpart in the top response gets cos = 0 (w = 1 + floor).
    Hidden states are detached: the weights are a stop-gradient reweighting,
    gradients flow only through ``rho``. Returns [B, K] (no beta; feed it to
    ``tpo_loss(..., logratios=...)``). A response with no valid step scores 0.
    """
    _check_step_args(step_logratios, step_hidden, step_mask, top_index, floor)
    b, k, _ = step_logratios.shape
    if step_mask is None:
        step_mask = torch.ones(step_logratios.shape, dtype=torch.bool, device=step_logratios.device)  # [B, K, S]
    else:
        step_mask = step_mask.to(dtype=torch.bool, device=step_logratios.device)  # [B, K, S]

    hidden = step_hidden.detach().to(step_logratios.dtype)  # [B, K, S, H]
    if isinstance(top_index, torch.Tensor):
        top = top_index.to(device=hidden.device, dtype=torch.long).reshape(b)  # [B]
    else:
        top = torch.full((b,), top_index, dtype=torch.long, device=hidden.device)  # [B]
    batch = torch.arange(b, device=hidden.device)  # [B]
    top_hidden = hidden[batch, top]  # [B, S, H]
    top_mask = step_mask[batch, top]  # [B, S]

    cos = F.cosine_similarity(hidden, top_hidden[:, None], dim=-1, eps=1e-8)  # [B, K, S]
    cos = torch.where(top_mask[:, None, :], cos, torch.zeros_like(cos))  # [B, K, S]
    w = (1.0 - cos + floor) * step_mask.to(cos.dtype)  # [B, K, S]

    rho = torch.where(step_mask, step_logratios, torch.zeros_like(step_logratios))  # [B, K, S]
    num = (w * rho).sum(dim=-1)  # [B, K]
    den = w.sum(dim=-1)  # [B, K]
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), torch.zeros_like(num))


# ----------------------------------------------------------------------------
# SCoRe / REINFORCE
# ----------------------------------------------------------------------------


def score_shaped_rewards(
    r1: torch.Tensor, r2: torch.Tensor, alpha: float, stage: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """SCoRe per-turn rewards ``(reward_attempt1, reward_attempt2)`` (gamma = 0).

    * stage 1: ``(0, r2)``. Only attempt 2 is rewarded; attempt 1 is held near
      the reference by a (strong, beta2) KL term applied elsewhere.
    * stage 2: ``(r1, r2 + alpha*(r2 - r1))``. The bonus rewards flipping
      wrong -> right and penalises right -> wrong, so "repeat the first
      answer" stops being optimal (alpha >> 1, paper uses 10).
    """
    r1 = torch.as_tensor(r1)
    r2 = torch.as_tensor(r2)
    if not torch.is_floating_point(r1):
        r1 = r1.float()
    if not torch.is_floating_point(r2):
        r2 = r2.float()
    if r1.shape != r2.shape:
        raise ValueError(f"r1 shape {tuple(r1.shape)} != r2 shape {tuple(r2.shape)}")
    if stage == 1:
        return torch.zeros_like(r1), r2.clone()
    if stage == 2:
        return r1.clone(), r2 + alpha * (r2 - r1)
    raise ValueError(f"stage must be 1 or 2, got {stage!r}")


def leave_one_out_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """RLOO advantages over the last dim: ``A_i = r_i - mean_{j != i} r_j``.

    ``rewards`` is [B, n] (n samples per prompt, n >= 2). The baseline for
    sample i excludes i itself, so it stays unbiased.
    """
    rewards = torch.as_tensor(rewards)
    if not torch.is_floating_point(rewards):
        rewards = rewards.float()
    if rewards.dim() < 1 or rewards.shape[-1] < 2:
        raise ValueError(f"need at least 2 samples per prompt in the last dim, got shape {tuple(rewards.shape)}")
    n = rewards.shape[-1]
    others_mean = (rewards.sum(dim=-1, keepdim=True) - rewards) / (n - 1)  # [B, n]
    return rewards - others_mean


def policy_gradient_loss(
    logps: torch.Tensor,
    advantages: torch.Tensor,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> LossOutput:
    """REINFORCE: ``L = -mean(A * logp) + kl_coef * mean(kl)``.

    ``logps`` are summed log-probs of each sampled sequence (or turn);
    ``advantages`` are detached (they are constants of the estimator).
    ``kl`` is a per-sample KL estimate that must itself be differentiable
    w.r.t. the policy (e.g. k3 or an exact per-token KL summed over the
    sequence); the k1 log-ratio has zero expected gradient as a loss and
    belongs in the reward instead. ``logps``, ``advantages`` and ``kl`` are ``[N]`` (one per sample).
    """
    advantages = _as_tensor(advantages, logps, "advantages").detach()  # [N]
    _check_pg_args(logps, kl, kl_coef)
    pg = -(advantages * logps).mean()
    loss = pg
    metrics: dict[str, float] = {
        "loss/policy": pg.item(),
        "advantages/mean": advantages.float().mean().item(),
        "logps/mean": logps.detach().float().mean().item(),
    }
    if kl is not None:
        kl_mean = kl.mean()
        loss = loss + kl_coef * kl_mean
        metrics["objective/kl"] = kl_mean.item()
    return LossOutput(loss=loss, metrics=metrics)


def length_normalised_nll(logps: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mean over rows of each row's per-token NLL: `-mean(logps / counts)` (the RPO term; 0 tokens count as 1).

    `logps` (summed log-probs) and `counts` (token counts) are [B].
    """
    return -(logps / counts.clamp(min=1)).mean()


def weighted_nll(logps: torch.Tensor, counts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """`-mean(w * logps / counts)`: the length-normalised NLL with a weight per row, still divided by the batch
    size, so a row with weight 0 only drops out (the mean is not renormalised over the rest).

    `logps`, `counts` and `weights` are [B].
    """
    return -(weights.detach() * logps / counts.clamp(min=1)).mean()


def confidence_weights(eps: torch.Tensor) -> torch.Tensor:
    """`1 - 2*eps`: how far a cDPO pair with label noise `eps` is from neutral (eps = 0.5 gives 0).

    SFT on the chosen side of a pair whose label is a coin flip would teach whatever it holds.
    """
    if (eps < 0).any() or (eps > 0.5).any():
        raise ValueError("eps must be in [0, 0.5]")
    return 1.0 - 2.0 * eps


# ----------------------------------------------------------------------------
# argument checks: one call at the top of each loss
# ----------------------------------------------------------------------------


def _check_pair_args(
    beta: float,
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
) -> None:
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    _check_same_shape(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"log-prob tensors must share one shape, got {shapes}")
    if next(iter(tensors.values())).numel() == 0:
        raise ValueError("empty batch")


def _check_dpo_args(
    loss_type: str,
    beta: float,
    label_smoothing: float,
    chosen_visits: TensorLike | None,
    rejected_visits: TensorLike | None,
    *logps: torch.Tensor,
) -> None:
    if loss_type not in DPO_LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; allowed values: {', '.join(DPO_LOSS_TYPES)}")
    _check_pair_args(beta, *logps)
    has_visits = chosen_visits is not None or rejected_visits is not None
    if has_visits and (chosen_visits is None or rejected_visits is None):
        raise ValueError("chosen_visits and rejected_visits must be given together")
    if loss_type != "conservative" and (label_smoothing != 0.0 or has_visits):
        raise ValueError("label_smoothing / visit counts require loss_type='conservative'")
    if not 0.0 <= label_smoothing <= 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5], got {label_smoothing}")
    if has_visits and label_smoothing != 0.0:
        # Two sources of eps would be ambiguous; visit counts define it per pair.
        raise ValueError("give either label_smoothing or visit counts, not both")


def _check_list_args(
    beta: float,
    weighting: str,
    policy_logps: torch.Tensor | None,
    ref_logps: torch.Tensor | None,
    scores: torch.Tensor,
    mask: torch.Tensor | None,
    logratios: torch.Tensor | None,
) -> None:
    if weighting not in TPO_WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; allowed values: {', '.join(TPO_WEIGHTINGS)}")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if logratios is None and (policy_logps is None or ref_logps is None):
        raise ValueError("need policy_logps and ref_logps, or logratios")
    inputs = {"logratios": logratios, "policy_logps": policy_logps,
              "ref_logps": ref_logps if logratios is None else None, "scores": scores, "mask": mask}
    inputs = {name: x for name, x in inputs.items() if x is not None}
    first, shape = next(iter(inputs)), next(iter(inputs.values())).shape
    for name, x in inputs.items():
        if x.dim() != 2:
            raise ValueError(f"{name} must be [B, K], got shape {tuple(x.shape)}")
        if x.shape != shape:
            raise ValueError(f"{name} has shape {tuple(x.shape)}, {first} {tuple(shape)}; they must match")


def _check_step_args(
    step_logratios: torch.Tensor,
    step_hidden: torch.Tensor,
    step_mask: torch.Tensor | None,
    top_index: int | torch.Tensor,
    floor: float,
) -> None:
    if step_logratios.dim() != 3:
        raise ValueError(f"step_logratios must be [B, K, S], got {tuple(step_logratios.shape)}")
    if step_hidden.dim() != 4 or step_hidden.shape[:3] != step_logratios.shape:
        raise ValueError(
            f"step_hidden must be [B, K, S, H] matching step_logratios, got {tuple(step_hidden.shape)}"
        )
    if floor <= 0:
        raise ValueError(f"floor must be > 0, got {floor}")
    if step_mask is not None and step_mask.shape != step_logratios.shape:
        raise ValueError(f"step_mask shape {tuple(step_mask.shape)} != {tuple(step_logratios.shape)}")
    k = step_logratios.shape[1]
    if not isinstance(top_index, torch.Tensor) and not 0 <= top_index < k:
        raise ValueError(f"top_index {top_index} out of range for K={k}")


def _check_pg_args(logps: torch.Tensor, kl: torch.Tensor | None, kl_coef: float) -> None:
    if kl_coef != 0.0 and kl is None:
        raise ValueError("kl_coef != 0 needs a kl tensor")
    if kl is not None and kl.shape != logps.shape:
        raise ValueError(f"kl shape {tuple(kl.shape)} != logps shape {tuple(logps.shape)}")
