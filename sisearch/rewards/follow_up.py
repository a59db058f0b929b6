"""`follow_up`: follow-up likelihood as reward (FLR, Zhang et al. 2025, rewards_rl.md §4).

A good response makes positive follow-ups likely and negative ones unlikely. For each category,
`FLR_k = mean_{f ∈ positive} ℓ(f) − mean_{f ∈ negative} ℓ(f)`, with `ℓ(f)` the length-normalised log-likelihood
of the follow-up's tokens after the context; the score is the mean over categories. Every follow-up of every
item is scored in one batched `engine.logprobs` call. Reads no gold answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sisearch.registry import register
from sisearch.rewards.base import Rewarder, ScoreItem, check_template_fields
from sisearch.rewards.scoring import follow_up_score
from sisearch.tasks.base import Task

CONTEXT_FIELDS = ("question", "prompt", "solution")


@dataclass
class FollowUpCategory:
    name: str = "category"
    positive: list[str] = field(default_factory=list)  # follow-ups that a good response makes likely
    negative: list[str] = field(default_factory=list)  # follow-ups that a good response makes unlikely


def default_categories() -> list[FollowUpCategory]:
    # For the tiny arith model, whose alphabet has no letters for English follow-ups: after a solution, the
    # model either moves on to state the answer (positive) or doubts the last line and redoes it (negative).
    return [FollowUpCategory(name="doubt", positive=["\nA:"], negative=["\nWait:"])]


@dataclass
class FollowUpConfig:
    name: str = "follow_up"
    # the conversation so far; fields: {question} {prompt} {solution}. A chat model would use its template here,
    # ending where the next user turn begins.
    context_template: str = "{prompt}{solution}"
    # strip these trailing characters from the solution, so follow-ups that start with a newline align
    strip_solution: str = "\n"
    # a list (not a mapping) so that an override replaces the defaults rather than merging into them
    categories: list[FollowUpCategory] = field(default_factory=default_categories)

    def __post_init__(self) -> None:
        if not self.categories:
            raise ValueError("needs at least one category of follow-ups")
        names_seen = [c.name for c in self.categories]
        if len(set(names_seen)) != len(names_seen):
            raise ValueError(f"category names repeat: {names_seen}")
        for cat in self.categories:
            if not cat.positive or not cat.negative:
                raise ValueError(f"category '{cat.name}' needs positive and negative follow-ups")
            if any(not f for f in cat.positive + cat.negative):
                raise ValueError(f"category '{cat.name}' has an empty follow-up")
        check_template_fields(self.context_template, CONTEXT_FIELDS, "unknown context")


@register("rewarder", "follow_up", schema=FollowUpConfig)
class FollowUpRewarder(Rewarder):
    uses_gold = False

    def __init__(self, cfg: FollowUpConfig, task: Task, engine=None, **_):
        if engine is None:
            raise ValueError("rewarder 'follow_up' needs the policy's engine")
        self.cfg, self.task, self.engine = cfg, task, engine
        # a fixed order of (category, sign, utterance), so each item's follow-ups sit in one contiguous block
        self.layout = [
            (cat.name, sign, f)
            for cat in cfg.categories
            for sign, fs in (("positive", cat.positive), ("negative", cat.negative))
            for f in fs
        ]

    def context(self, item: ScoreItem) -> str:
        solution = item.node.state.rstrip(self.cfg.strip_solution) if self.cfg.strip_solution else item.node.state
        return self.cfg.context_template.format(question=item.problem.question, prompt=item.prompt, solution=solution)

    def combine(self, token_logps: list[list[float]]) -> float:
        """The FLR score of one item from its follow-ups' token log-probs (in `layout` order)."""
        by_cat: dict[str, dict[str, list[list[float]]]] = {}
        for (name, sign, _), lps in zip(self.layout, token_logps):
            by_cat.setdefault(name, {"positive": [], "negative": []})[sign].append(lps)
        per_cat = [follow_up_score(c["positive"], c["negative"]) for c in by_cat.values()]
        return sum(per_cat) / len(per_cat)

    def score(self, items: list[ScoreItem]) -> list[float]:
        if not items:
            return []
        contexts, continuations = [], []
        for item in items:
            ctx = self.context(item)
            for _, _, utterance in self.layout:
                contexts.append(ctx)
                continuations.append(utterance)
        logps = self.engine.logprobs(contexts, continuations)
        width = len(self.layout)
        return [self.combine(logps[i * width : (i + 1) * width]) for i in range(len(items))]
