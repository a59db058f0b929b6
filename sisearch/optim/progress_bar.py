"""Lightning's progress bar as a row of the run's one live display (`sisearch.progress`).

Lightning's own `RichProgressBar` starts a live display of its own, which cannot run inside another stage's
bar (a reward head trains inside one), so every `Trainer` of sisearch uses this bar instead.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar

from sisearch.progress import Bar, progress_task


class TrainingProgressBar(ProgressBar):
    """Optimizer steps done out of `max_steps`, with the latest loss."""

    def __init__(self, description: str = "training") -> None:
        super().__init__()
        self.description = description
        self._enabled = True
        self._stack = ExitStack()
        self._bar = Bar()

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        label = f"{self.description} (optimizer steps)"
        self._bar = self._stack.enter_context(progress_task(label, total, enabled=self._enabled))

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = self.get_metrics(trainer, pl_module).get("loss")
        info = f"loss {loss:.4f}" if isinstance(loss, float) else ""
        self._bar.update(completed=trainer.global_step, info=info)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._stack.close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._stack.close()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._stack.close()
