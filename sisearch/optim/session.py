"""The training session: what every Lightning Trainer of a run shares beyond its own objective.

The loop opens one session around the whole run; `run_training` (every optimizer, the reward heads) and the
tiny model's own training read the run's Trainer settings and the run's step logger from it, so that no
component needs new constructor arguments (plugins keep their signatures). Outside a session (unit tests,
benchmarks) a Trainer gets the defaults and logs nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sisearch.optim.common import TrainerConfig


@dataclass
class TrainingSession:
    settings: TrainerConfig
    steps: Any = None  # a `sisearch.tracking.steps.StepSink`, or None: per-step metrics go nowhere


_current: TrainingSession | None = None


@contextmanager
def training_session(settings: TrainerConfig, steps: Any = None) -> Iterator[TrainingSession]:
    """Trainers made inside the block use `settings` (where they are not given their own) and log to `steps`."""
    global _current
    saved, _current = _current, TrainingSession(settings, steps)
    try:
        yield _current
    finally:
        _current = saved


def run_trainer_settings() -> TrainerConfig:
    """The run's Trainer settings, or the defaults outside a run."""
    return _current.settings if _current is not None else TrainerConfig()


def run_step_sink() -> Any:
    return _current.steps if _current is not None else None
