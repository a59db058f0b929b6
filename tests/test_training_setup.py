"""Training settings shared by every optimizer: learning-rate schedules, step counts, gradient
accumulation, and the reference policy under LoRA (adapters switched off)."""

from __future__ import annotations

import math

import pytest
import torch
from test_optimizers import TRAINER, capture_history, step_pairs_for

from sisearch.models.policy import LoraConfig, load_policy
from sisearch.optim.common import TrainerConfig, lr_lambda, steps_for
from sisearch.optim.dpo import DPOConfig, DPOOptimizer
from sisearch.optim.pairs import encode_pairs, fill_reference_logps


def test_lr_schedules_by_hand():
    # 2 warmup steps of 10: the factor climbs 1/2, 2/2, then follows the schedule over the 8 steps left
    constant, linear, cosine = (lr_lambda(s, 2, 10) for s in ("constant", "linear", "cosine"))
    assert [constant(i) for i in (0, 1, 2, 9)] == [0.5, 1.0, 1.0, 1.0]
    assert [linear(i) for i in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]
    assert cosine(6) == pytest.approx(0.5)  # halfway: (1 + cos(pi/2)) / 2
    assert cosine(4) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)  # a quarter of the way
    assert cosine(10) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="unknown lr schedule 'step'; allowed: constant, linear, cosine"):
        lr_lambda("step", 0, 10)


def test_steps_for_by_hand():
    assert steps_for(100, 16, 2.0, 1, None) == 14  # ceil(100/16) = 7 batches, twice
    assert steps_for(100, 16, 2.0, 2, None) == 7  # two micro-batches per optimizer step
    assert steps_for(100, 16, 2.0, 1, 5) == 5  # capped
    assert steps_for(3, 16, 0.1, 1, None) == 1  # at least one


def test_accumulation_and_schedule_come_from_config(tiny_policy, arith_task, monkeypatch):
    history = capture_history(monkeypatch)
    cfg = DPOConfig(lr=1e-3, batch_size=4, epochs=4, schedule="linear")
    trainer = TrainerConfig(accelerator="cpu", progress_bar=False, accumulate_grad_batches=2)
    metrics = DPOOptimizer(cfg).fit(tiny_policy, step_pairs_for(arith_task), trainer, seed=0)
    # 8 pairs / 4 = 2 micro-batches per epoch, 4 epochs = 8 micro-batches = 4 optimizer steps
    assert metrics["train/steps"] == 4.0 and metrics["train/micro_batches"] == 8.0
    # the linear schedule steps once per optimizer step: 1, 3/4, 1/2, 1/4 of the rate, two micro-batches each
    assert history["lr"] == pytest.approx([1e-3 * f for f in (1, 1, 0.75, 0.75, 0.5, 0.5, 0.25, 0.25)])


def test_lora_reference_is_the_base_model_with_adapters_off(tiny_dir, tiny_policy, arith_task, monkeypatch):
    pairs = step_pairs_for(arith_task)
    lora_policy = load_policy(tiny_dir, device="cpu", lora=LoraConfig(r=4, alpha=8))
    base_items, lora_items = encode_pairs(tiny_policy, pairs), encode_pairs(lora_policy, pairs)
    fill_reference_logps(tiny_policy, base_items, "precomputed", 8, None)
    # train the adapters first, so that "adapters off" differs from the policy as it is
    DPOOptimizer(DPOConfig(lr=5e-3, batch_size=8, epochs=3)).fit(lora_policy, pairs, TRAINER, seed=0)
    fill_reference_logps(lora_policy, lora_items, "adapters_disabled", 8, None)
    assert [i.ref_chosen for i in lora_items] == pytest.approx([i.ref_chosen for i in base_items], abs=1e-5)
    assert [i.ref_rejected for i in lora_items] == pytest.approx([i.ref_rejected for i in base_items], abs=1e-5)
    # only the adapters trained: the base weights under them are the base model's
    base_weights = dict(tiny_policy.model.named_parameters())
    for name, weight in lora_policy.model.named_parameters():
        if "lora_" not in name:
            plain = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(weight, base_weights[plain]), name
    # and the preference objective runs with that reference
    history = capture_history(monkeypatch)
    cfg = DPOConfig(lr=5e-3, batch_size=8, epochs=6, reference="adapters_disabled")
    DPOOptimizer(cfg).fit(lora_policy, pairs, TRAINER, seed=0)
    assert history["rewards/accuracies"][-1] >= 0.75


def test_adapters_disabled_needs_a_lora_policy(tiny_policy, arith_task):
    with pytest.raises(ValueError, match="needs a LoRA policy"):
        DPOOptimizer(DPOConfig(reference="adapters_disabled")).fit(tiny_policy, step_pairs_for(arith_task), TRAINER, 0)
