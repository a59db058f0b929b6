"""B-STaR's exploration / exploitation monitoring of an iteration's search (rewards_rl.md §7).

B-STaR (Zeng et al., 2025) found that self-improvement stalls when exploration (how many distinct correct
solutions the policy still finds) decays and the reward's discrimination (how reliably it picks a correct one)
weakens. Per problem, with `n_sel` the distinct solutions the rewarder selects (value >= `threshold`) and
`n_c` the correct ones among them, the balance score is `min(n_c / n_star, 1) * n_c / n_sel` (0 where nothing
is selected): the first factor rewards exploration, the second the precision of the selection.
"""

from __future__ import annotations

from dataclasses import dataclass

from sisearch.search.tree import Node, Tree


@dataclass
class BalanceConfig:
    n_star: int = 8  # distinct correct solutions per problem that count as full exploration (B-STaR: 8)
    threshold: float = 0.5  # a finished solution whose value reaches it counts as selected by the rewarder

    def __post_init__(self) -> None:
        if self.n_star < 1:
            raise ValueError(f"n_star must be >= 1, got {self.n_star}")


def is_correct(node: Node) -> bool:
    return bool(node.verdict and node.verdict.correct)


def distinct(nodes: list[Node]) -> dict[str, Node]:
    """The finished solutions by their text (a solution sampled twice counts once)."""
    return {node.state.strip(): node for node in nodes}


def balance_score(n_correct: int, n_selected: int, n_star: int) -> float:
    if n_selected == 0:
        return 0.0
    return min(n_correct / n_star, 1.0) * n_correct / n_selected


def balance_metrics(trees: list[Tree], cfg: BalanceConfig) -> dict[str, float]:
    """`bstar/*`: exploration (pass@k, distinct correct solutions and answers per problem), exploitation
    (accuracy of the pick, precision of the selection) and the balance score, means over problems."""
    if not trees:
        return {}
    pass_k, distinct_correct, distinct_answers, picks, scores = [], [], [], [], []
    selected_total, selected_correct = 0, 0
    for tree in trees:
        solutions = distinct(tree.terminals())
        correct = [n for n in solutions.values() if is_correct(n)]
        selected = [n for n in solutions.values() if n.value >= cfg.threshold]
        n_c = sum(1 for n in selected if is_correct(n))
        pass_k.append(float(bool(correct)))
        distinct_correct.append(float(len(correct)))
        distinct_answers.append(float(len({n.verdict.answer for n in solutions.values() if n.verdict})))
        picks.append(float(tree.chosen is not None and is_correct(tree.chosen)))
        scores.append(balance_score(n_c, len(selected), cfg.n_star))
        selected_total += len(selected)
        selected_correct += n_c
    n = len(trees)
    return {
        "bstar/pass@k": sum(pass_k) / n,
        "bstar/distinct_correct": sum(distinct_correct) / n,
        "bstar/distinct_answers": sum(distinct_answers) / n,
        "bstar/pick_accuracy": sum(picks) / n,
        "bstar/selected_precision": selected_correct / selected_total if selected_total else 0.0,
        "bstar/balance": sum(scores) / n,
    }
