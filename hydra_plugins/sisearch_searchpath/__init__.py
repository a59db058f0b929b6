"""Hydra discovers this search-path plugin (any `hydra_plugins` package is scanned); it adds the `conf/`
directories of sisearch's plugins (sisearch/plugin_configs.py) when sisearch's own configs are being composed,
and leaves every other Hydra application alone."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class SisearchPluginConfigs(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from sisearch.plugin_configs import is_sisearch_config, plugin_config_dirs

        if any(is_sisearch_config(element.path) for element in search_path.get_path()):
            for directory in plugin_config_dirs():
                search_path.append(provider="sisearch-plugin", path=f"file://{directory}")
