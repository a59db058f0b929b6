"""Gradient tests: a few optimizer steps on a tiny fixed dataset move each objective's metric the right way.

All on the small tiny model from conftest, on arith problems whose right and wrong steps are known exactly.
"""

from __future__ import annotations

import copy

import pytest
import torch

from sisearch.data.correction_traces import CorrectionTrace
from sisearch.data.ranked_lists import RankedList
from sisearch.data.records import PreferencePair
from sisearch.optim.common import TrainerConfig
from sisearch.optim.dpo import DPOConfig, DPOOptimizer
from sisearch.optim.logprobs import IGNORE, collate_completions
from sisearch.optim.score import ScoreConfig, ScoreOptimizer, exact_kl, sampled_logps
from sisearch.optim.step_apo import StepAPOConfig, StepAPOOptimizer
from sisearch.optim.tpo import TPOConfig, TPOOptimizer, collate_lists, encode_lists, step_sums, top_response_nll

TRAINER = TrainerConfig(accelerator="cpu", progress_bar=False, gradient_clip_val=1.0)


def wrong(line: str) -> str:
    """The same step with its result off by one (mod 10)."""
    lhs, result = line.split("=")
    return f"{lhs}={(int(result) + 1) % 10}"


def problems(task, count: int = 8, ops: int = 3):
    return [p for p in task.problems("train") if p.difficulty == f"ops_{ops}"][:count]


def step_pairs_for(task) -> list[PreferencePair]:
    pairs = []
    for p in problems(task):
        lines = p.solution.split("\n")
        prompt = task.prompt(p) + lines[0] + "\n"
        pairs.append(PreferencePair(p.id, prompt, lines[1] + "\n", wrong(lines[1]) + "\n", chosen_value=1.0,
                                    rejected_value=-1.0, chosen_visits=4, rejected_visits=1,
                                    chosen_complete=False, rejected_complete=False))
    return pairs


def first_and_last(metrics_history: dict[str, list[float]], key: str) -> tuple[float, float]:
    values = metrics_history[key]
    return values[0], values[-1]


@pytest.mark.parametrize(
    "optimizer",
    [
        DPOOptimizer(DPOConfig(lr=2e-3, batch_size=8, epochs=6, loss_type="conservative", use_visit_counts=True)),
        StepAPOOptimizer(StepAPOConfig(lr=2e-3, batch_size=8, epochs=6, beta=0.3, alpha=0.5)),
    ],
    ids=["dpo", "step_apo"],
)
def test_pairwise_optimizers_learn_the_preferred_step(optimizer, tiny_policy, arith_task, monkeypatch):
    history = capture_history(monkeypatch)
    metrics = optimizer.fit(tiny_policy, step_pairs_for(arith_task), TRAINER, seed=0)
    assert metrics["train/steps"] == 6.0
    acc0, acc1 = first_and_last(history, "rewards/accuracies")
    margin0, margin1 = first_and_last(history, "rewards/margins")
    assert acc0 == 0.0 and margin0 == 0.0  # policy == reference at the first step: ties are inaccurate
    assert acc1 >= 0.75 and margin1 > 0.05


def test_step_apo_needs_q_values(tiny_policy, arith_task):
    pairs = step_pairs_for(arith_task)
    pairs[3].rejected_value = None
    with pytest.raises(ValueError, match="advantage_pairs"):
        StepAPOOptimizer(StepAPOConfig()).fit(tiny_policy, pairs, TRAINER, seed=0)


def ranked_lists_for(task) -> list[RankedList]:
    lists = []
    for p in problems(task):
        gold = p.solution.split("\n")
        late = gold[:-2] + [wrong(gold[-2]), "A:" + wrong(gold[-2]).split("=")[1]]  # last operation wrong
        early = [wrong(gold[0])] + gold[1:-1] + ["A:" + str((int(p.answer) + 1) % 10)]  # first operation wrong
        steps = [[line + "\n" for line in s[:-1]] + [s[-1]] for s in (gold, late, early)]
        lists.append(RankedList(p.id, task.prompt(p), steps, [2.0, 1.0, 0.0], [True, True, True]))
    return lists


@pytest.mark.parametrize("adaptive", [True, False], ids=["adaptive_steps", "response_level"])
def test_tpo_learns_the_ranking(adaptive, tiny_policy, arith_task, monkeypatch):
    history = capture_history(monkeypatch)
    cfg = TPOConfig(lr=2e-3, batch_size=8, epochs=6, beta=2.0 if adaptive else 0.5, adaptive_steps=adaptive)
    TPOOptimizer(cfg).fit(tiny_policy, ranked_lists_for(arith_task), TRAINER, seed=0)
    acc0, acc1 = first_and_last(history, "rewards/accuracies")
    margin0, margin1 = first_and_last(history, "rewards/margins")
    loss0, loss1 = first_and_last(history, "loss")
    assert acc0 == 0.0 and margin0 == 0.0
    assert acc1 >= 0.75 and margin1 > 0.0 and loss1 < loss0


def test_tpo_nll_term_on_the_top_response_by_hand():
    # two lists of width 3; the second list has only two responses (slot 2 invalid, its huge score ignored)
    logps = torch.tensor([[-2.0, -6.0, -9.0], [-3.0, -1.0, 0.0]])
    counts = torch.tensor([[4.0, 3.0, 3.0], [2.0, 5.0, 0.0]])
    scores = torch.tensor([[1.0, 0.0, -1.0], [0.0, 0.5, 9.0]])
    valid = torch.tensor([[True, True, True], [True, True, False]])
    # list 1: top is slot 0 -> 2/4; list 2: top is slot 1 -> 1/5; mean (0.5 + 0.2) / 2
    assert top_response_nll(logps, counts, scores, valid).item() == pytest.approx(0.35)


def test_tpo_with_nll_term_keeps_the_top_response_likely(tiny_policy, arith_task, monkeypatch):
    final_top_logps = {}
    for weight in (0.0, 1.0):
        history = capture_history(monkeypatch)
        policy = copy.deepcopy(tiny_policy)
        cfg = TPOConfig(lr=2e-3, batch_size=8, epochs=6, beta=0.5, adaptive_steps=False, nll_weight=weight)
        TPOOptimizer(cfg).fit(policy, ranked_lists_for(arith_task), TRAINER, seed=0)
        final_top_logps[weight] = history["logps/chosen"][-1]
        assert ("nll_loss" in history) == (weight > 0)
    assert final_top_logps[1.0] > final_top_logps[0.0]


def test_tpo_step_index_follows_the_shifted_labels(tiny_policy, arith_task):
    lists = ranked_lists_for(arith_task)[:1]
    items = encode_lists(tiny_policy, lists)
    batch = collate_lists(items, tiny_policy.tokenizer.pad_token_id, None)
    # every completion token has a step, nothing else has one, and the gold response's steps are its lines
    assert torch.equal(batch.step_index >= 0, batch.labels != IGNORE)
    gold = lists[0].responses[0]
    counts = step_sums(torch.ones(batch.step_index.shape), batch.step_index, batch.num_steps)[0]
    expected = [len(s) for s in gold]
    expected[-1] += 1  # EOS belongs to the last step
    assert counts.tolist()[: len(gold)] == expected


def test_exact_kl_and_sampled_logps_by_hand():
    # one row, prompt [5], completion [1, 2]; vocab of 3. KL is zero against itself and positive otherwise.
    batch = collate_completions([([5], [1, 2])], pad_id=0)
    batch.input_ids = batch.input_ids.clamp(max=2)
    logits = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [9.0, 9.0, 9.0]]])
    assert exact_kl(logits, logits, batch.labels).item() == pytest.approx(0.0, abs=1e-7)
    ref = torch.zeros_like(logits)
    # position 0: uniform vs uniform -> 0; position 1: p = softmax(1,0,0) vs uniform -> sum p log(3p)
    p = torch.softmax(torch.tensor([1.0, 0.0, 0.0]), -1)
    assert exact_kl(logits, ref, batch.labels).item() == pytest.approx(float((p * (3 * p).log()).sum()), rel=1e-6)
    # log p(1 | pos 0) + log p(2 | pos 1) = log(1/3) + log p[2]
    assert sampled_logps(logits, batch.labels).item() == pytest.approx(float(torch.log(torch.tensor(1 / 3)) + p[2].log()), rel=1e-6)


def candidate_texts(task, p) -> tuple[str, str]:
    """(the gold solution, the same solution with its last operation wrong)."""
    gold = p.solution.split("\n")
    bad = gold[:-2] + [wrong(gold[-2]), "A:" + wrong(gold[-2]).split("=")[1]]
    return "\n".join(gold), "\n".join(bad)


def candidate_expected_reward(policy, prompts: list[str], candidates: list[tuple[str, str]]) -> float:
    """Mean over problems of the exact expected reward of the policy restricted to {right, wrong} attempts."""
    from sisearch.optim.logprobs import encode_completion, encode_prompt

    tok = policy.tokenizer
    rows = [(encode_prompt(tok, x), encode_completion(tok, y, append_eos=True)) for x, pair in zip(prompts, candidates) for y in pair]
    batch = collate_completions(rows, tok.pad_token_id)
    with torch.no_grad():
        logps = sampled_logps(policy.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits, batch.labels)
    right, bad = logps.view(-1, 2).unbind(-1)
    return float(torch.sigmoid(right - bad).mean())


def test_score_raises_the_expected_reward(tiny_policy, arith_task, monkeypatch):
    """The training step's estimator on a fixed sampler: half the attempts right, half wrong, on both turns.

    Stage I (first 2 steps) rewards only the second attempt, so only its expected reward may rise there;
    stage II (last 2 steps) rewards both. Expected rewards are exact over the two candidate attempts.
    """
    from sisearch.engines.base import Sample
    from sisearch.optim.logprobs import encode_completion
    from sisearch.optim.score import ScoreModule

    history = capture_history(monkeypatch)
    train = problems(arith_task, count=4, ops=3)
    by_prompt = {arith_task.prompt(p): candidate_texts(arith_task, p) for p in train}
    tok = tiny_policy.tokenizer

    def fixed_attempts(self, prompts, n):
        out = []
        for i, prompt in enumerate(prompts):
            first_turn = prompt in by_prompt
            key = prompt if first_turn else prompt.split("\n", 1)[0] + "\n"  # x2 starts with x1's question line
            texts = by_prompt[key]
            order = range(n) if first_turn else [i + 1]  # second turn: flip parity against the first attempt
            out.append([Sample(texts[j % 2], encode_completion(tok, texts[j % 2], append_eos=True), [], "eos") for j in order])
        return out

    monkeypatch.setattr(ScoreModule, "attempts", fixed_attempts)
    traces = [CorrectionTrace(p.id, arith_task.prompt(p), "", "\n" + arith_task.prompt(p), "", 0.0, 0.0) for p in train]
    first_prompts = [t.prompt for t in traces]
    second_prompts = [t.prompt + by_prompt[t.prompt][1] + t.correction for t in traces]  # after a wrong first try
    candidates = [by_prompt[t.prompt] for t in traces]

    def rewards() -> tuple[float, float]:
        return (candidate_expected_reward(tiny_policy, first_prompts, candidates),
                candidate_expected_reward(tiny_policy, second_prompts, candidates))

    first0, second0 = rewards()
    cfg = ScoreConfig(lr=1e-3, batch_size=4, samples_per_prompt=4, epochs=2, stage1_fraction=0.5)
    ScoreOptimizer(cfg, task=arith_task).fit(tiny_policy, traces, TRAINER, seed=0)
    first1, second1 = rewards()
    assert history["stage"] == [1.0, 2.0]
    # every first attempt alternates right/wrong and every second attempt flips it
    assert history["reward/first"] == [0.5, 0.5] and history["reward/incorrect_to_correct"] == [0.5, 0.5]
    assert history["answers/changed"] == [1.0, 1.0]
    assert second1 > second0 + 0.05, (second0, second1)
    assert first1 > first0, (first0, first1)
    for key in ("kl/first", "kl/second", "objective/kl", "advantages/mean"):
        assert key in history


def test_score_samples_on_policy_in_the_training_step(tiny_policy, arith_task, monkeypatch):
    history = capture_history(monkeypatch)
    train = problems(arith_task, count=2, ops=2)
    traces = [CorrectionTrace(p.id, arith_task.prompt(p), "", "\n" + arith_task.prompt(p), "", 0.0, 0.0) for p in train]
    cfg = ScoreConfig(batch_size=2, samples_per_prompt=2, epochs=2, max_new_tokens=20, stage1_fraction=0.5)
    metrics = ScoreOptimizer(cfg, task=arith_task).fit(tiny_policy, traces, TRAINER, seed=0)
    assert metrics["train/steps"] == 2.0 and history["stage"] == [1.0, 2.0]
    assert history["kl/first"][0] == pytest.approx(0.0, abs=1e-6)  # the reference is the policy before training
    assert all(0.0 <= r <= 1.0 for r in history["reward/first"] + history["reward/second"])


def test_score_needs_the_task_and_two_samples(tiny_policy):
    with pytest.raises(ValueError, match="at least 2"):
        ScoreOptimizer(ScoreConfig(samples_per_prompt=1))
    with pytest.raises(ValueError, match="needs the task"):
        ScoreOptimizer(ScoreConfig()).fit(tiny_policy, [], TRAINER, seed=0)


def capture_history(monkeypatch) -> dict[str, list[float]]:
    """The per-step metrics of the next training run (ObjectiveModule.history of the module that ran)."""
    from sisearch.optim import base

    captured: dict[str, list[float]] = {}
    original = base.run_training

    def spy(module, *args, **kwargs):
        try:
            return original(module, *args, **kwargs)
        finally:
            captured.update(module.history)

    for name in ("sisearch.optim.base", "sisearch.optim.dpo", "sisearch.optim.tpo", "sisearch.optim.score"):
        monkeypatch.setattr(f"{name}.run_training", spy)
    return captured


@pytest.mark.parametrize(
    "build",
    [lambda: DPOOptimizer(DPOConfig(nll_weight=-1.0)), lambda: StepAPOOptimizer(StepAPOConfig(nll_weight=-1.0)),
     lambda: TPOOptimizer(TPOConfig(nll_weight=-1.0))],
    ids=["dpo", "step_apo", "tpo"],
)
def test_a_negative_nll_weight_is_refused(build):
    with pytest.raises(ValueError, match="nll_weight must be >= 0, got -1.0"):
        build()


def pair_batch(records: list[PreferencePair], ref_chosen: list[float], ref_rejected: list[float]):
    """A batch of the records' indices and reference log-probs (the log-prob rows are not needed here)."""
    from sisearch.optim.pairs import PairBatch

    return PairBatch(None, torch.arange(len(records)), torch.tensor(ref_chosen), torch.tensor(ref_rejected))


def test_dpo_nll_only_on_verified_correct_or_confident_chosen_sides():
    def pair(correct, n_w, n_l):
        return PreferencePair("p", "Q", "a", "b", chosen_visits=n_w, rejected_visits=n_l, chosen_correct=correct)

    records = [pair(True, 1, 1), pair(False, 3, 1), pair(None, 4, 0)]
    batch, like = pair_batch(records, [0.0] * 3, [0.0] * 3), torch.zeros(3)
    correct = DPOOptimizer(DPOConfig(nll_on="correct", loss_type="conservative", use_visit_counts=True))
    correct.records = records
    assert correct.nll_weights(batch, like).tolist() == [1.0, 0.0, 0.0]  # unknown counts as not verified
    confident = DPOOptimizer(DPOConfig(nll_on="confident", loss_type="conservative", use_visit_counts=True))
    confident.records = records
    # eps = min(1 - N_w / (N_w + N_l), 0.5): 0.5 (neutral: no NLL), 0.25 (half) and 0 (the full term)
    assert confident.nll_weights(batch, like).tolist() == [0.0, 0.5, 1.0]
    smoothed = DPOOptimizer(DPOConfig(nll_on="confident", loss_type="conservative", label_smoothing=0.5))
    smoothed.records = records
    assert smoothed.nll_weights(batch, like).tolist() == [0.0, 0.0, 0.0]
    assert DPOOptimizer(DPOConfig()).nll_weights(batch, like).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="allowed: all, correct, confident"):
        DPOConfig(nll_on="chosen")
    with pytest.raises(ValueError, match="needs loss_type 'conservative'"):
        DPOConfig(nll_on="confident")


def test_ipo_works_on_length_averaged_log_ratios():
    records = [PreferencePair("p", "Q", "a", "b")]
    optimizer = DPOOptimizer(DPOConfig(loss_type="ipo", beta=0.5))
    optimizer.records = records
    batch = pair_batch(records, [-4.0], [-3.0])
    # chosen -2 over 4 tokens (ref -4), rejected -6 over 2 tokens (ref -3): h = (-0.5 + 1) - (-3 + 1.5) = 2.0
    out = optimizer.pair_loss(batch, torch.tensor([-2.0]), torch.tensor([-6.0]), torch.tensor([4]), torch.tensor([2]))
    assert out.loss.item() == pytest.approx((2.0 - 1.0 / (2 * 0.5)) ** 2)  # (h - 1/(2 beta))^2 = 1; summed h = 5 gave 16
