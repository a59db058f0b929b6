"""`sisearch-components [KIND...] [--plugin MODULE]`: every registered component per kind, with the fields,
types and defaults of its config schema; plugins from the `sisearch.plugins` entry points are included."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import typing
from typing import Any

from sisearch import registry

INDENT = "    "


def type_name(hint: Any) -> str:
    """`int`, `float | None`, `list[str]`: a type hint as it reads in the source."""
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", str(hint)).replace("NoneType", "None")  # no module paths


def default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return "???"  # mandatory: the YAML or the command line must set it


def field_lines(schema: type, depth: int) -> list[str]:
    """One line per field; a nested config dataclass (a reward head's `train:`) lists its own fields below it."""
    hints = typing.get_type_hints(schema)
    lines = []
    for field in dataclasses.fields(schema):
        if field.name == "name":
            continue
        hint = hints.get(field.name, field.type)
        if dataclasses.is_dataclass(hint):
            lines.append(f"{INDENT * depth}{field.name}: {hint.__name__}")
            lines += field_lines(hint, depth + 1)
        else:
            lines.append(f"{INDENT * depth}{field.name}: {type_name(hint)} = {default_of(field)!r}")
    return lines


def describe(kind: str) -> list[str]:
    names = registry.names(kind)
    lines = [f"{kind} ({len(names)})"]
    for name in names:
        entry = registry.lookup(kind, name)
        cls = entry.cls
        lines.append(f"{INDENT}{name}  ({cls.__module__}.{cls.__qualname__}; config {entry.schema.__name__})")
        lines += field_lines(entry.schema, 2)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sisearch-components", description=__doc__.split("\n")[0].split(": ", 1)[1])
    parser.add_argument("kinds", nargs="*", metavar="KIND",
                        help=f"kinds to list (default: all): {', '.join(registry.KINDS)}")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="also import this plugin module (as `plugins=[MODULE]` would)")
    args = parser.parse_args(argv)
    unknown = [k for k in args.kinds if k not in registry.KINDS]
    if unknown:
        print(f"sisearch-components: error: unknown kind {', '.join(unknown)}; allowed: {', '.join(registry.KINDS)}",
              file=sys.stderr)
        return 2
    try:
        registry.load_plugins(args.plugin)
    except registry.ConfigError as err:
        print(f"sisearch-components: error: {err}", file=sys.stderr)
        return 2
    blocks = ["\n".join(describe(kind)) for kind in args.kinds or registry.KINDS]
    print("\n\n".join(blocks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
