"""`pav`: process advantage verifier (Setlur et al. 2024, rewards_rl.md §2).

A step's progress is the change in a prover μ's estimated success before and after it,
`A^μ = Q^μ(after) − Q^μ(before)`, and the node's score is the effective reward `Q^π(after) + alpha · A^μ`
for its last step. Values come from `estimator`:
- `rollouts`: Monte-Carlo estimates, `rollouts` completions from each prefix checked by the task (reads the gold
  answer: training time only); a finished prefix's value is its verdict.
- `trained`: verifiers `q_φ(prefix) ≈ Q` (step heads trained with soft Monte-Carlo labels, as in the paper's
  "training a PAV"), read at the end of each prefix; needs no gold answer at scoring time. Q^π comes from a head
  trained on the policy's rollouts; the prover's values from the same head (policy, best_of_k) or from a second
  head trained on the prover model's rollouts (model). Heads are loaded from `path` / `prover_head_path` or
  trained at construction when missing (train_if_missing), like orm/prm.

The prover (`prover`):
- `policy`: μ = π; one set of rollouts gives both Q^π and Q^μ.
- `best_of_k`: μ = Bo-K(π) with an oracle selector; `Q^μ = 1 − (1 − Q̂^π)^k` from π's own rollouts.
- `model`: another model directory (`prover_path`), rolled out with its own HF engine.
All prefixes of all items go to each engine in one generate call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sisearch.checks import require_choice
from sisearch.engines.hf import HFEngine, HFEngineConfig
from sisearch.models.policy import load_policy
from sisearch.registry import register
from sisearch.rewards.base import Rewarder, ScoreItem
from sisearch.rewards.heads import HeadTrainConfig
from sisearch.rewards.labelling import PrefixQuery, obtain_head, rollout_successes
from sisearch.rewards.scoring import best_of_k_value, pav_step_rewards, prover_success_estimate
from sisearch.tasks.base import Task

PROVERS = ("policy", "best_of_k", "model")
ESTIMATORS = ("rollouts", "trained")


@dataclass
class PAVConfig:
    name: str = "pav"
    alpha: float = 1.0  # weight of the prover's advantage (not recovered from the paper: sweep it, e.g. 0.5-5)
    rollouts: int = 8  # Monte-Carlo completions per prefix
    temperature: float = 1.0  # of the rollouts
    prover: str = "best_of_k"  # policy | best_of_k (mu = Bo-K(pi)) | model (another model directory)
    k: int = 4  # best_of_k: K (Bo4 was best for a small base)
    prover_path: str | None = None  # model: the prover's HF model directory
    prover_device: str = "auto"  # model: where the prover's model runs
    seed: int = 0  # the prover engine's sampling seed
    estimator: str = "rollouts"  # rollouts (Monte-Carlo: reads the gold answer) | trained (verifier heads)
    # trained: heads' locations (null: cache paths keyed by model, task and settings), training when missing
    path: str | None = None
    prover_head_path: str | None = None
    train_if_missing: bool = True
    # trained: labels must be mc_soft; pointwise only, for 2 epochs: the heads estimate values (q ~ Q), which a
    # ranking loss would not keep calibrated
    train: HeadTrainConfig = field(default_factory=lambda: HeadTrainConfig(epochs=2.0, pairwise_coef=0.0))

    def __post_init__(self) -> None:
        require_choice("estimator", self.estimator, ESTIMATORS)
        require_choice("prover", self.prover, PROVERS)
        if self.rollouts < 1 or self.k < 1:
            raise ValueError(f"rollouts and k must be at least 1, got {self.rollouts} and {self.k}")
        if self.prover == "model" and not self.prover_path:
            raise ValueError("prover=model needs prover_path (an HF model directory)")
        if self.estimator == "trained" and self.train.labels != "mc_soft":
            raise ValueError("trained verifiers estimate values, so train.labels must be mc_soft")


def values_around_last_step(head, prompts: list[str], steps: list[list[str]]) -> tuple[list[float], list[float]]:
    """A head's value before and after each text's last step (before a first step: the value at the prompt)."""
    # one pass: each text with its last step, plus the bare prompt for texts of at most one step
    values = head.values_at(prompts + prompts, steps + [[] for _ in steps])
    after, at_prompt = values[: len(steps)], values[len(steps) :]
    before = [v[-2] if len(s) >= 2 else p[0] for v, s, p in zip(after, steps, at_prompt)]
    return before, [v[-1] for v in after]


@register("rewarder", "pav", schema=PAVConfig)
class PAVRewarder(Rewarder):
    uses_gold = True

    def __init__(self, cfg: PAVConfig, task: Task, engine=None, **_):
        if engine is None:
            raise ValueError("rewarder 'pav' needs the policy's engine for its rollouts")
        self.cfg, self.task, self.engine = cfg, task, engine
        self.prover_engine = None
        if cfg.prover == "model":
            self.prover_engine = HFEngine(HFEngineConfig(seed=cfg.seed), load_policy(cfg.prover_path, cfg.prover_device))
        self.uses_gold = cfg.estimator == "rollouts"
        self.head = self.prover_head = None
        if cfg.estimator == "trained":
            self.head, _ = obtain_head("pav", "step", cfg.path, cfg.train_if_missing, cfg.train, task, engine)
            if self.prover_engine is not None:
                self.prover_head, _ = obtain_head(
                    "pav-prover", "step", cfg.prover_head_path, cfg.train_if_missing, cfg.train, task, engine,
                    rollout_engine=self.prover_engine,
                )

    def prefixes(self, item: ScoreItem) -> tuple[str, str]:
        """(state before the node's last step, state after it)."""
        steps = self.task.split_steps(item.node.state)
        return "".join(steps[:-1]), item.node.state

    def trained_values(self, items: list[ScoreItem]) -> tuple[list[float], list[float], list[float]]:
        """(Q^π after, Q^μ before, Q^μ after) from the trained verifiers, one batched pass per head."""
        prompts = [item.prompt for item in items]
        steps = [self.task.split_steps(item.node.state) for item in items]
        q_before, q_after = values_around_last_step(self.head, prompts, steps)
        if self.prover_head is not None:
            mu_before, mu_after = values_around_last_step(self.prover_head, prompts, steps)
            return q_after, mu_before, mu_after
        k = self.cfg.k if self.cfg.prover == "best_of_k" else 1
        return q_after, [best_of_k_value(q, k) for q in q_before], [best_of_k_value(q, k) for q in q_after]

    def score(self, items: list[ScoreItem]) -> list[float]:
        if not items:
            return []
        if self.cfg.estimator == "trained":
            q_policy, mu_before, mu_after = self.trained_values(items)
            return pav_step_rewards(mu_before, mu_after, self.cfg.alpha, base=q_policy)
        pairs = [self.prefixes(item) for item in items]
        after = [PrefixQuery(i.problem, i.prompt, a) for i, (_, a) in zip(items, pairs)]
        before = [PrefixQuery(i.problem, i.prompt, b) for i, (b, _) in zip(items, pairs)]
        n, temp = self.cfg.rollouts, self.cfg.temperature
        policy_counts = rollout_successes(self.task, self.engine, after + before, n, temp)
        q_policy = [w / t for w, t in policy_counts[: len(items)]]
        if self.prover_engine is None:
            k = self.cfg.k if self.cfg.prover == "best_of_k" else 1
            prover_counts = policy_counts
        else:
            k = 1
            prover_counts = rollout_successes(self.task, self.prover_engine, after + before, n, temp)
        q_prover = prover_success_estimate([w for w, _ in prover_counts], [t for _, t in prover_counts], k)
        return pav_step_rewards(q_prover[len(items) :], q_prover[: len(items)], self.cfg.alpha, base=q_policy)
