"""benchmarks/recipes_compare.py's arithmetic: the equal-steps overrides and the mean ± sd of seeds."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location(
    "recipes_compare", Path(__file__).resolve().parent.parent / "benchmarks" / "recipes_compare.py"
)
recipes_compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recipes_compare)


def test_spread_is_the_sample_standard_deviation():
    assert recipes_compare.mean([0.9, 0.94, 0.88]) == pytest.approx(2.72 / 3)
    assert recipes_compare.spread([1.0, 2.0, 3.0]) == 1.0  # squared deviations 1 + 0 + 1, over n - 1 = 2
    assert recipes_compare.spread([0.5]) == 0.0


def test_equal_steps_caps_training_at_the_step_count():
    assert recipes_compare.equal_steps(None) == []
    overrides = recipes_compare.equal_steps(30)
    assert "optimizer.max_steps=30" in overrides
    from sisearch.optim.common import steps_for

    epochs = float(next(o for o in overrides if o.startswith("optimizer.epochs=")).split("=")[1])
    # few records or many: the epochs never bind, the cap does
    assert steps_for(5, 16, epochs, 1, 30) == 30 and steps_for(5000, 16, epochs, 1, 30) == 30
