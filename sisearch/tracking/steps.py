"""Per-step training metrics on one global step that continues across every Trainer of a run.

Each `fit` makes a new Lightning `Trainer`, whose own step count starts at 0 again. Each Trainer gets a
`TrainerStepLogger`, a Lightning logger that shifts the Trainer's step by the steps all earlier Trainers of
the run took (so the curves of iteration 2 continue those of iteration 1) and hands every row to the run's
writers (the CSV file, W&B).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only


class StepSink:
    """The run's global optimizer step and the writers every step's row goes to (`writer(metrics, step)`)."""

    def __init__(self, writers: list[Callable[[dict[str, float], int], None]], start_step: int = 0):
        self.writers, self.global_step = writers, start_step

    def write(self, metrics: Mapping[str, float], step: int) -> None:
        for writer in self.writers:
            writer(dict(metrics), step)

    def trainer_logger(self, prefix: str) -> "TrainerStepLogger":
        """A logger for the next Trainer; its metrics are named `prefix/<name>`."""
        return TrainerStepLogger(self, prefix, offset=self.global_step)


class TrainerStepLogger(Logger):
    """One Trainer's view of the run's logger: steps shifted to the run's global step, names prefixed.

    With gradient accumulation Lightning logs every micro-batch under the step it belongs to; those rows are
    averaged into one row per optimizer step (as TRL averages over its logging window).
    """

    def __init__(self, sink: StepSink, prefix: str, offset: int):
        super().__init__()
        self.sink, self.prefix, self.offset = sink, prefix, offset
        self._pending_step: int | None = None
        self._pending: dict[str, list[float]] = defaultdict(list)
        self.last_step = 0

    @property
    def name(self) -> str:
        return "sisearch"

    @property
    def version(self) -> str:
        return self.prefix

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The run's config is logged once, by the tracker; a Trainer's module has no hyperparameters of its own."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        step = self.last_step if step is None else int(step)
        if self._pending_step is not None and step != self._pending_step:
            self._flush()
        self._pending_step = step
        for key, value in metrics.items():
            if key != "epoch":  # Lightning adds it to every row; one epoch per fit says nothing here
                self._pending[key].append(float(value))

    def _flush(self) -> None:
        if self._pending_step is None or not self._pending:
            return
        row = {f"{self.prefix}/{k}": sum(v) / len(v) for k, v in self._pending.items()}
        # Lightning numbers a row by the optimizer steps taken before it (0 for the first); the run counts from 1.
        self.sink.write(row, self.offset + self._pending_step + 1)
        self.last_step = max(self.last_step, self._pending_step)
        self._pending.clear()
        self._pending_step = None

    @rank_zero_only
    def save(self) -> None:
        self._flush()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self._flush()

    def close(self, trainer_steps: int) -> None:
        """The Trainer finished after `trainer_steps` optimizer steps: the run's step moves past them."""
        self._flush()
        self.sink.global_step = max(self.sink.global_step, self.offset + trainer_steps)
