"""The benchmarks' own code paths that can run on CPU in seconds (the comparisons themselves take minutes)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def run_gpu_check(*args: str, cache) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--cache", str(cache)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_gpu_check_cpu_smoke_runs_every_measurement(tmp_path):
    done = run_gpu_check("--cpu-smoke", cache=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for row in ("loop iteration 1: greedy accuracy", "hf engine, batch 8 arith prompts",
                "generate(), static cache", "64 prompt + 128 new tokens", "training, bf16-mixed AdamW",
                "model FLOPs utilisation", "headline:"):
        assert row in done.stdout, f"missing {row!r} in:\n{done.stdout[-2000:]}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the real check")
def test_gpu_check_without_a_gpu_says_so(tmp_path):
    done = run_gpu_check(cache=tmp_path)
    assert done.returncode != 0
    assert "needs a CUDA GPU" in done.stderr and "--cpu-smoke" in done.stderr


def test_count_generated_stops_at_the_first_eos():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from engine_vs_generate import count_generated

    eos, pad = 2, 0
    new = torch.tensor([[5, 6, eos, pad, pad], [5, 6, 7, 8, 9], [eos, pad, pad, pad, pad]])
    assert count_generated(new, eos) == 3 + 5 + 1
