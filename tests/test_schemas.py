"""Each field's meaning and default has one home, the component's config dataclass.

A YAML file named after its component (`sisearch/conf/searcher/mcts.yaml` for searcher 'mcts') restates the schema's
defaults so that users can read and edit them; this test keeps the two equal. Interpolations (`${seed}`) and
recipe options (`sisearch/conf/searcher/step_dpo.yaml`, settings of another component) are not restatements.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import config_dirs
from omegaconf import DictConfig, OmegaConf

from sisearch import registry

MISSING = "???"


def restated_files() -> list[tuple[str, Path]]:
    return [
        (kind, path)
        for kind in registry.KINDS
        for conf in config_dirs()
        for path in sorted((conf / kind).glob("*.yaml"))
        if OmegaConf.load(path).get("name") == path.stem
    ]


def differences(yaml: DictConfig, schema: DictConfig, prefix: str = "") -> list[str]:
    found = []
    for key in yaml:
        if key == "defaults" or OmegaConf.is_interpolation(yaml, key):
            continue
        where = f"{prefix}{key}"
        if key not in schema.keys():  # (`in` is False for a mandatory "???" value)
            found.append(f"{where}: not in the schema")
            continue
        value = MISSING if OmegaConf.is_missing(yaml, key) else yaml[key]
        default = MISSING if OmegaConf.is_missing(schema, key) else schema[key]
        if isinstance(value, DictConfig) and isinstance(default, DictConfig):
            found += differences(value, default, f"{where}.")
            continue
        as_plain = [OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for v in (value, default)]
        if as_plain[0] != as_plain[1]:
            found.append(f"{where}: YAML {as_plain[0]!r}, schema {as_plain[1]!r}")
    return found


def test_every_component_has_its_own_yaml():
    covered = {(kind, path.stem) for kind, path in restated_files()}
    assert ("searcher", "mcts") in covered and ("optimizer", "dpo") in covered and ("model", "tiny") in covered
    assert ("builder", "shortest_correct") in covered  # the example plugin's, beside its code


@pytest.mark.parametrize("kind,path", restated_files(), ids=lambda x: getattr(x, "stem", x))
def test_yaml_restating_a_component_equals_its_schema_defaults(kind, path):
    yaml = OmegaConf.load(path)
    schema = OmegaConf.structured(registry.lookup(kind, yaml.name).schema)
    assert differences(yaml, schema) == [], f"{path} differs from its schema"


def test_schema_checks_run_during_validation_and_name_the_component():
    with pytest.raises(registry.ConfigError, match=r"^searcher 'mcts': .*depth_limit"):
        registry.validate("searcher", {"name": "mcts", "depth_limit": 0})
