"""`sisearch-components` lists every registered component with its config fields, types and defaults."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from conftest import REPO

from sisearch import registry
from sisearch.catalog import main


def test_every_component_of_every_kind_is_listed_with_typed_defaults(capsys):
    assert main([]) == 0
    listing = capsys.readouterr().out
    for kind in registry.KINDS:
        assert f"\n{kind} ({len(registry.names(kind))})" in f"\n{listing}"
        for name in registry.names(kind):
            assert f"\n    {name}  (" in listing, f"{kind} {name} is missing"
    assert "        depth_limit: int | None = 3\n" in listing  # mcts
    assert "        train: HeadTrainConfig\n            problems: int = 64\n" in listing  # a nested config
    assert "    shortest_correct  (plugins.example_plugin.ShortestCorrect" in listing  # the entry-point plugin


def test_a_plugin_module_is_included_and_an_unknown_kind_is_refused(tmp_path):
    (tmp_path / "my_builders.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass

        from sisearch.data.outcome import CorrectSamples
        from sisearch.registry import register


        @dataclass
        class EveryCorrectConfig:
            name: str = "every_correct"
            max_per_problem: int | None = None


        @register("builder", "every_correct", schema=EveryCorrectConfig)
        class EveryCorrect(CorrectSamples):
            pass
        """))
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{tmp_path}"}
    command = [sys.executable, "-m", "sisearch.catalog"]
    done = subprocess.run([*command, "builder", "--plugin", "my_builders"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    listed = "    every_correct  (my_builders.EveryCorrect; config EveryCorrectConfig)\n        max_per_problem: int | None = None"
    assert listed in done.stdout
    assert "\nsearcher (" not in done.stdout  # only the kinds asked for
    done = subprocess.run([*command, "searchers"], env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == f"sisearch-components: error: unknown kind searchers; allowed: {', '.join(registry.KINDS)}"
