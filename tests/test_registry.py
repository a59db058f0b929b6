"""The registry: unknown names, plugins from config and entry points, schema validation."""

import pytest
from conftest import compose

from sisearch import registry
from sisearch.registry import ConfigError


def test_unknown_name_lists_the_registered_names():
    with pytest.raises(ConfigError) as err:
        registry.validate("searcher", {"name": "mtcs"})
    message = str(err.value)
    assert "unknown searcher 'mtcs'" in message
    assert "best_of_n" in message and "greedy" in message


def test_unknown_kind_is_refused():
    with pytest.raises(ConfigError, match="allowed kinds"):
        registry.names("scorer")


def test_misspelt_key_names_key_component_and_allowed_keys():
    with pytest.raises(ConfigError) as err:
        registry.validate("searcher", {"name": "best_of_n", "nn": 4})
    assert "searcher 'best_of_n'" in str(err.value) and "'nn'" in str(err.value)
    assert "allowed keys" in str(err.value) and "temperature" in str(err.value)


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError) as err:
        registry.validate("searcher", {"name": "best_of_n", "n": "many"})
    assert "searcher 'best_of_n'" in str(err.value) and "n" in str(err.value)


def test_validate_returns_the_typed_config_with_defaults():
    cfg = registry.validate("searcher", {"name": "best_of_n", "n": 3})
    assert cfg.n == 3 and cfg.temperature == 1.0


def test_plugin_from_the_config_list_registers_its_component():
    registry.load_plugins(["plugins.example_plugin"])
    assert "shortest_correct" in registry.names("builder")


def test_missing_plugin_module_is_a_config_error():
    with pytest.raises(ConfigError, match="no_such_plugin"):
        registry.load_plugins(["no_such_plugin"])


def test_entry_point_group_is_declared_for_the_example_plugin():
    from importlib.metadata import entry_points

    assert any(ep.value == "plugins.example_plugin" for ep in entry_points(group=registry.ENTRY_POINT_GROUP))


def test_every_component_yaml_validates_against_its_schema():
    for kind in registry.KINDS:
        for name in registry.names(kind):
            if kind == "model" and name == "hf":
                continue  # needs model.path
            cfg = compose([f"{kind}={name}"] if kind != "builder" else [f"builder={name}"])
            registry.validate(kind, cfg[kind])


def test_plugin_builder_runs_in_the_loop(tmp_path, small_run):
    from sisearch.loop import run

    rows = run(compose(small_run + ["plugins=[plugins.example_plugin]", "builder=shortest_correct"]), tmp_path)
    assert rows[-1]["iteration"] == 1
