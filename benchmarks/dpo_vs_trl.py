"""DPO training speed: sisearch's `dpo` optimizer against TRL's DPOTrainer on the same pairs, same settings.

    pip install -e '.[bench]'        # TRL, for this benchmark only
    python benchmarks/dpo_vs_trl.py [--model tiny|smollm2] [--pairs 256] [--batch-size 16] [--epochs 1]
                                    [--data RUN/iterations/1/data.jsonl] [--repeats 2] [--threads 1] [--profile]

The pairs are an iteration's preference data: `--data` reads a loop's `data.jsonl`; without it the script
makes them as the default recipe does (best-of-8 on train problems, verifier, outcome pairs). Both sides train
on the same token ids: TRL's dataset holds sisearch's encoded `prompt_ids` / `chosen_ids` / `rejected_ids`
columns (EOS appended where a solution ended), and its text tokenization step is skipped. Both use the same
batch size, max length (long enough that nothing is cut: the sides truncate differently), beta, learning rate
(constant, AdamW, no weight decay, gradient clipping 1.0), sigmoid loss, float32, one CPU process, no
activation checkpointing (TRL's default has it on), with the reference log-probs either precomputed before
training or computed on the fly each step (sisearch: a frozen copy, scored in the training step; TRL:
`precompute_ref_log_probs=False`, its reference model).

Agreement: a one-step run of both on the first `--batch-size` pairs (so each side's first batch holds exactly
those pairs, whatever the order) compares the first step's loss and summed log-probs. Speed: the wall time
of a whole `fit` on `--pairs` pairs for `--epochs` (setup, reference pass and training; model loading
excluded), as pairs per second, each side's best of `--repeats` interleaved fits. Headline: sisearch / TRL
pairs per second (goal >= 1.3x). `--profile` prints the top cProfile entries of one more fit of each.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_model import compose  # noqa: E402  (also puts the repo first on sys.path, sets offline env)

import torch  # noqa: E402

os.environ.setdefault("TQDM_DISABLE", "1")
warnings.filterwarnings("ignore")

MODELS = {  # config overrides of each model
    "tiny": ["model.device=cpu"],
    # LoRA as model=smollm2 defaults; the reference is the base model (adapters disabled) on both sides
    "smollm2": ["model=smollm2", "model.device=cpu", "task=arith_small"],
}


def setup(model: str):
    """(model component, task, config) for `model`."""
    from sisearch import registry

    cfg = compose([*MODELS[model], "optimizer=dpo", "logger=none", "searcher=best_of_n", "builder=outcome_pairs"])
    task = registry.build("task", registry.validate("task", cfg.task))
    return registry.build("model", registry.validate("model", cfg.model)), task, cfg


def search_pairs(component, task, cfg, count: int, seed: int) -> list:
    """Preference pairs as an iteration of the default recipe makes them: best-of-8 on train problems."""
    from sisearch import registry
    from sisearch.search.scheduler import SearchContext, run_search

    policy = component.load(progress_bar=False)
    task.use_tokenizer(policy.tokenizer)
    engine = registry.build("engine", registry.validate("engine", cfg.engine), policy=policy)
    searcher = registry.build("searcher", registry.validate("searcher", cfg.searcher))
    rewarder = registry.build("rewarder", registry.validate("rewarder", cfg.rewarder), task=task, engine=engine)
    builder = registry.build("builder", registry.validate("builder", cfg.builder))
    ctx = SearchContext(task, engine, rewarder, step_max_new_tokens=32, progress=False)
    problems, pairs = task.problems("train"), []
    engine.reseed(seed)
    for start in range(0, len(problems), 16):  # small chunks: stop soon after enough pairs
        chunk = problems[start : start + 16]
        trees = run_search(searcher, chunk, ctx)
        pairs += builder.build(trees, {p.id: p for p in chunk}, seed)
        if len(pairs) >= count:
            break
    return pairs[:count]


def trainer_config():
    from sisearch.optim.common import TrainerConfig

    return TrainerConfig(accelerator="cpu", precision="32-true", gradient_clip_val=1.0, progress_bar=False)


def sisearch_fit(policy, pairs, args, on_the_fly: bool, steps: int | None) -> dict[str, float]:
    """sisearch's dpo optimizer; on the fly: the same PairModule with a frozen copy scoring each batch."""
    from sisearch.optim.base import run_training, seeded_loader, steps_for
    from sisearch.optim.dpo import DPOConfig, DPOOptimizer, PairModule
    from sisearch.optim.losses import dpo_loss
    from sisearch.optim.pairs import collate_pairs, encode_pairs, pair_logps, reference_context

    cfg = DPOConfig(beta=args.beta, lr=args.lr, batch_size=args.batch_size, epochs=args.epochs, max_steps=steps,
                    max_length=args.max_length, reference=args.reference)
    if not on_the_fly:
        return DPOOptimizer(cfg).fit(policy, pairs, trainer_config(), args.seed)
    frozen = None if policy.is_peft else copy.deepcopy(policy.model).eval().requires_grad_(False)

    def pair_loss(batch, chosen, rejected):
        with torch.no_grad(), reference_context(policy, cfg.reference):
            ref_chosen, ref_rejected, _, _ = pair_logps(frozen or policy.model, batch)
        return dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=cfg.beta, loss_type=cfg.loss_type)

    items = encode_pairs(policy, pairs)
    total = steps_for(len(items), cfg.batch_size, cfg.epochs, 1, cfg.max_steps)
    collate = partial(collate_pairs, pad_id=policy.tokenizer.pad_token_id, max_length=cfg.max_length)
    module = PairModule(policy.model, cfg, total, pair_loss)
    loader = seeded_loader(items, cfg.batch_size, collate, args.seed)
    return run_training(module, loader, trainer_config(), total, policy.model)


def trl_dataset(policy, pairs):
    """TRL's pre-tokenized columns, holding exactly the ids sisearch trains on."""
    from datasets import Dataset

    from sisearch.optim.pairs import encode_pairs

    items = encode_pairs(policy, pairs)
    return Dataset.from_dict({
        "prompt_ids": [item.chosen[0] for item in items],
        "chosen_ids": [item.chosen[1] for item in items],
        "rejected_ids": [item.rejected[1] for item in items],
    })


def trl_fit(policy, pairs, args, on_the_fly: bool, steps: int | None) -> dict[str, float]:
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    class PreTokenizedDPOTrainer(DPOTrainer):
        # The columns are already token ids; TRL's own step would re-tokenize text (and it has no text here).
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

    history: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as out:
        config = DPOConfig(
            output_dir=out, per_device_train_batch_size=args.batch_size, learning_rate=args.lr, beta=args.beta,
            loss_type=["sigmoid"], max_length=args.max_length, num_train_epochs=args.epochs,
            max_steps=steps or -1, precompute_ref_log_probs=not on_the_fly, lr_scheduler_type="constant",
            warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch", use_cpu=True,
            logging_steps=1, report_to=[], save_strategy="no", seed=args.seed, disable_tqdm=True,
            dataloader_num_workers=0, bf16=False, fp16=False,
            # TRL's DPOConfig turns activation checkpointing on by default (an extra forward per step); sisearch
            # has it off unless the model config asks (model.gradient_checkpointing): like for like, off here
            gradient_checkpointing=False,
        )
        trainer = PreTokenizedDPOTrainer(model=policy.model, args=config, train_dataset=trl_dataset(policy, pairs),
                                         processing_class=policy.tokenizer)
        trainer.remove_callback(PrinterCallback)  # its per-step dicts would bury the table
        trainer.train()
        history = [row for row in trainer.state.log_history if "loss" in row]
    first = history[0]
    return {"first_loss": first["loss"], "logps/chosen": first.get("logps/chosen", float("nan")),
            "logps/rejected": first.get("logps/rejected", float("nan")), "steps": float(len(history))}


def timed(fn, *fn_args, profile: bool = False):
    profiler = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    result = fn(*fn_args)
    if profiler:
        profiler.disable()
    return result, time.perf_counter() - start, profiler


def top_entries(profiler, count: int = 15) -> str:
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(count)
    return "\n".join(line for line in stream.getvalue().splitlines() if line.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny")
    parser.add_argument("--data", default=None, help="an iteration's data.jsonl (default: pairs made by a search)")
    parser.add_argument("--pairs", type=int, default=256, help="preference pairs to train on")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--repeats", type=int, default=2, help="timed fits per side and setting (the best is kept)")
    parser.add_argument("--profile", action="store_true", help="cProfile one more fit of each side and setting")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.reference = "adapters_disabled" if args.model == "smollm2" else "precomputed"

    from sisearch.data.records import read_records
    from sisearch.optim.pairs import encode_pairs

    component, task, cfg = setup(args.model)
    pairs = read_records(Path(args.data), limit=args.pairs) if args.data else search_pairs(
        component, task, cfg, args.pairs, args.seed)
    policy = component.load(progress_bar=False)
    longest = max(len(i.chosen[0]) + max(len(i.chosen[1]), len(i.rejected[1]))
                  for i in encode_pairs(policy, pairs))
    if longest > args.max_length:
        sys.exit(f"a pair has {longest} tokens > --max-length {args.max_length}; the sides truncate differently")
    print(f"{len(pairs)} pairs (longest {longest} tokens), model {args.model}, batch {args.batch_size}, "
          f"beta {args.beta}, lr {args.lr}, cpu threads {torch.get_num_threads()}", flush=True)

    # 1) agreement on one step over exactly the first batch's pairs
    head = pairs[: args.batch_size]
    ours = sisearch_fit(component.load(progress_bar=False), head, args, on_the_fly=False, steps=1)
    theirs = trl_fit(component.load(progress_bar=False), head, args, on_the_fly=False, steps=1)
    agree = [
        ("first step's loss", ours["train/loss_last"], theirs["first_loss"]),
        ("logps/chosen (mean summed log-prob)", ours["train/logps/chosen"], theirs["logps/chosen"]),
        ("logps/rejected", ours["train/logps/rejected"], theirs["logps/rejected"]),
    ]

    # 2) speed: whole fits, precomputed then on the fly, sides interleaved; each side's best of --repeats
    rows = []
    for on_the_fly in (False, True):
        setting = "on the fly" if on_the_fly else "precomputed"
        best: dict[str, float] = {}
        for _ in range(args.repeats):
            for side, fit in (("sisearch", sisearch_fit), ("TRL", trl_fit)):
                _, seconds, _ = timed(fit, component.load(progress_bar=False), pairs, args, on_the_fly, None)
                best[side] = min(seconds, best.get(side, seconds))
                print(f"done {side}, {setting}: {seconds:.1f} s", flush=True)
        rows.append((setting, {side: len(pairs) * args.epochs / seconds for side, seconds in best.items()}))
        if args.profile:  # extra runs: the profiler's overhead stays out of the timings
            for side, fit in (("sisearch", sisearch_fit), ("TRL", trl_fit)):
                _, _, profiler = timed(fit, component.load(progress_bar=False), pairs, args, on_the_fly, None,
                                       profile=True)
                print(f"\n--- cProfile, {side}, {setting} reference (by own time) ---\n{top_entries(profiler)}")

    print(f"\n| check, first step on the first {len(head)} pairs | sisearch | TRL | |difference| |")
    print("|---|---|---|---|")
    for name, a, b in agree:
        print(f"| {name} | {a:.6f} | {b:.6f} | {abs(a - b):.2e} |")
    print("\n| reference log-probs | sisearch pairs/s | TRL pairs/s | sisearch / TRL |")
    print("|---|---|---|---|")
    for name, rates in rows:
        print(f"| {name} | {rates['sisearch']:.1f} | {rates['TRL']:.1f} | {rates['sisearch'] / rates['TRL']:.2f}x |")
    loss_ok = abs(agree[0][1] - agree[0][2]) <= 1e-4
    print(f"\nfirst-step losses agree to 1e-4: {'yes' if loss_ok else 'NO'}")
    ratios = "; ".join(f"{name} {r['sisearch'] / r['TRL']:.2f}x" for name, r in rows)
    print(f"headline: sisearch / TRL pairs per second ({args.model}): {ratios} (goal >= 1.3x)")


if __name__ == "__main__":
    main()
