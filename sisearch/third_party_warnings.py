"""Third-party warnings (Lightning deprecations, transformers notices, ...) go to `<run dir>/warnings.log`,
and transformers' own progress bars (loading and writing weights) stay off during a run.

They are aimed at the authors of the code that calls those libraries, not at a researcher watching a run, and
they broke up the progress display. sisearch's own warnings (and the plugins') still reach the console.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sisearch

WARNINGS_FILE = "warnings.log"
OURS = (str(Path(sisearch.__file__).resolve().parent), str(Path.cwd() / "plugins"))
log = logging.getLogger("sisearch")


def is_ours(filename: str) -> bool:
    return str(Path(filename).resolve()).startswith(OURS)


@contextmanager
def third_party_warnings_to(run_dir: Path, write: bool = True) -> Iterator[None]:
    """Inside the block, warnings raised from outside sisearch are appended to the run's warnings file
    (`write=False`, the other ranks of a distributed run: dropped, rank 0 has the same ones)."""
    path = Path(run_dir) / WARNINGS_FILE
    shown = warnings.showwarning
    count = 0

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 -- warnings' own hook
        nonlocal count
        if is_ours(filename):
            shown(message, category, filename, lineno, file, line)
            return
        count += 1
        if not write:
            return
        with path.open("a", encoding="utf-8") as handle:
            handle.write(warnings.formatwarning(message, category, filename, lineno, line))

    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown
        if bars_were_on:
            hf_logging.enable_progress_bar()
        if count and write:
            log.info("%d third-party warning%s in %s", count, "s" if count > 1 else "", path)
