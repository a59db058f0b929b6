"""Imports every built-in component module so that its `@register` runs.

Every module of the component packages is imported, so a new built-in component needs no edit here.
"""

import importlib
import pkgutil

PACKAGES = ("tasks", "models", "engines", "search", "rewards", "data", "optim")

for _package in PACKAGES:
    _module = importlib.import_module(f"sisearch.{_package}")
    for _info in pkgutil.iter_modules(_module.__path__):
        importlib.import_module(f"sisearch.{_package}.{_info.name}")
