"""Reads an offline W&B run back from its `.wandb` files (wandb >= 0.19 ships no Python reader).

A resumed offline run must know what its killed predecessor's W&B process got onto disk: that process buffers,
so a kill loses an unpredictable tail (often everything). The tests read the runs back the same way.

A `.wandb` file is a LevelDB-style log: a 7-byte header (`:W&B`, magic, version), then 32 KiB blocks of
records, each a 7-byte header (checksum, length, type: full / first / middle / last) and a chunk of a
protobuf `Record` (wandb.proto.wandb_internal_pb2).
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[Any]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pieces = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail too short for a record header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0:
            break
        pieces = chunk if kind in (FULL, FIRST) else pieces + chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pieces)
            yield record


@dataclass
class OfflineRun:
    ids: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    job_types: set[str] = field(default_factory=set)
    history: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)


def item_key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def segments(save_dir: Path, run_id: str = "*") -> list[Path]:
    """The `.wandb` files of a run's offline segments under `save_dir/wandb` (a resumed run adds one), in order."""
    return sorted(Path(save_dir).glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb"))


def closed(path: Path) -> bool:
    return any(record.WhichOneof("record_type") == "exit" for record in records(path))


def wait_until_written(paths: list[Path], quiet_seconds: float = 10.0, timeout: float = 60.0) -> None:
    """W&B's writer may finish a segment just after `wandb.finish()` returns (seen: the last rows and the exit
    record a moment later). Wait until each segment has its exit record or has not changed for `quiet_seconds`
    (a killed process's segment never gets one). The quiet time is long because on a loaded machine the writer
    can stall for seconds mid-segment (seen at load 14: a finished run's last rows read as missing after 2 s)."""
    deadline = time.monotonic() + timeout
    for path in paths:
        while time.monotonic() < deadline and not closed(path):
            if time.time() - path.stat().st_mtime >= quiet_seconds:
                break
            time.sleep(0.1)


def last_step(save_dir: Path, run_id: str) -> int:
    """The highest W&B step any offline segment of the run holds (-1: none)."""
    steps = [-1]
    wait_until_written(segments(save_dir, run_id))
    for path in segments(save_dir, run_id):
        for record in records(path):
            if record.WhichOneof("record_type") == "history":
                steps += [int(json.loads(item.value_json)) for item in record.history.item if item_key(item) == "_step"]
    return max(steps)


def read_offline_runs(save_dir: Path) -> OfflineRun:
    """Every offline segment under `save_dir/wandb`, in order, as one run."""
    run = OfflineRun()
    wait_until_written(segments(save_dir))
    for path in segments(save_dir):
        for record in records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run.ids.add(record.run.run_id)
                run.groups.add(record.run.run_group)
                run.names.add(record.run.display_name)
                run.job_types.add(record.run.job_type)
            elif kind == "history":
                run.history.append({item_key(item): json.loads(item.value_json) for item in record.history.item})
            elif kind == "artifact" and record.artifact.type != "run_table":
                run.artifacts.append({"name": record.artifact.name, "type": record.artifact.type,
                                      "aliases": list(record.artifact.aliases),
                                      "metadata": json.loads(record.artifact.metadata or "{}")})
    return run
