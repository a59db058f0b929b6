"""The process's one live display: every progress bar of a run is a task on one shared `rich` Progress.

rich allows one live display per console. When each stage started its own (a reward head's bar around a
Lightning `RichProgressBar`, say), the inner one took the console from the outer one and the run crashed
when they stopped. So no stage creates a `Progress`: each opens a task with `progress_task(...)`. The
display starts when the first task opens and stops when the last one closes; tasks opened meanwhile are
shown as more rows of the same display.

Every bar's description starts with the current stage (`with stage("iteration 2"):`), so a bar says which
iteration it belongs to. When the output is not a terminal (a log file, a pipe), a live display would show
nothing; each bar then writes a log line every `SISEARCH_PROGRESS_INTERVAL` seconds (default 30) and one
when it closes, so a log file of a long run tells its story.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich import get_console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

log = logging.getLogger("sisearch.progress")


def _new_display() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), transient=True,
    )


_display: Progress | None = None
_open_tasks = 0
_stage = ""


def log_interval() -> float:
    return float(os.environ.get("SISEARCH_PROGRESS_INTERVAL", "30"))


@contextmanager
def stage(label: str) -> Iterator[None]:
    """Bars opened inside the block are labelled `label · <description>`."""
    global _stage
    saved, _stage = _stage, label
    try:
        yield
    finally:
        _stage = saved


def labelled(description: str) -> str:
    return f"{_stage} · {description}" if _stage else description


@dataclass
class Bar:
    """One row of the display; a disabled bar accepts the same calls and shows nothing."""

    progress: Progress | None = None
    task: TaskID | None = None

    def advance(self, amount: float = 1.0) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, amount)

    def update(self, **fields: Any) -> None:
        """`completed`, `total`, `description`, `info` (free text shown after the counts), or `advance`."""
        if self.progress is not None:
            self.progress.update(self.task, **fields)


@dataclass
class LogBar:
    """A bar for output that is not a terminal: a log line at most every `interval` seconds, and one at the end."""

    description: str
    total: float | None
    info: str = ""
    interval: float = field(default_factory=log_interval)
    completed: float = 0.0
    started: float = field(default_factory=time.monotonic)
    last_line: float = field(default_factory=time.monotonic)

    def advance(self, amount: float = 1.0) -> None:
        self.completed += amount
        self._maybe_report()

    def update(self, **fields: Any) -> None:
        self.completed += fields.pop("advance", 0)
        for key in ("completed", "total", "description", "info"):
            if key in fields:
                setattr(self, key, fields[key])
        self._maybe_report()

    def line(self, done: bool = False) -> str:
        counts = f"{self.completed:g}" + (f"/{self.total:g}" if self.total is not None else "")
        info = f", {self.info}" if self.info else ""
        return f"{self.description}: {counts}{info} ({time.monotonic() - self.started:.1f} s{', done' if done else ''})"

    def _maybe_report(self) -> None:
        now = time.monotonic()
        if now - self.last_line >= self.interval:
            self.last_line = now
            log.info("%s", self.line())

    def close(self) -> None:
        log.info("%s", self.line(done=True))


@contextmanager
def progress_task(description: str, total: float | None, enabled: bool = True, info: str = "") -> Iterator[Bar | LogBar]:
    """A row on the run's one live display (or periodic log lines) for the duration of the `with` block."""
    global _display, _open_tasks
    if not enabled:
        yield Bar()
        return
    description = labelled(description)
    if not get_console().is_terminal:
        bar = LogBar(description, total, info)
        try:
            yield bar
        finally:
            bar.close()
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


__all__ = ["Bar", "LogBar", "progress_task", "stage"]
