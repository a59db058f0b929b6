"""Reward heads: token alignment, the masks each kind trains on, training on the tiny model, save/load."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from sisearch.models.tiny import build_tokenizer
from sisearch.rewards.heads import (
    HeadExample,
    HeadTrainConfig,
    RewardHead,
    collate_heads,
    solution_scores,
    token_targets,
    encode_examples,
    encode_steps,
    head_loss,
    label_auroc,
    train_head,
)
from sisearch.rewards.labelling import LabelledSolution, outcome_examples, sample_solutions, step_examples
from sisearch.rewards.orm import ORMConfig, ORMRewarder
from sisearch.rewards.base import ScoreItem
from sisearch.search.tree import Node


def test_encode_steps_marks_the_last_token_of_each_step():
    tok = build_tokenizer()
    ids, ends = encode_steps(tok, "Q:1+2=?\n", ["1+2=3\n", "A:3"])
    # BOS + 8 prompt characters = 9 tokens; the first step's 6 characters end at index 14, the answer at 17
    assert len(ids) == 18 and ends == [14, 17]
    assert tok.decode([ids[14]]) == "\n" and tok.decode([ids[17]]) == "3"
    assert encode_steps(tok, "Q:1+2=?\n", [])[1] == []


def test_outcome_heads_train_every_solution_token_and_step_heads_only_step_ends():
    tok = build_tokenizer()
    ex = [HeadExample("Q:1+2=?\n", ["1+2=3\n", "A:3"], [1.0])]
    batch = collate_heads(encode_examples(tok, ex, "outcome"), "outcome", tok.pad_token_id)
    assert batch.mask[0].nonzero().flatten().tolist() == list(range(9, 18))
    assert batch.targets[0, 9:].tolist() == [1.0] * 9 and batch.targets[0, :9].tolist() == [0.0] * 9
    ex = [HeadExample("Q:1+2=?\n", ["1+2=3\n", "A:3"], [0.25, 1.0])]
    batch = collate_heads(encode_examples(tok, ex, "step"), "step", tok.pad_token_id)
    assert batch.mask[0].nonzero().flatten().tolist() == [14, 17]
    assert batch.targets[0, 14].item() == 0.25 and batch.targets[0, 17].item() == 1.0
    with pytest.raises(ValueError, match="one target per step"):
        encode_examples(tok, [HeadExample("Q", ["a\n", "b"], [1.0])], "step")


@pytest.fixture()
def own_samples(engine, arith_task) -> list[LabelledSolution]:
    """The small tiny model's own solutions (4 each for 16 train problems), labelled by the checker."""
    engine.reseed(0)
    return sample_solutions(arith_task, engine, arith_task.problems("train")[:16], 4, 1.0)


# BCE only (the pairwise term is tested on its own below)
FAST = HeadTrainConfig(
    lr=1e-3, batch_size=8, epochs=3.0, dropout=0.0, progress=False, labels="exact", pairwise_coef=0.0
)


def test_outcome_head_training_lowers_the_loss_and_separates_right_from_wrong(tiny_policy, arith_task, own_samples):
    # The small test model solves few problems (3-8 of its 64 samples, by seed), too few right answers for a
    # stable AUROC; the gold solutions of the same problems are the right examples, its own misses the wrong.
    gold = [
        LabelledSolution(s.problem, s.prompt, s.problem.solution, arith_task.split_steps(s.problem.solution), True)
        for s in own_samples[::4]
    ]
    examples = outcome_examples(gold + [s for s in own_samples if not s.correct])
    assert 0 < sum(e.targets[0] for e in examples) < len(examples)  # both classes present
    head = RewardHead.fresh(tiny_policy, "outcome", dropout=0.0, step_delimiter="\n")
    before = head_loss(head, examples)
    assert before == pytest.approx(math.log(2.0), abs=1e-6)  # a zero-initialised head says 0.5 everywhere
    metrics = train_head(head, examples, FAST)
    rate = sum(e.targets[0] for e in examples) / len(examples)
    base_rate_loss = -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate))  # the best constant prediction
    assert head_loss(head, examples) < base_rate_loss < before
    assert metrics["train/label_auroc"] > 0.55
    assert metrics["train/steps"] == math.ceil(len(examples) / 8) * 3  # batches of 8, 3 epochs


def test_step_head_training_lowers_the_loss_and_ranks_steps(tiny_policy, arith_task, own_samples, tmp_path):
    examples = step_examples(arith_task, None, own_samples, "exact", rollouts=1, temperature=1.0)
    truth = arith_task.check_steps(own_samples[0].problem, own_samples[0].steps)
    assert examples[0].targets == [float(t) for t in truth]
    head = RewardHead.fresh(tiny_policy, "step", dropout=0.0, step_delimiter="\n")
    before = head_loss(head, examples)
    train_head(head, examples, FAST)
    assert head_loss(head, examples) < 0.5 * before
    assert label_auroc(head, examples)["train/label_auroc"] > 0.8
    # save and reload: the same numbers come back
    prompts, steps = [e.prompt for e in examples[:4]], [e.steps for e in examples[:4]]
    expected = head.values_at(prompts, steps)
    loaded = RewardHead.load(head.save(tmp_path / "prm"))
    assert loaded.meta.kind == "step"
    assert all(a == pytest.approx(b, abs=1e-6) for a, b in zip(loaded.values_at(prompts, steps), expected))


def test_monte_carlo_step_labels_come_from_rollouts(engine, arith_task, own_samples):
    sols = own_samples[:3]
    hard = step_examples(arith_task, engine, sols, "mc_hard", rollouts=2, temperature=1.0)
    soft = step_examples(arith_task, engine, sols, "mc_soft", rollouts=2, temperature=1.0)
    for s, h, x in zip(sols, hard, soft):
        assert len(h.targets) == len(x.targets) == len(s.steps)
        assert all(t in (0.0, 0.5, 1.0) for t in x.targets) and all(t in (0.0, 1.0) for t in h.targets)
        # the last step is the finished solution: checked directly, so both labels are its verdict
        assert h.targets[-1] == x.targets[-1] == float(s.correct)


def test_orm_trained_mode_fits_saves_and_reloads(engine, arith_task, own_samples, tmp_path):
    path = tmp_path / "orm"
    cfg = ORMConfig(mode="trained", path=str(path), train=HeadTrainConfig(
        problems=4, samples_per_problem=2, epochs=1.0, batch_size=4, progress=False))
    rewarder = ORMRewarder(cfg, task=arith_task, engine=engine)  # no head yet: trained at construction
    assert (path / "head.safetensors").is_file() and not rewarder.uses_gold
    metrics = rewarder.fit(own_samples)
    assert metrics["train/examples"] == float(sum(1 for s in own_samples if s.steps))
    problem = arith_task.problems("train")[0]
    items = [ScoreItem(problem, arith_task.prompt(problem), Node(state=problem.solution, terminal=True)),
             ScoreItem(problem, arith_task.prompt(problem), Node(state="", terminal=False))]
    scores = rewarder.score(items)
    assert all(0.0 < s < 1.0 for s in scores)
    again = ORMRewarder(cfg, task=arith_task, engine=engine)  # reloads the saved head, trains nothing
    assert again.score(items) == pytest.approx(scores, abs=1e-6)


def test_head_training_uses_the_runs_trainer_settings_and_logs_each_step(tiny_policy):
    """Inside a run, a head's Trainer takes the run's settings (here a callback) and its per-step loss and
    accuracy go to the run's logger, on the run's global step."""
    from sisearch.optim.common import TrainerConfig
    from sisearch.optim.session import training_session
    from sisearch.tracking.steps import StepSink

    rows: list[tuple[int, dict]] = []
    sink = StepSink([lambda metrics, step: rows.append((step, metrics))], start_step=5)
    monitor = {"_target_": "lightning.pytorch.callbacks.LearningRateMonitor", "logging_interval": "step"}
    settings = TrainerConfig(accelerator="cpu", progress_bar=False, callbacks=[monitor])
    examples = [HeadExample("Q:1+2=?\n", ["1+2=3\n", "A:3"], [1.0]), HeadExample("Q:1+2=?\n", ["1+2=4\n", "A:4"], [0.0])]
    head = RewardHead.fresh(tiny_policy, "outcome", dropout=0.0, step_delimiter="\n")
    with training_session(settings, sink):
        metrics = train_head(head, examples, HeadTrainConfig(batch_size=2, epochs=3.0, dropout=0.0, progress=False))
    assert [step for step, _ in rows] == [6, 7, 8] and metrics["train/steps"] == 3.0
    for _, row in rows:
        assert {"reward_head/loss", "reward_head/head_loss", "reward_head/accuracy", "reward_head/grad_norm",
                "reward_head/learning_rate"} <= set(row)
        assert "reward_head/lr-AdamW/pg2" in row  # the configured callback: one rate per parameter group
    assert rows[0][1]["reward_head/accuracy"] == 0.5  # a zero head: values 0 are not > 0, so only the 0-label agrees
    assert rows[0][1]["reward_head/head_loss"] == pytest.approx(math.log(2.0), abs=1e-6)


# ---------------------------------------------------------------- selection within a problem (issue 16)


def test_token_targets_place_labels_per_kind_and_positions():
    # prompt of 3 tokens; steps end at 5 and 7 (tokens 3-5 are step 1, 6-7 step 2)
    assert token_targets(3, [5, 7], [1.0], "outcome", "auto") == {3: 1.0, 4: 1.0, 5: 1.0, 6: 1.0, 7: 1.0}
    assert token_targets(3, [5, 7], [0.0], "outcome", "ends") == {5: 0.0, 7: 0.0}
    assert token_targets(3, [5, 7], [0.25, 1.0], "step", "auto") == {5: 0.25, 7: 1.0}
    # a value at every token: each token of a step learns that step's label
    assert token_targets(3, [5, 7], [0.25, 1.0], "step", "tokens") == {3: 0.25, 4: 0.25, 5: 0.25, 6: 1.0, 7: 1.0}


def test_step_heads_at_every_token_train_each_token_on_its_step_label():
    tok = build_tokenizer()
    ex = [HeadExample("Q:1+2=?\n", ["1+2=3\n", "A:3"], [0.25, 1.0], group="p", outcome=1.0)]
    batch = collate_heads(encode_examples(tok, ex, "step"), "step", tok.pad_token_id, positions="tokens")
    assert batch.mask[0].nonzero().flatten().tolist() == list(range(9, 18))
    assert batch.targets[0, 9:15].tolist() == [0.25] * 6 and batch.targets[0, 15:].tolist() == [1.0] * 3
    assert batch.ends[0].nonzero().flatten().tolist() == [14, 17]  # still read at the step ends


def test_solution_scores_read_the_last_token_or_the_lowest_step_end():
    tok = build_tokenizer()
    ex = [HeadExample("Q:1+2=?\n", ["1+2=3\n", "A:3"], [1.0, 1.0], "p", 1.0),
          HeadExample("Q:1+2=?\n", ["A:3"], [0.0], "p", 0.0)]
    batch = collate_heads(encode_examples(tok, ex, "step"), "step", tok.pad_token_id)
    values = torch.arange(36, dtype=torch.float).reshape(2, 18) / 10  # row 1 is padded after index 11
    values[0, 14] = -2.0  # the first step end of row 0 is its lowest
    assert solution_scores(values, batch, "step").tolist() == pytest.approx([-2.0, 2.9])  # row 1 ends at 11
    assert solution_scores(values, batch, "outcome").tolist() == pytest.approx([1.7, 2.9])
    assert batch.groups.tolist() == [0, 0] and batch.outcomes.tolist() == [1.0, 0.0]


def test_head_config_rejects_unknown_positions_and_no_loss():
    with pytest.raises(ValueError, match="allowed: auto, tokens, ends"):
        HeadTrainConfig(positions="everywhere")
    with pytest.raises(ValueError, match="not both 0"):
        HeadTrainConfig(pointwise_coef=0.0, pairwise_coef=0.0)


def test_pairwise_head_learns_to_rank_within_problems(tiny_policy, arith_task, own_samples):
    """Bradley-Terry alone on same-problem pairs: the zero head ties everything (within-problem AUROC 0.5);
    trained, it ranks each problem's gold solution above the model's own wrong ones."""
    gold = [
        LabelledSolution(s.problem, s.prompt, s.problem.solution, arith_task.split_steps(s.problem.solution), True)
        for s in own_samples[::4]
    ]
    examples = outcome_examples(gold + [s for s in own_samples if not s.correct])
    assert {e.group for e in examples} == {s.problem.id for s in own_samples}
    head = RewardHead.fresh(tiny_policy, "outcome", dropout=0.0, step_delimiter="\n")
    assert label_auroc(head, examples)["train/within_problem_auroc"] == 0.5
    cfg = replace(FAST, pointwise_coef=0.0, pairwise_coef=1.0, batch_size=16)
    metrics = train_head(head, examples, cfg)
    assert metrics["train/within_problem_auroc"] > 0.75
    # whole problems per batch: 16 problems of about 4.x samples -> batches of round(16 * 16 / N) problems
    per_batch = round(16 * 16 / len(examples))
    assert metrics["train/steps"] == math.ceil(16 / per_batch) * 3


def test_step_head_with_pairwise_term_and_value_at_every_token(tiny_policy, arith_task, own_samples):
    examples = step_examples(arith_task, None, own_samples, "exact", rollouts=1, temperature=1.0)
    assert [e.outcome for e in examples] == [float(s.correct) for s in own_samples if s.steps]
    head = RewardHead.fresh(tiny_policy, "step", dropout=0.0, step_delimiter="\n")
    before = head_loss(head, examples, positions="tokens")
    train_head(head, examples, replace(FAST, positions="tokens", pairwise_coef=0.5))
    assert head_loss(head, examples, positions="tokens") < 0.6 * before
    assert label_auroc(head, examples)["train/label_auroc"] > 0.7  # read at step ends; a zero head: 0.5


def test_reward_quality_benchmark_lists_its_rewarders_for_an_unknown_name():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "reward_quality.py"
    done = subprocess.run([sys.executable, str(script), "--rewarders", "orm (trained)", "nope"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "KeyError" not in done.stderr
    assert "unknown rewarder(s) 'nope'; choose from:" in done.stderr
    assert "  orm (trained)\n" in done.stderr and "  pav (Bo4 prover)" in done.stderr
