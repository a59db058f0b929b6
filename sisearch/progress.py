"""The process's one live display: every progress bar of a run is a task on one shared `rich` Progress.

rich allows one live display per console. When each stage started its own (a reward head's bar around a
Lightning `RichProgressBar`, say), the inner one took the console from the outer one and the run crashed
when they stopped. So no stage creates a `Progress`: each opens a task with `progress_task(...)`. The
display starts when the first task opens and stops when the last one closes; tasks opened meanwhile are
shown as more rows of the same display.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


def _new_display() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), transient=True,
    )


_display: Progress | None = None
_open_tasks = 0


@dataclass
class Bar:
    """One row of the display; a disabled bar accepts the same calls and shows nothing."""

    progress: Progress | None = None
    task: TaskID | None = None

    def advance(self, amount: float = 1.0) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, amount)

    def update(self, **fields: Any) -> None:
        """`completed`, `total`, `description` or `info` (free text shown after the counts)."""
        if self.progress is not None:
            self.progress.update(self.task, **fields)


@contextmanager
def progress_task(description: str, total: float | None, enabled: bool = True, info: str = "") -> Iterator[Bar]:
    """A row on the run's one live display for the duration of the `with` block."""
    global _display, _open_tasks
    if not enabled:
        yield Bar()
        return
    if _display is None:
        _display = _new_display()
        _display.start()
    display = _display
    task = display.add_task(description, total=total, info=info)
    _open_tasks += 1
    try:
        yield Bar(display, task)
    finally:
        _open_tasks -= 1
        if _open_tasks == 0:  # stop first: the display's last frame still shows this bar, then clears
            _display = None
            display.stop()
        display.remove_task(task)


__all__ = ["Bar", "progress_task"]
