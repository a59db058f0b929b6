"""Rules that pick a searcher's final answer from its finished solutions."""

from __future__ import annotations

from collections import defaultdict

from sisearch.checks import require_choice
from sisearch.search.tree import Node

ANSWER_RULES = ("highest_value", "majority", "weighted_vote")


def check_rule(rule: str) -> None:
    require_choice("answer rule", rule, ANSWER_RULES)


def choose_answer(terminals: list[Node], rule: str) -> Node | None:
    """The terminal node whose answer the rule picks (ties: the earliest); None if nothing finished.

    `highest_value` takes the node with the highest value; `majority` the most frequent answer;
    `weighted_vote` the answer with the largest summed value. Unparsed answers never win a vote.
    """
    check_rule(rule)
    if not terminals:
        return None
    if rule == "highest_value":
        return max(terminals, key=lambda n: n.value)  # max keeps the first of equals
    totals: dict[str, float] = defaultdict(float)
    for node in terminals:
        answer = node.verdict.answer if node.verdict else None
        if answer is None:
            continue
        totals[answer] += 1.0 if rule == "majority" else node.value
    if not totals:
        return terminals[0]
    best = max(totals, key=lambda a: totals[a])
    # Within the winning answer, return its best-valued node so the chosen path is a strong one.
    return max((n for n in terminals if n.verdict and n.verdict.answer == best), key=lambda n: n.value)
