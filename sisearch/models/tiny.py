"""`tiny`: a small Llama with a character-level tokenizer, trained from scratch on `arith` chains, cached.

The SFT data carries a systematic misconception: at steps that wrap around the modulus, the written result
is one too large with probability `misconception_rate`. Greedy decoding learns the slip, while sampling still
writes those steps right part of the time, so the model can improve from its own verified-correct samples
(high pass@k, low greedy accuracy: the regime the seed papers call sharpening). A few slips are followed by a
`Wait:` self-correction (`self_correction_rate`), so a reflection trigger means something to the model.
Test questions are never in the SFT data (the arith split is by question hash), and test answers are exact.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from sisearch.files import build_directory_once
from sisearch.models.policy import LoraConfig, Policy, load_policy
from sisearch.optim.session import run_trainer_settings, training_session
from sisearch.optim.sft import SFTConfig, fit_sft
from sisearch.registry import register
from sisearch.tasks.arith import is_held_out, random_chain, written_solution

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]
# Every character the arith task and its self-corrections use.
ALPHABET = "0123456789+-=?:\nQAWait "
DONE_MARKER = "sisearch-tiny.json"


@dataclass
class TinyConfig:
    name: str = "tiny"
    # architecture
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    max_position_embeddings: int = 256
    # SFT data
    modulus: int = 10
    min_ops: int = 1
    max_ops: int = 6
    misconception_rate: float = 0.6
    self_correction_rate: float = 0.05
    # SFT run
    sft_steps: int = 700
    batch_size: int = 64
    lr: float = 1.5e-3
    seed: int = 0
    # where the trained directory is cached (keyed by everything above)
    cache_dir: str = "~/.cache/sisearch"
    device: str = "auto"
    lora: LoraConfig | None = None
    trust_remote_code: bool = False  # not used by tiny; present so every model config has the same switches


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer: one token per character, BOS prepended, decoding without spaces."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for char in ALPHABET:
        vocab.setdefault(char, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def cache_key(cfg: TinyConfig) -> str:
    relevant = {k: v for k, v in asdict(cfg).items() if k not in ("cache_dir", "device", "lora", "name")}
    relevant["format"] = 1  # bump when the data format or training code changes what is learned
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:12]


def sft_examples(cfg: TinyConfig, count: int) -> list[tuple[str, str]]:
    rng = random.Random(f"tiny-sft-{cfg.seed}")
    examples = []
    while len(examples) < count:
        chain = random_chain(rng, rng.randint(cfg.min_ops, cfg.max_ops), cfg.modulus)
        if is_held_out(chain.question):
            continue
        solution = written_solution(chain, rng, cfg.misconception_rate, cfg.self_correction_rate)
        examples.append((chain.question + "\n", solution))
    return examples


def train_tiny(cfg: TinyConfig, directory: Path, progress_bar: bool = True) -> dict[str, float]:
    torch.manual_seed(cfg.seed)
    tokenizer = build_tokenizer()
    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(model_config)
    policy = Policy(model=model, tokenizer=tokenizer, path=str(directory))
    sft = SFTConfig(
        lr=cfg.lr, batch_size=cfg.batch_size, epochs=1.0, max_steps=cfg.sft_steps, schedule="cosine", warmup_ratio=0.05
    )
    run = run_trainer_settings()  # the run's Trainer settings; its curves stay out of the run's logger
    # One process trains it (rank 0 of a distributed run, the others wait for the cache): no strategy of its own.
    trainer = replace(run, accelerator="cpu" if cfg.device == "cpu" else run.accelerator, strategy="auto", devices=1,
                      num_nodes=1, progress_bar=progress_bar and run.progress_bar)
    with training_session(trainer):
        metrics = fit_sft(policy, sft_examples(cfg, cfg.sft_steps * cfg.batch_size), sft, trainer, cfg.seed)
    policy.model.to("cpu")
    policy.save(directory)
    return metrics


def ensure_tiny(cfg: TinyConfig, progress_bar: bool = True) -> Path:
    """The trained tiny model's directory, training it first if the cache has none for this config."""
    directory = Path(os.path.expanduser(cfg.cache_dir)) / f"tiny-{cache_key(cfg)}"

    def train(target: Path) -> dict:
        start = time.time()
        metrics = train_tiny(cfg, target, progress_bar)
        return {"config": asdict(cfg), "train_seconds": time.time() - start, **metrics}

    return build_directory_once(directory, DONE_MARKER, train, prefix=".tiny-")


@register("model", "tiny", schema=TinyConfig)
class TinyModel:
    def __init__(self, cfg: TinyConfig):
        self.cfg = cfg

    @staticmethod
    def has_chat_template(cfg: TinyConfig) -> bool:
        return False  # a character-level model trained on the plain format

    def load(self, progress_bar: bool = True) -> Policy:
        return load_policy(ensure_tiny(self.cfg, progress_bar), device=self.cfg.device, lora=self.cfg.lora)

    @property
    def base_path(self) -> Path:
        return ensure_tiny(self.cfg)


__all__ = ["TinyConfig", "TinyModel", "build_tokenizer", "ensure_tiny"]
