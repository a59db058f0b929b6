"""`hf`: any local Hugging Face causal LM directory, or a local GGUF file converted to one (nothing is downloaded)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sisearch.models.gguf import ensure_converted, prepare_gguf
from sisearch.models.policy import LoraConfig, Policy, check_dtype, load_policy, policy_options
from sisearch.registry import ConfigError, register

GGUF_INSTALL = "pip install gguf"


@dataclass
class HFModelConfig:
    name: str = "hf"
    path: str | None = None  # a model directory; with gguf_file, the directory a relative gguf_file is in
    gguf_file: str | None = None  # a GGUF file, converted once to a directory in cache_dir
    cache_dir: str = "~/.cache/sisearch"
    device: str = "auto"
    dtype: str = "float32"
    trust_remote_code: bool = False
    gradient_checkpointing: bool = False
    attn_implementation: str | None = None  # eager, sdpa, flash_attention_2, ...; null: transformers' choice
    lora: LoraConfig | None = None

    def __post_init__(self) -> None:
        if self.path is None and self.gguf_file is None:
            raise ConfigError(
                "model 'hf': 'path' has no value and must be set (a model directory), or set gguf_file (a GGUF file)"
            )
        check_dtype(self.dtype, "model 'hf'")

    @property
    def gguf_path(self) -> Path | None:
        if self.gguf_file is None:
            return None
        # As in transformers' from_pretrained(path, gguf_file=name): a relative name is inside `path`.
        return Path(self.path or ".").expanduser() / Path(self.gguf_file).expanduser()


@register("model", "hf", schema=HFModelConfig)
class HFModel:
    def __init__(self, cfg: HFModelConfig):
        self.cfg = cfg
        if cfg.gguf_path is not None:
            prepare_gguf(cfg.gguf_path, cfg.cache_dir, "model 'hf' with gguf_file", GGUF_INSTALL)

    @staticmethod
    def has_chat_template(cfg: HFModelConfig) -> bool | None:
        """Read from the directory's tokenizer files without loading anything; None when unknown (a GGUF)."""
        if cfg.gguf_path is not None or not Path(cfg.path).expanduser().is_dir():
            return None
        return directory_has_chat_template(Path(cfg.path).expanduser())

    def load(self, progress_bar: bool = True) -> Policy:
        return load_policy(self.base_path, lora=self.cfg.lora, **policy_options(self.cfg))

    @property
    def base_path(self) -> Path:
        if self.cfg.gguf_path is not None:
            return ensure_converted(self.cfg.gguf_path, self.cfg.cache_dir)
        return Path(self.cfg.path)


def directory_has_chat_template(directory: Path) -> bool:
    """Whether a saved tokenizer carries a chat template (in its own file, or in tokenizer_config.json)."""
    if (directory / "chat_template.jinja").is_file() or (directory / "chat_template.json").is_file():
        return True
    config = directory / "tokenizer_config.json"
    try:
        return bool(json.loads(config.read_text()).get("chat_template")) if config.is_file() else False
    except (OSError, ValueError):
        return False
