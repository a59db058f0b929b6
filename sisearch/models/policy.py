"""One loading path for every policy: an HF directory, `AutoModelForCausalLM` + `AutoTokenizer`."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoraConfig:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    # names of linear modules (the last part of their path: q_proj matches model.layers.0.self_attn.q_proj),
    # or ["all-linear"]; a name the model lacks is refused with the list of the model's own
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha <= 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(
                f"lora: r must be >= 1, alpha > 0 and dropout in [0, 1); got r={self.r}, alpha={self.alpha}, "
                f"dropout={self.dropout}"
            )
        if not self.target_modules:
            raise ValueError("lora: target_modules is empty; name linear modules such as q_proj, v_proj")


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


def check_dtype(dtype: str, what: str = "model") -> None:
    if dtype not in DTYPES:
        raise ValueError(f"{what}: unknown dtype '{dtype}'; allowed: {', '.join(DTYPES)}")


def policy_options(cfg: Any) -> dict[str, Any]:
    """The loading switches of a model config, for `load_policy` (configs that lack one get its default)."""
    return {
        "device": getattr(cfg, "device", "auto"),
        "dtype": getattr(cfg, "dtype", "float32"),
        "trust_remote_code": getattr(cfg, "trust_remote_code", False),
        "gradient_checkpointing": getattr(cfg, "gradient_checkpointing", False),
        "attn_implementation": getattr(cfg, "attn_implementation", None),
    }


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


def linear_module_names(model: torch.nn.Module) -> set[str]:
    """The last path part of every linear layer: the names LoRA's target_modules match."""
    from transformers.pytorch_utils import Conv1D  # GPT-2's linear layers

    return {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, (torch.nn.Linear, Conv1D))}


def check_lora_targets(path: Path, lora: LoraConfig, trust_remote_code: bool) -> None:
    """Refuse target modules the model lacks, from its module tree on the meta device (no weights read)."""
    if list(lora.target_modules) == ["all-linear"]:
        return
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    known = linear_module_names(skeleton)
    missing = [t for t in lora.target_modules if t not in known]
    if missing:
        raise ValueError(
            f"lora.target_modules: {', '.join(missing)} not in the model at {path}; its linear modules: "
            f"{', '.join(sorted(known))} (or use [all-linear])"
        )


def load_policy(
    path: str | Path,
    device: str = "auto",
    dtype: str = "float32",
    trust_remote_code: bool = False,
    lora: LoraConfig | None = None,
    adapter_path: str | Path | None = None,
    gradient_checkpointing: bool = False,
    attn_implementation: str | None = None,
) -> Policy:
    path = Path(path)
    check_model_dir(path)
    check_dtype(dtype)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    check_tokenizer(tokenizer, path)
    if lora is not None and adapter_path is None:
        check_lora_targets(path, lora, trust_remote_code)
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model: Any = AutoModelForCausalLM.from_pretrained(
        path, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code, use_safetensors=None, **extra
    )
    model.to(resolve_device(device))
    if gradient_checkpointing:
        # Under LoRA the embeddings are frozen, so a checkpointed block's input would carry no grad and the
        # adapters inside it none either (reentrant checkpointing); input grads keep them flowing.
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # gradient_checkpointing_enable is its deprecated alias
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        if lora is not None or adapter_path is not None:
            model.enable_input_require_grads()
    if adapter_path is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_path), is_trainable=True)
    elif lora is not None:
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        targets = lora.target_modules[0] if list(lora.target_modules) == ["all-linear"] else list(lora.target_modules)
        model = get_peft_model(
            model,
            PeftLoraConfig(
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=targets,
                task_type="CAUSAL_LM",
            ),
        )
    model.eval()
    return Policy(model=model, tokenizer=tokenizer, path=str(path))
