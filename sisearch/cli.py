"""Entry point: `sisearch [overrides]`, a Hydra app over the configs in `conf/`."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from sisearch.registry import ConfigError


def config_dir() -> str:
    """`SISEARCH_CONFIG_DIR`, else the repository's `conf/` next to the package."""
    path = Path(os.environ.get("SISEARCH_CONFIG_DIR") or Path(__file__).resolve().parent.parent / "conf")
    if not (path / "config.yaml").is_file():
        raise SystemExit(f"sisearch: no config.yaml in {path}; set SISEARCH_CONFIG_DIR to the conf/ directory")
    return str(path)


def _main(cfg: DictConfig) -> None:
    from sisearch.loop import run

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        run(cfg, Path(HydraConfig.get().runtime.output_dir))
    except (ConfigError, FileNotFoundError, ValueError) as err:
        logging.getLogger("sisearch").error("%s", err)
        print(f"sisearch: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def main() -> None:
    hydra.main(config_path=config_dir(), config_name="config", version_base="1.3")(_main)()


if __name__ == "__main__":
    main()
