"""Config directories that plugins ship next to their code, added to Hydra's config search path.

A package in the entry-point group `sisearch.plugins` may hold a `conf/` directory laid out like
`sisearch/conf/` (`conf/searcher/my_searcher.yaml`); its options then compose like the built-in ones
(`sisearch searcher=my_searcher`) with no file added to sisearch. The directories are found without importing
the plugins (importing one loads torch), and are searched after sisearch's own configs, so a plugin adds
options but never replaces a built-in one.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from sisearch.registry import ENTRY_POINT_GROUP

CONF_DIR = Path(__file__).resolve().parent / "conf"  # sisearch's own configs, shipped inside the package
PLUGIN_CONF = "conf"


def package_dir(module: str) -> Path | None:
    """The directory of an importable package, or None (a plain module, or not importable)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


def plugin_config_dirs() -> list[Path]:
    """The `conf/` directory of each `sisearch.plugins` entry point's package that has one, without duplicates."""
    found: list[Path] = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        directory = package_dir(entry_point.module)
        conf = directory / PLUGIN_CONF if directory is not None else None
        if conf is not None and conf.is_dir() and conf.resolve() not in found:
            found.append(conf.resolve())
    return found


def is_sisearch_config(path: str) -> bool:
    """Whether a Hydra search-path entry is sisearch's own config directory (then plugins are added)."""
    if path.startswith("file://"):
        path = path[len("file://"):]
    elif "://" in path:
        return False
    return Path(path).resolve() == CONF_DIR
