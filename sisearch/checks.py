"""One-line value checks that component config schemas run in `__post_init__`.

A message names the field, not the component: `registry.to_typed` puts `kind 'name': ` in front, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def require_at_least(cfg: Any, minimum: float, *keys: str, null_ok: bool = False) -> None:
    """Refuse a value of any of `keys` below `minimum`; with `null_ok`, None (no limit) passes."""
    for key in keys:
        value = getattr(cfg, key)
        if value is None and null_ok:
            continue
        if value < minimum:
            allowed = f"at least {minimum}" + (" or null" if null_ok else "")
            raise ValueError(f"{key} must be {allowed}, got {value}")


def require_choice(what: str, value: str, allowed: Sequence[str]) -> None:
    """Refuse a `value` that is not one of `allowed`, listing them."""
    if value not in allowed:
        raise ValueError(f"unknown {what} '{value}'; allowed: {', '.join(allowed)}")


def require_text(cfg: Any, *keys: str) -> None:
    """Refuse an empty text in any of `keys`."""
    for key in keys:
        if not getattr(cfg, key):
            raise ValueError(f"{key} must not be empty")
