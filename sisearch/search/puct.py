"""The pure math of MCTS-DPO's tree search: step prior, PUCT score, node value, backup, commitment.

Everything here works on plain numbers or on `Node` fields only, so it is tested with hand numbers on
hand-built trees (tests/test_search_math.py). Notation follows research/algorithms.md §1.1:
`v` = a node's own evaluation (`Node.value`), `r = v - v_parent` (`Node.reward`), `Q` (`Node.q`),
`N` (`Node.visits`) and the backed-up state value `V` (kept in `Node.metadata["V"]`, 0 until backed up).
"""

from __future__ import annotations

import math
import random

from sisearch.search.tree import Node

V_KEY = "V"


def step_prior(logprob: float, num_tokens: int, length_penalty: float) -> float:
    """`p = exp(sum logp / L^lambda)`: the length-penalised probability of a step (not normalised over siblings).

    A step with no tokens (L = 0) is treated as one token long so that the exponent stays finite.
    """
    return math.exp(logprob / max(num_tokens, 1) ** length_penalty)


def puct_score(q: float, prior: float, parent_visits: int, visits: int, c_puct: float) -> float:
    """`Q + c_puct * p * sqrt(N_parent) / (1 + N)`."""
    return q + c_puct * prior * math.sqrt(parent_visits) / (1 + visits)


def mix_priors(priors: list[float], noise: list[float], fraction: float) -> list[float]:
    """AlphaZero root noise: `(1 - fraction) * p + fraction * eta` for each child."""
    return [(1.0 - fraction) * p + fraction * eta for p, eta in zip(priors, noise)]


def dirichlet(alpha: float, size: int, rng: random.Random) -> list[float]:
    """A draw from the symmetric Dirichlet(alpha) over `size` children (normalised gamma draws)."""
    draws = [rng.gammavariate(alpha, 1.0) for _ in range(size)]
    total = sum(draws)
    return [d / total for d in draws] if total > 0 else [1.0 / size] * size


def select_child(node: Node, *, c_puct: float, length_penalty: float, priors: list[float] | None = None) -> int:
    """Index of the child with the highest PUCT score (the first of equals).

    `priors` overrides the step priors (root noise); by default each child's own length-penalised prior.
    A node not yet visited (the root before its first backup, a leaf just expanded) counts as visited once:
    with `sqrt(0)` the prior would vanish and the first choice would be argmax Q alone.
    """
    if not node.children:
        raise ValueError("select_child: the node has no children to select from")
    if priors is None:
        priors = [step_prior(c.prior_logprob, c.num_tokens, length_penalty) for c in node.children]
    parent_visits = max(node.visits, 1)
    scores = [puct_score(c.q, p, parent_visits, c.visits, c_puct) for c, p in zip(node.children, priors)]
    return max(range(len(scores)), key=lambda i: scores[i])


def damped_score(score: float, parent_depth: int, damp_after: int | None) -> float:
    """MCTS-DPO's depth damping of the step score: `C' = C / max(depth_parent - damp_after, 1)`.

    `damp_after=None` turns damping off.
    """
    if damp_after is None:
        return score
    return score / max(parent_depth - damp_after, 1)


OUTCOME_RULES = ("verifier", "score")


def outcome_term(score: float, correct: bool | None, rule: str) -> float:
    """The outcome `O` of a finished solution.

    `verifier` (the spec): +1 if the task's checker found it right, else -1, from the verdict alone.
    `score` (the earlier rule, kept to reproduce old runs): `O = 2s - 1` from the rewarder's score `s`.
    """
    if rule == "verifier":
        if correct is None:
            raise ValueError("outcome 'verifier': a finished node has no verdict")
        return 1.0 if correct else -1.0
    if rule == "score":
        return 2.0 * score - 1.0
    raise ValueError(f"unknown outcome rule {rule!r}; allowed: {', '.join(OUTCOME_RULES)}")


def node_value(
    score: float,
    *,
    terminal: bool,
    correct: bool | None = None,
    parent_value: float,
    parent_depth: int,
    outcome: str = "verifier",
    outcome_weight: float,
    step_weight: float,
    damp_after: int | None,
    inherit_on_zero: bool,
) -> float:
    """A new child's value `v = outcome_weight * O + C'` (the MCTS-DPO combination).

    `O` is the outcome of a finished solution (`outcome_term`: from the verdict `correct`, or from the score
    under the old rule; 0 for an unfinished one). `C' = step_weight * C` damped by depth is the critic's part,
    with `C` the rewarder's score; a recipe without a critic sets `step_weight: 0`, so an ORM-only rewarder
    does not count the outcome twice. As in MCTS-DPO, an unfinished child whose `C'` is exactly 0 (no
    evidence) inherits its parent's value when `inherit_on_zero` is set.
    """
    critic = step_weight * damped_score(score, parent_depth, damp_after)
    if not terminal:
        if critic == 0.0 and inherit_on_zero:
            return parent_value
        return critic
    return outcome_weight * outcome_term(score, correct, outcome) + critic


def init_child_stats(child: Node, value: float) -> None:
    """Set a new child's `v`, `r = v - v_parent` and `Q = V_parent + r` (MCTS-DPO, at creation)."""
    parent = child.parent
    if parent is None:
        raise ValueError("init_child_stats: the node has no parent")
    child.value = value
    child.reward = value - parent.value
    child.q = parent.metadata.get(V_KEY, 0.0) + child.reward
    child.metadata.setdefault(V_KEY, 0.0)


def weighted_value(children: list[Node]) -> float:
    """`V = sum_c max(1, N_c) * Q_c / sum_c max(1, N_c)` over all children."""
    weights = [max(1, c.visits) for c in children]
    return sum(w * c.q for w, c in zip(weights, children)) / sum(weights)


def backup(path: list[Node], gamma: float = 1.0) -> None:
    """MCTS-DPO's visit-weighted backup along `path` (from the search root down to the leaf).

    Leaf: `Q = r + gamma * V`, `N += 1`. Each ancestor bottom-up: `V = weighted_value(children)`,
    `N += 1`, then `Q = r + gamma * V` (the tree's root has no step, so its Q is left alone).
    """
    if not path:
        raise ValueError("backup: empty path")
    leaf = path[-1]
    leaf.q = leaf.reward + gamma * leaf.metadata.get(V_KEY, 0.0)
    leaf.visits += 1
    for node in reversed(path[:-1]):
        node.metadata[V_KEY] = weighted_value(node.children)
        node.visits += 1
        if node.parent is not None:
            node.q = node.reward + gamma * node.metadata[V_KEY]


BACKUP_RULES = ("visit_weighted", "mean")


def mean_backup(path: list[Node]) -> None:
    """AlphaMath / CPL's backup: the leaf's own value `v` is averaged into every node on `path`.

    Each node: `N += 1`, `V += (v - V) / N` (the running mean of the values backed up through it), and
    `Q = V` for a node with a step (the tree's root keeps its Q).
    """
    if not path:
        raise ValueError("backup: empty path")
    value = path[-1].value
    for node in path:
        node.visits += 1
        mean = node.metadata.get(V_KEY, 0.0)
        node.metadata[V_KEY] = mean + (value - mean) / node.visits
        if node.parent is not None:
            node.q = node.metadata[V_KEY]


def visit_spread(node: Node) -> int:
    """`div = max - min` of the visit counts of `node`'s own children (0 without children)."""
    if not node.children:
        return 0
    visits = [c.visits for c in node.children]
    return max(visits) - min(visits)


def commit_index(node: Node) -> int:
    """The child MCTS-DPO commits to at temperature 0: argmax of `(N_c * (div_c + 1), Q_c, V_c)`."""
    if not node.children:
        raise ValueError("commit_index: the node has no children to commit to")

    def key(i: int) -> tuple[float, float, float]:
        c = node.children[i]
        return (c.visits * (visit_spread(c) + 1), c.q, c.metadata.get(V_KEY, 0.0))

    return max(range(len(node.children)), key=key)


def commit_probabilities(node: Node, temperature: float) -> list[float]:
    """MCTS-DPO's sampling distribution at temperature > 0: `(e^{Q_c} * (n_children_c + 1))^(1/tau)`, normalised."""
    if temperature <= 0:
        raise ValueError(f"commit_probabilities: temperature must be > 0, got {temperature}")
    # Shift Q by its max before exponentiating: the ratio is unchanged and nothing overflows.
    top = max(c.q for c in node.children)
    weights = [(math.exp(c.q - top) * (len(c.children) + 1)) ** (1.0 / temperature) for c in node.children]
    total = sum(weights)
    return [w / total for w in weights]
