"""Pure scoring math shared by the reward models (no model calls, no I/O).

Everything here takes plain Python numbers or lists, or torch tensors for the
training losses, and returns a number, a list or a scalar tensor. The reward
classes that run models (ORM/PRM heads, P(True) judges, FLR scorers) gather
log-probabilities and call these functions, so the formulas live in one place
and can be tested against hand-computed values.

Notation follows ``shared/research/rewards_rl.md`` section 0. A state is
``s_h = (x, a_1..a_{h-1})`` and ``s_{h+1} = s_h ⊕ a_h``. ``Rex`` in {0,1} is
the verifier outcome, ``π`` the policy and ``μ`` a prover policy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "AGGREGATION_MODES",
    "aggregate_step_scores",
    "monte_carlo_step_labels",
    "prover_success_estimate",
    "best_of_k_value",
    "pav_step_rewards",
    "renormalized_p_true",
    "p_true_from_option_logprobs",
    "within_problem_auroc",
    "weighted_vote",
    "group_pairwise_loss",
    "follow_up_score",
    "weighted_sum",
    "auroc",
    "outcome_rm_loss",
    "prm_step_loss",
    "bradley_terry_loss",
]

AGGREGATION_MODES: tuple[str, ...] = ("min", "prod", "last", "mean")


# ---------------------------------------------------------------------------
# Process-reward aggregation (rewards_rl.md §2, last table)
# ---------------------------------------------------------------------------


def aggregate_step_scores(scores: Sequence[float], mode: str) -> float:
    """Reduce per-step PRM scores ``p_1..p_H`` to one solution score.

    - ``min``:  ``min_h p_h`` (a solution is only as good as its worst step;
      the default for hard-label PRMs).
    - ``prod``: ``Π_h p_h``, i.e. P(all steps correct) when steps are
      independent. Needs probabilities in [0, 1]. It penalises long solutions.
    - ``last``: ``p_H`` (for value-like, soft-label PRMs the last prefix value
      already estimates P(correct)).
    - ``mean``: ``(1/H) Σ_h p_h`` (baseline).
    """
    if mode not in AGGREGATION_MODES:
        raise ValueError(
            f"unknown aggregation mode {mode!r}; allowed: {', '.join(AGGREGATION_MODES)}"
        )
    values = [float(s) for s in scores]
    if not values:
        raise ValueError("cannot aggregate an empty list of step scores")
    if mode == "min":
        return min(values)
    if mode == "last":
        return values[-1]
    if mode == "mean":
        # fsum avoids order-dependent rounding error for long solutions.
        return math.fsum(values) / len(values)
    # prod. The spec's exp(Σ log p) form fails on p = 0, and the product of
    # values in [0, 1] cannot overflow. It underflows to 0 exactly where the
    # log-space form would after exponentiating, so a direct product is used.
    if any(not 0.0 <= v <= 1.0 for v in values):
        raise ValueError("mode 'prod' needs step probabilities in [0, 1]")
    return math.prod(values)


# ---------------------------------------------------------------------------
# Monte Carlo step labels and prover values (rewards_rl.md §2)
# ---------------------------------------------------------------------------


def _check_counts(successes: Sequence[int], totals: Sequence[int]) -> None:
    if len(successes) != len(totals):
        raise ValueError(
            f"successes and totals differ in length ({len(successes)} vs {len(totals)})"
        )
    for i, (s, n) in enumerate(zip(successes, totals)):
        if n <= 0:
            raise ValueError(f"step {i}: totals must be positive, got {n}")
        if not 0 <= s <= n:
            raise ValueError(f"step {i}: successes {s} not in [0, {n}]")


def monte_carlo_step_labels(
    successes: Sequence[int], totals: Sequence[int]
) -> tuple[list[float], list[float]]:
    """Math-Shepherd step labels from rollouts started after each step.

    For step ``h``, ``totals[h]`` completions are drawn from the prefix
    ``s_h ⊕ a_h`` and ``successes[h]`` of them reach a correct answer.

    - hard (HE): ``1.0 if successes[h] > 0 else 0.0``. The step *can* still
      lead to a correct answer.
    - soft (SE): ``successes[h] / totals[h]``, the MC estimate ``Q̂``.

    These are value estimates, not step-correctness labels: a wrong step that
    later rollouts recover from still gets a high label.
    Returns ``(hard, soft)``.
    """
    _check_counts(successes, totals)
    hard = [1.0 if s > 0 else 0.0 for s in successes]
    soft = [s / n for s, n in zip(successes, totals)]
    return hard, soft


def best_of_k_value(p: float, k: int) -> float:
    """Value of a best-of-K prover with an oracle selector: ``1 − (1 − p)^K``.

    If one rollout of π from a prefix succeeds with probability ``p``, then
    ``μ = BoK(π)`` succeeds when at least one of ``K`` independent rollouts
    does. This lets prover values ``Q^{BoK}`` be computed from π's own MC
    estimates, without sampling the prover separately.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p}")
    return 1.0 - (1.0 - p) ** k


def prover_success_estimate(
    successes: Sequence[int], totals: Sequence[int], k: int = 1
) -> list[float]:
    """MC estimate of a prover's value at each prefix.

    ``Q̂^μ_h = successes[h] / totals[h]`` when the rollouts come from μ itself
    (``k=1``). With ``k > 1`` the rollouts are taken to come from π, and the
    Bo-K prover value ``1 − (1 − Q̂^π_h)^k`` is returned.
    """
    _check_counts(successes, totals)
    return [best_of_k_value(s / n, k) for s, n in zip(successes, totals)]


def pav_step_rewards(
    q_before: Sequence[float],
    q_after: Sequence[float],
    alpha: float,
    base: Sequence[float] | None = None,
) -> list[float]:
    """PAV effective per-step rewards (Setlur et al. 2024).

    For step ``h`` (0-indexed in the lists):

    - ``q_after[h]  = Q^μ(s_h, a_h)``, the prover value *after* the step,
      i.e. ``V^μ(s_{h+1})`` (prover rollouts from ``s_h ⊕ a_h``);
    - ``q_before[h] = Q^μ(s_{h-1}, a_{h-1}) = V^μ(s_h)``, the prover value
      *before* the step. For the first step this is ``V^μ(s_1)``, estimated
      by rolling out from the problem ``x`` alone.

    Progress (prover advantage):  ``A^μ_h = q_after[h] − q_before[h]``.
    Effective reward:             ``r_h = Q^π(s_h, a_h) + α · A^μ_h``,
    where ``base[h] = Q^π(s_h, a_h)``. In beam search that is the policy's own
    value estimate for the candidate. In on-policy RL it is the sampled
    trajectory's outcome ``Rex``, the same for every step, optionally
    group-baselined. ``Q^π`` alone keeps steps that lose progress from
    high-value states; the ``α A^μ`` term penalises them.

    With ``base=None`` only the progress term ``α · A^μ_h`` is returned, for
    callers that add the outcome reward separately (RL adds it to every token).
    Given per-prefix values ``v = [V^μ(s_1), Q^μ(s_1,a_1), ..., Q^μ(s_H,a_H)]``,
    pass ``q_before=v[:-1]`` and ``q_after=v[1:]``.
    """
    if len(q_before) != len(q_after):
        raise ValueError(
            f"q_before and q_after differ in length ({len(q_before)} vs {len(q_after)})"
        )
    if base is not None and len(base) != len(q_after):
        raise ValueError(
            f"base has {len(base)} entries but there are {len(q_after)} steps"
        )
    advantages = [float(qa) - float(qb) for qb, qa in zip(q_before, q_after)]
    if base is None:
        return [alpha * a for a in advantages]
    return [float(b) + alpha * a for b, a in zip(base, advantages)]


# ---------------------------------------------------------------------------
# Self-judge: P(True) (rewards_rl.md §3a)
# ---------------------------------------------------------------------------


def _sigmoid(z: float) -> float:
    # Evaluate exp only at a non-positive argument, so it never overflows.
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _logsumexp(values: Sequence[float]) -> float:
    # Shift by the max so the largest term is exp(0) = 1. No overflow, and no
    # underflow to 0/0 when every log-prob is very negative.
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("logsumexp of an empty list")
    if any(math.isnan(v) for v in vals):
        raise ValueError("log-probabilities must not be NaN")
    m = max(vals)
    if m == -math.inf:
        return -math.inf
    if m == math.inf:
        raise ValueError("log-probabilities must not be +inf")
    return m + math.log(math.fsum(math.exp(v - m) for v in vals))


def renormalized_p_true(logp_yes: float, logp_no: float) -> float:
    """P(True) renormalised over the two options (Kadavath et al. 2022).

    ``P = exp(lp_yes) / (exp(lp_yes) + exp(lp_no)) = σ(lp_yes − lp_no)``.
    Working with the difference means two tiny log-probs (e.g. −1000 each)
    still give a meaningful ratio, where the naive form would be 0/0.
    The logit ``lp_yes − lp_no`` is itself usable as an unbounded reward.
    """
    ly, ln = float(logp_yes), float(logp_no)
    if math.isnan(ly) or math.isnan(ln):
        raise ValueError("log-probabilities must not be NaN")
    if ly == math.inf or ln == math.inf:
        raise ValueError("log-probabilities must not be +inf")
    if ly == -math.inf and ln == -math.inf:
        raise ValueError("both options have zero probability; P(True) is undefined")
    return _sigmoid(ly - ln)


def p_true_from_option_logprobs(
    yes_logps: Sequence[float], no_logps: Sequence[float]
) -> float:
    """P(True) when each option has several surface forms.

    E.g. ``" A"``, ``"A"``, ``" (A)"`` under different tokenisations. Each
    option's mass is the sum of its variants' probabilities,
    ``lp_opt = logsumexp(variant logps)``; then
    ``P = σ(lp_yes − lp_no)`` as in :func:`renormalized_p_true`.
    """
    if not yes_logps or not no_logps:
        raise ValueError("each option needs at least one token-variant log-prob")
    return renormalized_p_true(_logsumexp(yes_logps), _logsumexp(no_logps))


# ---------------------------------------------------------------------------
# FLR: follow-up likelihood as reward (rewards_rl.md §4)
# ---------------------------------------------------------------------------


def _mean_normalised_loglik(utterances: Sequence[Sequence[float]], side: str) -> float:
    if not utterances:
        raise ValueError(f"need at least one {side} follow-up utterance")
    per_utterance = []
    for i, toks in enumerate(utterances):
        if len(toks) == 0:
            raise ValueError(f"{side} follow-up {i} has no tokens")
        # Length-normalise so long follow-ups are not penalised for length.
        per_utterance.append(math.fsum(float(t) for t in toks) / len(toks))
    return math.fsum(per_utterance) / len(per_utterance)


def follow_up_score(
    pos_token_logps: Sequence[Sequence[float]],
    neg_token_logps: Sequence[Sequence[float]],
) -> float:
    """FLR score for one category (Zhang et al. 2025).

    ``ℓ(f) = (1/|f|) Σ_t log p(f_t | c, r, f_<t)`` over the follow-up tokens,
    where the follow-up ``f`` is the next user turn after response ``r``.
    ``FLR_k = mean_{f ∈ F_k^+} ℓ(f) − mean_{f ∈ F_k^-} ℓ(f)``.
    A good response makes positive follow-ups likely and negative ones
    unlikely. The overall FLR is the mean of ``FLR_k`` over categories.
    Each inner list holds the token log-probs of one utterance.
    """
    return _mean_normalised_loglik(pos_token_logps, "positive") - _mean_normalised_loglik(
        neg_token_logps, "negative"
    )


# ---------------------------------------------------------------------------
# Composite rewards and evaluation
# ---------------------------------------------------------------------------


def weighted_sum(
    scores_by_component: Mapping[str, Sequence[float]], weights: Mapping[str, float]
) -> list[float]:
    """Per-candidate composite score ``r_i = Σ_c w_c · s_c[i]``.

    The keys of ``scores_by_component`` and ``weights`` must match exactly.
    A missing weight would silently drop a component, and an extra one points
    to a typo in the config, so both raise.
    """
    comp_keys, weight_keys = set(scores_by_component), set(weights)
    if comp_keys != weight_keys:
        missing = sorted(comp_keys - weight_keys)
        extra = sorted(weight_keys - comp_keys)
        raise ValueError(
            "component/weight keys differ: "
            f"components without a weight: {missing}; weights without a component: {extra}"
        )
    if not comp_keys:
        raise ValueError("weighted_sum needs at least one component")
    lengths = {k: len(v) for k, v in scores_by_component.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"components score different numbers of candidates: {lengths}")
    n = next(iter(lengths.values()))
    keys = sorted(comp_keys)  # fixed order, so the float result is deterministic
    return [
        math.fsum(float(weights[k]) * float(scores_by_component[k][i]) for k in keys)
        for i in range(n)
    ]


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic.

    ``AUROC = U / (n_pos · n_neg)``, where ``U`` counts (positive, negative)
    pairs with the positive scored higher, and ties count 1/2. It is computed
    with average ranks in O(n log n):
    ``U = R_pos − n_pos (n_pos + 1) / 2``, with ``R_pos`` the sum of the
    positives' 1-based ranks. Averaging the ranks of tied scores is exactly
    the 1/2-per-tie rule.
    """
    if len(scores) != len(labels):
        raise ValueError(f"scores and labels differ in length ({len(scores)} vs {len(labels)})")
    vals = [float(s) for s in scores]
    if any(math.isnan(v) for v in vals):
        raise ValueError("scores must not be NaN")
    pos = [bool(lab) for lab in labels]
    n_pos = sum(pos)
    n_neg = len(pos) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"AUROC needs both classes (got {n_pos} positives, {n_neg} negatives)"
        )
    order = sorted(range(len(vals)), key=vals.__getitem__)
    ranks = [0.0] * len(vals)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and vals[order[j + 1]] == vals[order[i]]:
            j += 1
        avg_rank = (i + j) / 2.0 + 1.0  # mean of 1-based ranks i+1 .. j+1
        for t in range(i, j + 1):
            ranks[order[t]] = avg_rank
        i = j + 1
    r_pos = math.fsum(r for r, p in zip(ranks, pos) if p)
    u = r_pos - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def within_problem_auroc(
    scores: Sequence[float], labels: Sequence[bool], groups: Sequence[object]
) -> tuple[float, int]:
    """Mean per-group AUROC over groups holding both classes, and how many groups that is.

    A verifier's job is to pick the right sample *of one problem*; a pooled
    AUROC also rewards telling easy problems from hard ones, which does not
    help selection. Groups with only right or only wrong samples are skipped
    (their AUROC is undefined); with none left the result is NaN.
    """
    if not (len(scores) == len(labels) == len(groups)):
        raise ValueError(
            f"scores, labels and groups differ in length ({len(scores)}, {len(labels)}, {len(groups)})"
        )
    members: dict[object, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    per_group = []
    for idx in members.values():
        lab = [bool(labels[i]) for i in idx]
        if any(lab) and not all(lab):
            per_group.append(auroc([scores[i] for i in idx], lab))
    if not per_group:
        return float("nan"), 0
    return math.fsum(per_group) / len(per_group), len(per_group)


def weighted_vote(answers: Sequence[object], scores: Sequence[float]) -> int:
    """Index of the sample to return: one holding the answer with the largest summed score.

    Verifier-weighted majority vote: each sample votes for its answer with its reward, so a weak verifier
    still benefits from agreement between samples (Cobbe et al. vote among the top-scored samples). Samples
    with answer None (unparsed) do not vote; with no vote at all, the highest-scored sample. Ties: the answer
    seen first; within it, its highest-scored sample.
    """
    if len(answers) != len(scores) or not answers:
        raise ValueError(f"need one score per answer and at least one sample ({len(answers)} vs {len(scores)})")
    totals: dict[object, float] = {}
    for a, sc in zip(answers, scores):
        if a is not None:
            totals[a] = totals.get(a, 0.0) + float(sc)
    if not totals:
        return max(range(len(scores)), key=lambda i: scores[i])
    best = max(totals, key=lambda a: totals[a])  # max keeps the first of equal totals
    members = [i for i, a in enumerate(answers) if a == best]
    return max(members, key=lambda i: scores[i])


# ---------------------------------------------------------------------------
# Training losses for ORM / PRM heads (torch)
# ---------------------------------------------------------------------------


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(values.dtype)
    # clamp_min(1) makes an all-masked batch give 0 (still attached to the
    # graph) instead of NaN from 0/0.
    return (values * m).sum() / m.sum().clamp_min(1.0)


def _check_targets(targets: torch.Tensor, mask: torch.Tensor) -> None:
    bad = ((targets < 0) | (targets > 1)) & mask
    if bool(bad.any()):
        raise ValueError("BCE targets at unmasked positions must lie in [0, 1]")


def outcome_rm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """ORM training loss: mean binary cross-entropy with logits.

    ``L = −mean[ y · log σ(z) + (1 − y) · log(1 − σ(z)) ]``.

    - Solution-level: ``logits`` and ``labels`` both ``[B]``.
    - Token-level (Cobbe et al., the default): ``logits`` is ``[B, T]`` with
      one head output per token, and ``labels`` is ``[B]``, the outcome
      ``Rex``, broadcast to every solution token so the head learns a value
      function. ``mask`` ``[B, T]`` (bool or 0/1) marks solution tokens;
      prompt and padding positions are excluded from the mean.

    Soft labels in [0, 1] are allowed. The score at inference is ``σ(z)`` at
    the final solution token.
    """
    labels = labels.to(device=logits.device, dtype=logits.dtype)
    if logits.dim() == labels.dim() + 1 and labels.shape == logits.shape[:-1]:
        labels = labels.unsqueeze(-1).expand_as(logits)
    if labels.shape != logits.shape:
        raise ValueError(
            f"labels shape {tuple(labels.shape)} does not match logits {tuple(logits.shape)}"
        )
    if mask is None:
        mask = torch.ones_like(logits, dtype=torch.bool)
    else:
        mask = mask.to(device=logits.device).bool()
        if mask.shape != logits.shape:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} does not match logits {tuple(logits.shape)}"
            )
    _check_targets(labels, mask)
    per_pos = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return _masked_mean(per_pos, mask)


def prm_step_loss(
    step_logits: torch.Tensor,
    step_labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    ignore_index: float = -100.0,
) -> torch.Tensor:
    """PRM training loss: per-step BCE with logits, averaged over labelled steps.

    ``L = Σ_{labelled} BCE(z_h, y_h) / #labelled``. ``step_logits`` holds the
    head's "good step" logit at each position, typically ``[B, T]`` read at the
    step separators. ``step_labels`` (same shape) may be hard 0/1 (Math-Shepherd
    HE) or soft fractions (SE / ``Q̂``). This is the custom loss the spec asks
    for because TRL's PRMTrainer truncates float labels with ``int()``.

    Which positions count: ``mask`` if given (bool or 0/1, same shape).
    Otherwise every position whose label is not ``ignore_index`` (TRL's −100
    convention for non-separator tokens).
    """
    labels = step_labels.to(device=step_logits.device, dtype=step_logits.dtype)
    if labels.shape != step_logits.shape:
        raise ValueError(
            f"step_labels shape {tuple(labels.shape)} does not match "
            f"step_logits {tuple(step_logits.shape)}"
        )
    if mask is None:
        mask = labels != ignore_index
    else:
        mask = mask.to(device=step_logits.device).bool()
        if mask.shape != step_logits.shape:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} does not match "
                f"step_logits {tuple(step_logits.shape)}"
            )
    _check_targets(labels, mask)
    # Zero the ignored targets so −100 never enters the BCE, not even in
    # positions that are masked out afterwards.
    safe_labels = torch.where(mask, labels, torch.zeros_like(labels))
    per_pos = F.binary_cross_entropy_with_logits(step_logits, safe_labels, reduction="none")
    return _masked_mean(per_pos, mask)


def bradley_terry_loss(
    chosen_scores: torch.Tensor, rejected_scores: torch.Tensor
) -> torch.Tensor:
    """Pairwise reward-model loss: ``L = −mean log σ(r_chosen − r_rejected)``.

    This is the Bradley-Terry likelihood that the chosen response beats the
    rejected one. ``logsigmoid`` is used because it stays finite for large
    negative margins, where ``log(sigmoid(...))`` gives −inf.
    """
    if chosen_scores.shape != rejected_scores.shape:
        raise ValueError(
            f"chosen {tuple(chosen_scores.shape)} and rejected "
            f"{tuple(rejected_scores.shape)} scores differ in shape"
        )
    return -F.logsigmoid(chosen_scores - rejected_scores).mean()


def group_pairwise_loss(
    scores: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor
) -> torch.Tensor:
    """Bradley-Terry loss over every (right, wrong) pair that shares a group.

    ``L = −mean_{(i,j): g_i = g_j, y_i = 1, y_j = 0} log σ(s_i − s_j)``. With
    groups = problems, a score shift shared by one problem's samples cancels,
    so the head cannot lower this loss by learning which problems are hard,
    only by ranking each problem's samples (as TRL's reward trainer does with
    chosen/rejected pairs). ``scores`` ``[N]`` logits; ``labels`` ``[N]`` 0/1
    (thresholded at 0.5); ``groups`` ``[N]`` integer ids. A batch without any
    such pair gives 0 (attached to the graph).
    """
    if not (scores.shape == labels.shape == groups.shape) or scores.dim() != 1:
        raise ValueError(
            f"scores {tuple(scores.shape)}, labels {tuple(labels.shape)} and groups "
            f"{tuple(groups.shape)} must be 1-D and of one length"
        )
    right = labels.to(scores.device) >= 0.5
    same = groups.to(scores.device)[:, None] == groups.to(scores.device)[None, :]
    pairs = same & right[:, None] & ~right[None, :]  # [i, j]: i right, j wrong, same group
    if not bool(pairs.any()):
        return scores.sum() * 0.0
    i, j = pairs.nonzero(as_tuple=True)
    return bradley_terry_loss(scores[i], scores[j])
