"""The plugin registry: every component kind maps names to (class, config schema).

A component registers itself with `@register(kind, name, schema=SomeConfig)`; `build(kind, cfg, **deps)`
validates `cfg` (a mapping with a `name` key) against the schema and constructs the class with the typed
config and the dependencies it needs. Plugins register the same way, from the entry-point group
`sisearch.plugins` or from a `plugins: [module, ...]` list in the run config.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

KINDS = ("task", "model", "engine", "searcher", "rewarder", "builder", "optimizer")
ENTRY_POINT_GROUP = "sisearch.plugins"


class ConfigError(ValueError):
    """A configuration problem found before any work starts."""


@dataclass(frozen=True)
class Entry:
    cls: Callable[..., Any]
    schema: type


_REGISTRY: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
_builtins_loaded = False
_entry_points_loaded = False

T = TypeVar("T")


def register(kind: str, name: str, schema: type) -> Callable[[T], T]:
    """Class decorator: make `cls` buildable as `kind` `name`, its config validated by `schema`."""
    if kind not in _REGISTRY:
        raise ConfigError(f"unknown component kind '{kind}'; allowed kinds: {', '.join(KINDS)}")
    if not dataclasses.is_dataclass(schema) or "name" not in {f.name for f in dataclasses.fields(schema)}:
        raise TypeError(f"schema of {kind} '{name}' must be a dataclass with a 'name' field")

    def decorate(cls: T) -> T:
        existing = _REGISTRY[kind].get(name)
        if existing is not None and existing.cls is not cls:
            raise ConfigError(f"{kind} '{name}' is registered twice ({existing.cls} and {cls})")
        _REGISTRY[kind][name] = Entry(cls, schema)
        return cls

    return decorate


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        importlib.import_module("sisearch.components")


def load_entry_point_plugins() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        entry_point.load()


def load_plugins(modules: list[str] | None) -> None:
    """Import plugin modules named in the config; each registers its components on import."""
    for module in modules or []:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            # A console script's sys.path lacks the working directory, where in-repo plugins live.
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
                try:
                    importlib.import_module(module)
                    continue
                except ModuleNotFoundError:
                    pass
            raise ConfigError(f"plugin module '{module}' could not be imported: {err}") from err


def names(kind: str) -> list[str]:
    _load_builtins()
    load_entry_point_plugins()
    if kind not in _REGISTRY:
        raise ConfigError(f"unknown component kind '{kind}'; allowed kinds: {', '.join(KINDS)}")
    return sorted(_REGISTRY[kind])


def lookup(kind: str, name: str | None) -> Entry:
    known = names(kind)
    if name is None:
        raise ConfigError(f"{kind} config has no 'name'; registered {kind}s: {', '.join(known)}")
    if name not in _REGISTRY[kind]:
        raise ConfigError(f"unknown {kind} '{name}'; registered {kind}s: {', '.join(known)}")
    return _REGISTRY[kind][name]


def validate(kind: str, cfg: Mapping[str, Any] | DictConfig) -> Any:
    """Check `cfg` against its component's schema and return the typed config (a dataclass)."""
    # Resolve interpolations (such as `${seed}`) against the whole config before the schema sees them.
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg))
    name = cfg.get("name")
    entry = lookup(kind, name)
    return to_typed(entry.schema, cfg, f"{kind} '{name}'")


def _first_line(text: str) -> str:
    # omegaconf appends `full_key:` / `object_type=` lines; the key is named in our own message instead.
    return str(text).strip().splitlines()[0] if str(text).strip() else ""


def to_typed(schema: type, cfg: Any, what: str) -> Any:
    """Merge `cfg` over `schema`'s defaults and return the dataclass; each error is one line naming
    `what`, the offending key, and the allowed keys or the expected type.

    A schema checks its values in `__post_init__` (raising ValueError without naming the component): those
    checks run here, during validation, before anything is built, and their messages get `what` in front.
    """
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), cfg))
    except (ConfigKeyError, ConfigAttributeError) as err:
        parent = getattr(err, "parent_node", None)
        allowed = list(parent.keys()) if parent is not None else [f.name for f in dataclasses.fields(schema)]
        key = err.full_key or getattr(err, "key", None) or _first_line(err.msg)
        raise ConfigError(f"{what}: unknown key '{key}'; allowed keys: {', '.join(map(str, allowed))}") from None
    except MissingMandatoryValue as err:
        raise ConfigError(f"{what}: '{err.full_key}' has no value and must be set") from None
    except ValidationError as err:
        field = err.full_key or getattr(err, "key", "?")
        raise ConfigError(f"{what}: bad value for '{field}': {_first_line(err.msg)}") from None
    except OmegaConfBaseException as err:
        raise ConfigError(f"{what}: {_first_line(err)}") from None
    except ConfigError:
        raise
    except ValueError as err:  # a schema's own check (its __post_init__); the component is named once
        message = str(err)
        raise ConfigError(message if message.startswith(what) else f"{what}: {message}") from None


def build(kind: str, cfg: Mapping[str, Any] | DictConfig | Any, **deps: Any) -> Any:
    """Validate `cfg` and construct the registered class with the typed config and `deps`."""
    typed = cfg if dataclasses.is_dataclass(cfg) else validate(kind, cfg)
    return lookup(kind, typed.name).cls(typed, **deps)
