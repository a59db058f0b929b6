"""Crash-safe files: whole-file atomic writes and JSON-lines files."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())  # so a crash of the machine cannot leave a renamed but empty file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: Path, lines: list[str]) -> None:
    """Atomically write one JSON document per line."""
    atomic_write(path, "".join(line + "\n" for line in lines))


def build_directory_once(
    directory: Path, marker: str, build: Callable[[Path], dict[str, Any]], prefix: str = ".build-"
) -> Path:
    """`directory`, built by `build(staging)` in a hidden staging directory beside it and renamed into place
    with `marker` (the JSON `build` returns) written last, so a killed build leaves nothing half-done."""
    directory = Path(directory)
    if (directory / marker).is_file():
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=directory.parent))
    try:
        info = build(staging / "model")
        (staging / "model" / marker).write_text(json.dumps(info, indent=1))
        try:
            os.replace(staging / "model", directory)
        except OSError:
            # Another process finished the same directory first; theirs is as good as ours.
            if not (directory / marker).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory
