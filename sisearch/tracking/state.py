"""The W&B run a run directory belongs to, kept there so that a resumed run continues the same W&B run.

```
tracking.json   {"wandb_id": "..."}
```
It is written before the W&B run starts, so even a kill right after the start resumes the same run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from sisearch.files import atomic_write

STATE_FILE = "tracking.json"


@dataclass
class TrackingState:
    wandb_id: str | None = None

    @classmethod
    def load(cls, run_dir: Path) -> "TrackingState":
        path = Path(run_dir) / STATE_FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else cls()

    def save(self, run_dir: Path) -> None:
        atomic_write(Path(run_dir) / STATE_FILE, json.dumps(asdict(self), sort_keys=True))
