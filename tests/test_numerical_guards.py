"""A non-finite loss stops training with a clear message and the last good weights; an iteration without
training records skips training with a warning that the metrics show."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import compose

from sisearch.data.records import PreferencePair
from sisearch.optim.base import NonFiniteLossError, ObjectiveModule
from sisearch.optim.common import TrainerConfig
from sisearch.optim.sft import SFTConfig, fit_sft

TRAINER = TrainerConfig(accelerator="cpu", progress_bar=False)
EXAMPLES = [("Q:1+2=?\n", "1+2=3\nA:3"), ("Q:4-5=?\n", "4-5=9\nA:9"), ("Q:7+6=?\n", "7+6=3\nA:3")] * 4


def poison_loss(monkeypatch, at_call: int, value: float) -> list[int]:
    """Make the loss handed to `record` non-finite from its `at_call`-th call (0-based) on."""
    calls: list[int] = []
    real = ObjectiveModule.record

    def record(self, loss, metrics):
        calls.append(len(calls))
        if len(calls) > at_call:
            loss = loss * value
        return real(self, loss, metrics)

    monkeypatch.setattr(ObjectiveModule, "record", record)
    return calls


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_loss_stops_training_and_restores_the_last_good_weights(monkeypatch, tiny_policy, value):
    before = snapshot(tiny_policy.model)
    calls = poison_loss(monkeypatch, at_call=2, value=value)  # steps 0 and 1 change the weights first
    cfg = SFTConfig(lr=1e-2, batch_size=4, epochs=1.0, max_steps=3)
    with pytest.raises(NonFiniteLossError) as err:
        fit_sft(tiny_policy, EXAMPLES, cfg, TRAINER, seed=0)
    assert len(calls) == 3
    assert str(err.value).startswith(f"training loss became {value} at step 2; training stopped and the weights "
                                     "were restored to the last good ones, from before this training run")
    assert_same_weights(tiny_policy.model, before)
    assert not tiny_policy.model.training


def test_weights_poisoned_by_a_non_finite_gradient_are_restored(tiny_policy):
    """A finite loss with a NaN gradient turns the weights to NaN; the next loss is NaN and the guard restores."""
    before = snapshot(tiny_policy.model)
    embedding = tiny_policy.model.get_input_embeddings().weight
    handle = embedding.register_hook(lambda grad: torch.full_like(grad, math.nan))
    try:
        with pytest.raises(NonFiniteLossError, match="training loss became nan at step 1"):
            fit_sft(tiny_policy, EXAMPLES, SFTConfig(lr=1e-2, batch_size=4, max_steps=3), TRAINER, seed=0)
    finally:
        handle.remove()
    assert_same_weights(tiny_policy.model, before)
    assert all(torch.isfinite(p).all() for p in tiny_policy.model.parameters())


def test_finite_training_changes_the_weights(tiny_policy):
    """The control for the tests above: without poison the same run does move the weights."""
    before = snapshot(tiny_policy.model)
    metrics = fit_sft(tiny_policy, EXAMPLES, SFTConfig(lr=1e-2, batch_size=4, max_steps=3), TRAINER, seed=0)
    assert metrics["train/steps"] == 3.0 and math.isfinite(metrics["train/loss"])
    changed = [k for k, v in tiny_policy.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed


def test_loop_skips_an_empty_iteration_and_stops_on_a_non_finite_loss(monkeypatch, tmp_path, small_run):
    """Iteration 1 finds no pairs (skipped, with a warning and `train/skipped` = 1); iteration 2's loss is NaN
    (the run stops naming the iteration, and the finished iterations stay on disk)."""
    from sisearch.data.outcome import OutcomePairs
    from sisearch.loop import run

    pair = PreferencePair("train-0", "Q:1+2=?\n", "1+2=3\nA:3", "1+2=4\nA:4")
    builds: list[int] = []

    def build(self, trees, problems, seed):
        builds.append(seed)
        return [] if len(builds) == 1 else [pair, pair]

    monkeypatch.setattr(OutcomePairs, "build", build)
    poison_loss(monkeypatch, at_call=0, value=math.nan)
    cfg = compose(small_run + ["iterations=2", "optimizer=dpo", "problems_per_iteration=2", "searcher.n=2",
                               "task.test_size_per_difficulty=2"])
    with pytest.warns(UserWarning, match="iteration 1: the builder found no training records; skipping training"):
        with pytest.raises(NonFiniteLossError) as err:
            run(cfg, tmp_path)
    assert str(err.value).startswith("iteration 2: training loss became nan at step 0;")
    assert f"finished iterations stay in {tmp_path}" in str(err.value)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1]
    assert rows[1]["train/skipped"] == 1.0 and rows[1]["data/records"] == 0.0
    assert not any(k.startswith("train/") and k != "train/skipped" for k in rows[1])
    assert (tmp_path / "iterations" / "iter_01" / "data.jsonl").read_text() == ""
    assert (tmp_path / "iterations" / "iter_01" / "policy" / "config.json").is_file()
    assert not (tmp_path / "iterations" / "iter_02" / "metrics.json").exists()
