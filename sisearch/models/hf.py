"""`hf`: any local Hugging Face causal LM directory (nothing is downloaded)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sisearch.models.policy import LoraConfig, Policy, load_policy
from sisearch.registry import register


@dataclass
class HFModelConfig:
    name: str = "hf"
    path: str = "???"
    device: str = "auto"
    dtype: str = "float32"
    trust_remote_code: bool = False
    lora: LoraConfig | None = None


@register("model", "hf", schema=HFModelConfig)
class HFModel:
    def __init__(self, cfg: HFModelConfig):
        self.cfg = cfg

    def load(self, progress_bar: bool = True) -> Policy:
        return load_policy(
            self.cfg.path, self.cfg.device, self.cfg.dtype, self.cfg.trust_remote_code, lora=self.cfg.lora
        )

    @property
    def base_path(self) -> Path:
        return Path(self.cfg.path)


