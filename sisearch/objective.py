"""The number a sweep optimises: one logged metric of a run's last finished iteration (`objective:`)."""

from __future__ import annotations

import math
from typing import Any

from sisearch.registry import ConfigError

DEFAULT_OBJECTIVE = "eval/greedy/overall"


def objective_value(rows: list[dict[str, Any]], name: str) -> float:
    """`name`'s value in the last row; a name the run never logged there fails listing the ones it did."""
    if not rows:
        raise ConfigError(f"objective '{name}': the run finished no iteration")
    last = rows[-1]
    if name not in last:
        logged = sorted(k for k, v in last.items() if isinstance(v, (int, float)) and k != "iteration")
        raise ConfigError(
            f"objective '{name}' was not logged in the last iteration ({last.get('iteration')}); "
            f"logged there: {', '.join(logged)}"
        )
    value = float(last[name])
    if math.isnan(value):  # a sweeper would rank NaN arbitrarily
        raise ValueError(f"objective '{name}' is NaN in the last iteration ({last.get('iteration')})")
    return value
