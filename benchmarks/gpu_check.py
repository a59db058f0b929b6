"""A CUDA machine check: one loop iteration with a from-scratch ~50M-parameter model on arith, in bf16.

    python benchmarks/gpu_check.py [--cache DIR] [--peak-tflops 989]      # on a CUDA machine
    python benchmarks/gpu_check.py --cpu-smoke                              # a tiny CPU run of the same code

Prints, for a Llama of about 50M parameters trained from scratch on arith (the `tiny` model at larger sizes):
1. one iteration of the default loop (best-of-8 search, outcome pairs, DPO + NLL; trainer precision bf16-mixed)
   with its wall times and accuracies;
2. generation tokens/s at batch 256 on arith prompts: the `hf` engine, `generate()` with the dynamic KV cache,
   and `generate()` with `cache_implementation="static"`; and `generate()` alone, forced to 128 new tokens
   after 64-token prompts (dynamic and static cache), the setting of the earlier H100 measurement;
3. training tokens/s of bf16-mixed AdamW steps (batch 64 x 256 tokens) and the model FLOPs utilisation,
   6 x parameters x tokens/s (plus attention) over the card's dense bf16 peak (H100/H200: 989 TFLOPs).

A GPU machine without network and without hydra-core, omegaconf and wandb: on a machine with network and the
same Python version and platform, `pip download hydra-core omegaconf wandb -d wheels/`; carry `wheels/` with
the checkout; on the GPU machine `pip install --no-index --find-links wheels/ hydra-core omegaconf wandb`.
Without a GPU the script stops with a message, unless `--cpu-smoke` (a few-second run with a small model).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's sisearch

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}
WHEELS = ("to install them offline: `pip download hydra-core omegaconf wandb -d wheels/` on a machine with "
          "network (same Python and platform), carry wheels/, then `pip install --no-index --find-links wheels/ "
          "hydra-core omegaconf wandb`")
# ~50M parameters: 16 blocks of width 512 (3.4M each) plus the small character vocabulary
FULL = dict(hidden_size=512, num_layers=16, num_heads=8, intermediate_size=1536, max_position_embeddings=512,
            sft_steps=300, batch_size=256, lr=1e-3)
SMOKE = dict(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_position_embeddings=512,
             sft_steps=4, batch_size=8, lr=1e-3)


def settings(smoke: bool) -> dict:
    """Sizes of each measurement: the real ones, or a few seconds' worth on CPU."""
    if smoke:
        return dict(model=SMOKE, batch=8, train_batch=4, train_len=64, train_steps=2, problems=16, budget=400)
    return dict(model=FULL, batch=256, train_batch=64, train_len=256, train_steps=20, problems=512, budget=60000)


def check_environment(smoke: bool) -> None:
    missing = [m for m in ("hydra", "omegaconf") if importlib.util.find_spec(m) is None]
    if missing:
        sys.exit(f"gpu_check.py needs {', '.join(missing)} (the loop composes its config with Hydra); {WHEELS}")
    import torch

    if not smoke and not torch.cuda.is_available():
        sys.exit("gpu_check.py needs a CUDA GPU and none is visible (torch.cuda.is_available() is False); "
                 "`--cpu-smoke` runs the same code on CPU with a tiny model")


def peak_flops(device_name: str, override: float | None) -> float | None:
    if override:
        return override * 1e12
    return next((tflops * 1e12 for key, tflops in PEAK_BF16_TFLOPS.items() if key in device_name), None)


def loop_iteration(overrides: list[str], run_dir: Path) -> list[dict]:
    from real_model import compose

    from sisearch.loop import run

    return run(compose(overrides), run_dir)


def generation_rates(policy, prompts: list[list[int]], new_tokens: int, fixed: bool) -> dict[str, float]:
    """Tokens/s of the engine and of generate() (dynamic and static cache) on the same prompt ids."""
    from engine_vs_generate import run_engine, run_generate

    from sisearch.engines.hf import HFEngine, HFEngineConfig

    rates = {}
    options = {"min_new_tokens": new_tokens} if fixed else {}
    if not fixed:  # the engine stops at EOS: it has no forced length
        engine = HFEngine(HFEngineConfig(suppress_special_tokens=False), policy)
        run_engine(engine, prompts[:8], 1, 4, seed=0)  # warm-up
        tokens, seconds = run_engine(engine, prompts, 1, new_tokens, seed=1)
        rates["hf engine"] = tokens / seconds
    for cache in ("dynamic", "static"):
        extra = {**options, **({"cache_implementation": "static"} if cache == "static" else {})}
        run_generate(policy, prompts, 1, new_tokens, seed=0, **extra)  # warm-up (and static cache set-up)
        tokens, seconds = run_generate(policy, prompts, 1, new_tokens, seed=1, **extra)
        rates[f"generate(), {cache} cache"] = tokens / seconds
    return rates


def training_rate(policy, batch: int, length: int, steps: int) -> tuple[float, float]:
    """(tokens/s, model FLOPs per token) of bf16-mixed AdamW steps on random token ids."""
    import torch

    model, device = policy.model, policy.device
    model.train()
    cfg = model.config
    params = sum(p.numel() for p in model.parameters())
    # 6N per token for the matmuls, plus attention's scores and mixing (forward + backward: 3 x 4 x L x h x T/2)
    flops_per_token = 6 * params + 6 * cfg.num_hidden_layers * cfg.hidden_size * length
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(4, cfg.vocab_size, (batch, length), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)

    def step() -> None:
        with autocast:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):  # warm-up
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    model.eval()
    return batch * length * steps / (time.perf_counter() - start), flops_per_token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="a tiny model on CPU: exercises the code only")
    parser.add_argument("--cache", default=None, help="model cache directory (default: a fresh temporary one)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 peak (default: "
                        "from its name: " + ", ".join(f"{k} {v:g}" for k, v in PEAK_BF16_TFLOPS.items()) + ")")
    args = parser.parse_args()
    check_environment(args.cpu_smoke)

    import torch

    from sisearch.models.policy import load_policy
    from sisearch.models.tiny import TinyConfig, ensure_tiny
    from sisearch.tasks.arith import ArithConfig, ArithTask

    run = settings(args.cpu_smoke)
    device = "cpu" if args.cpu_smoke else "cuda"
    name = "CPU (smoke run)" if args.cpu_smoke else torch.cuda.get_device_name(0)
    cache = args.cache or tempfile.mkdtemp(prefix="sisearch-gpu-check-")
    model_overrides = [f"model.{k}={v}" for k, v in run["model"].items()] + [f"model.cache_dir={cache}",
                                                                              f"model.device={device}"]
    print(f"device: {name}; torch {torch.__version__}", flush=True)

    # 1) one loop iteration (training the model from scratch first, when the cache lacks it)
    start = time.time()
    directory = ensure_tiny(TinyConfig(**run["model"], cache_dir=cache, device=device), progress_bar=False)
    print(f"from-scratch SFT of the model: {time.time() - start:.0f} s", flush=True)
    start = time.time()
    rows = loop_iteration([
        *model_overrides, "iterations=1", "logger=none", "progress=false", "trainer.progress_bar=false",
        f"trainer.accelerator={'cpu' if args.cpu_smoke else 'gpu'}",
        f"trainer.precision={'32-true' if args.cpu_smoke else 'bf16-mixed'}",
        f"problems_per_iteration={run['problems']}", f"search_token_budget={run['budget']}",
        "task.test_size_per_difficulty=8" if args.cpu_smoke else "task.test_size_per_difficulty=100",
    ], Path(tempfile.mkdtemp(prefix="sisearch-gpu-check-run-")))
    loop_seconds = time.time() - start

    # 2) generation and 3) training throughput, on the trained model in bf16
    policy = load_policy(directory, device=device)
    params = sum(p.numel() for p in policy.model.parameters())
    train_tps, flops_per_token = training_rate(policy, run["train_batch"], run["train_len"], run["train_steps"])
    policy.model.to(torch.bfloat16)
    task = ArithTask(ArithConfig())
    encode = policy.tokenizer
    prompts = [encode(task.prompt(p)).input_ids for p in task.problems("train")[: run["batch"]]]
    arith_rates = generation_rates(policy, prompts, task.max_new_tokens, fixed=False)
    generator = torch.Generator().manual_seed(0)
    long_prompts = torch.randint(4, len(encode), (run["batch"], 64), generator=generator).tolist()
    fixed_rates = generation_rates(policy, long_prompts, 128, fixed=True)

    peak = peak_flops(name, args.peak_tflops)
    mfu = f"{100 * train_tps * flops_per_token / peak:.1f}%" if peak else "n/a (peak unknown: --peak-tflops)"
    print(f"\n{name}; model {params / 1e6:.1f}M parameters ({run['model']['num_layers']} x "
          f"{run['model']['hidden_size']}); torch {torch.__version__}\n")
    print("| measurement | value |\n|---|---|")
    for row in rows:
        print(f"| loop iteration {row['iteration']}: greedy accuracy | {row['eval/greedy/overall']:.3f} |")
    print(f"| loop wall time, evaluations included | {loop_seconds:.0f} s |")
    for label, rate in arith_rates.items():
        print(f"| {label}, batch {len(prompts)} arith prompts, tokens/s | {rate:,.0f} |")
    for label, rate in fixed_rates.items():
        print(f"| {label}, batch {len(long_prompts)}, 64 prompt + 128 new tokens, tokens/s | {rate:,.0f} |")
    print(f"| training, bf16-mixed AdamW, batch {run['train_batch']} x {run['train_len']}, tokens/s | "
          f"{train_tps:,.0f} |")
    print(f"| model FLOPs utilisation (vs dense bf16 peak) | {mfu} |")
    best = max(arith_rates, key=arith_rates.get)
    print(f"\nheadline: training MFU {mfu}; fastest generation on arith prompts: {best} "
          f"({arith_rates[best]:,.0f} tokens/s)")


if __name__ == "__main__":
    main()
