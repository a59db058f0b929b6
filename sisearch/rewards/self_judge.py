"""`self_judge`: P(True) from the policy's own next-token probabilities (Kadavath et al. 2022, rewards_rl.md §3a).

The node is written into a judging prompt (`template`), and the policy's next-token log-probs of the "yes"
and "no" option tokens are read in one batched call. Each option may have several surface forms (e.g. " A" and
"A" under a BPE tokenizer); an option's mass is the sum over its forms, and P(True) is renormalised over the
two options: `σ(logsumexp(yes) − logsumexp(no))`. Every form must be a single token of the policy's vocabulary.

With `per_step: true` the judge is asked after every step prefix of the node and the answers are aggregated
(min | prod | last | mean), all prefixes of all items in one call. Reads no gold answer, unless the template
has a `{reference}` field: then it is MCTS-DPO's hinted critic (HINTED_EVAL_PROMPT, research/algorithms.md §1.1),
shown the gold solution, so `uses_gold` is true and it belongs to training-time search only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sisearch.checks import require_choice
from sisearch.registry import register
from sisearch.rewards.base import Rewarder, ScoreItem, check_template_fields, template_fields
from sisearch.rewards.scoring import AGGREGATION_MODES, aggregate_step_scores, p_true_from_option_logprobs, _logsumexp
from sisearch.tasks.base import Task

OUTPUTS = ("p_true", "logit")
TEMPLATE_FIELDS = ("question", "prompt", "solution", "answer", "reference")
GOLD_FIELDS = ("reference",)  # fields that read the gold solution


@dataclass
class SelfJudgeConfig:
    name: str = "self_judge"
    # the judging prompt; fields: {question} {prompt} {solution} {answer} (the node's parsed answer, or "")
    # {reference} (the gold solution: a hinted critic, which then reads gold and is for training only)
    template: str = "{prompt}{solution}"
    # appended to the solution when it does not already end with it (so the judge reads a finished line)
    solution_suffix: str = "\n"
    # option surface forms; each must be one token of the policy's vocabulary
    # (named so, because YAML reads the bare keys yes/no as booleans)
    true_options: list[str] = field(default_factory=lambda: list("0123456789A"))
    false_options: list[str] = field(default_factory=lambda: ["W"])
    output: str = "p_true"  # p_true (in [0, 1]) | logit (lp_yes − lp_no)
    per_step: bool = False  # true: judge after every step prefix and aggregate
    aggregate: str = "min"  # per_step: min | prod | last | mean

    def __post_init__(self) -> None:
        require_choice("output", self.output, OUTPUTS)
        require_choice("aggregate", self.aggregate, AGGREGATION_MODES)
        if self.output == "logit" and self.aggregate == "prod":
            raise ValueError("aggregate 'prod' needs output 'p_true' (probabilities)")
        check_template_fields(self.template, TEMPLATE_FIELDS, "unknown template")
        for option, forms in (("true_options", self.true_options), ("false_options", self.false_options)):
            if not forms:
                raise ValueError(f"option '{option}' needs at least one surface form")


def option_token_ids(tokenizer, forms: list[str], option: str) -> list[int]:
    """The single token id of each surface form; a clear error if a form is not exactly one known token."""
    ids = []
    for form in forms:
        tokens = list(tokenizer(form, add_special_tokens=False).input_ids)
        if len(tokens) != 1 or tokens[0] == tokenizer.unk_token_id:
            raise ValueError(
                f"rewarder 'self_judge': option '{option}' form {form!r} is {len(tokens)} token(s) {tokens} "
                f"(or unknown) under the policy's tokenizer; each form must be exactly one known token"
            )
        ids.append(tokens[0])
    return ids


@register("rewarder", "self_judge", schema=SelfJudgeConfig)
class SelfJudgeRewarder(Rewarder):
    uses_gold = False

    def __init__(self, cfg: SelfJudgeConfig, task: Task, engine=None, **_):
        if engine is None:
            raise ValueError("rewarder 'self_judge' needs the policy's engine")
        self.cfg, self.task, self.engine = cfg, task, engine
        self.uses_gold = bool(template_fields(cfg.template) & set(GOLD_FIELDS))
        tokenizer = engine.policy.tokenizer
        self.yes_ids = option_token_ids(tokenizer, cfg.true_options, "true_options")
        self.no_ids = option_token_ids(tokenizer, cfg.false_options, "false_options")
        overlap = set(self.yes_ids) & set(self.no_ids)
        if overlap:
            raise ValueError(f"rewarder 'self_judge': token ids {sorted(overlap)} are in both options")

    def judging_prompt(self, item: ScoreItem, solution: str) -> str:
        if solution and self.cfg.solution_suffix and not solution.endswith(self.cfg.solution_suffix):
            solution = solution + self.cfg.solution_suffix
        answer = self.task.check(item.problem, item.node.state).answer if item.node.state else None
        reference = ""
        if self.uses_gold:
            if item.problem.solution is None:
                raise ValueError(
                    f"rewarder 'self_judge': the template's {{reference}} needs a gold solution; problem "
                    f"{item.problem.id} has none (tasks with solutions: arith, gsm8k, math)"
                )
            reference = item.problem.solution
        return self.cfg.template.format(
            question=item.problem.question, prompt=item.prompt, solution=solution, answer=answer or "",
            reference=reference,
        )

    def judge(self, option_logps: list[float]) -> float:
        """Map the option tokens' log-probs (yes forms, then no forms) to the score."""
        yes, no = option_logps[: len(self.yes_ids)], option_logps[len(self.yes_ids) :]
        if self.cfg.output == "logit":
            return _logsumexp(yes) - _logsumexp(no)
        return p_true_from_option_logprobs(yes, no)

    def score(self, items: list[ScoreItem]) -> list[float]:
        if not items:
            return []
        prompts, spans = [], []
        for item in items:
            if self.cfg.per_step:
                steps = self.task.split_steps(item.node.state)
                prefixes = ["".join(steps[: h + 1]) for h in range(len(steps))] or [""]
            else:
                prefixes = [item.node.state]
            spans.append(len(prefixes))
            prompts.extend(self.judging_prompt(item, p) for p in prefixes)
        logps = self.engine.next_token_logprobs(prompts, self.yes_ids + self.no_ids)
        judged = [self.judge(lp) for lp in logps]
        scores, k = [], 0
        for span in spans:
            scores.append(aggregate_step_scores(judged[k : k + span], self.cfg.aggregate))
            k += span
        return scores
