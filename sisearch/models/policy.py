"""One loading path for every policy: an HF directory, `AutoModelForCausalLM` + `AutoTokenizer`."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoraConfig:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class Policy:
    """The model being improved and its tokenizer, kept together."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    path: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def is_peft(self) -> bool:
        return hasattr(self.model, "disable_adapter")

    def save(self, directory: Path) -> None:
        """Write weights (safetensors; adapters only under LoRA) and tokenizer, atomically."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        self.model.save_pretrained(tmp, safe_serialization=True)
        self.tokenizer.save_pretrained(tmp)
        if directory.exists():
            raise FileExistsError(f"refusing to overwrite the finished checkpoint {directory}")
        os.replace(tmp, directory)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


MODEL_DIR_HINT = "expected config.json with a model_type, weights as *.safetensors or *.bin, and tokenizer files"


def check_model_dir(path: Path) -> None:
    """Fail before loading when `path` cannot be a Hugging Face model directory."""
    if not path.is_dir():
        raise FileNotFoundError(f"model directory not found: {path}")
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a Hugging Face model directory: it has no config.json ({MODEL_DIR_HINT})")
    try:
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise ValueError(f"{path}/config.json is not a JSON object ({err}); {MODEL_DIR_HINT}") from None
    if not model_type:
        raise ValueError(f"{path}/config.json has no model_type; {MODEL_DIR_HINT}")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ValueError(f"{path} holds no weights (*.safetensors or *.bin); {MODEL_DIR_HINT}")


def check_tokenizer(tokenizer: PreTrainedTokenizerBase, path: Path) -> None:
    """EOS is required (it ends every solution); a missing pad token falls back to EOS."""
    if tokenizer.eos_token_id is None:
        raise ValueError(
            f"the tokenizer in {path} has no eos_token; sisearch needs one to end solutions "
            "(set eos_token in its tokenizer_config.json or special_tokens_map.json)"
        )
    if tokenizer.pad_token_id is None:
        # Padding positions are always masked out, so reusing EOS for padding is safe.
        tokenizer.pad_token = tokenizer.eos_token


def load_policy(
    path: str | Path,
    device: str = "auto",
    dtype: str = "float32",
    trust_remote_code: bool = False,
    lora: LoraConfig | None = None,
    adapter_path: str | Path | None = None,
) -> Policy:
    path = Path(path)
    check_model_dir(path)
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype '{dtype}'; allowed: {', '.join(DTYPES)}")
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    check_tokenizer(tokenizer, path)
    model: Any = AutoModelForCausalLM.from_pretrained(
        path, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code, use_safetensors=None
    )
    model.to(resolve_device(device))
    if adapter_path is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_path), is_trainable=True)
    elif lora is not None:
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        model = get_peft_model(
            model,
            PeftLoraConfig(
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=list(lora.target_modules),
                task_type="CAUSAL_LM",
            ),
        )
    model.eval()
    return Policy(model=model, tokenizer=tokenizer, path=str(path))
