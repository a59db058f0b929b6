"""The vllm engine, driven through a fake `vllm` module (vLLM needs a GPU and is not installed here).

The fake follows vLLM 0.33.0's API: it refuses what the real one refuses (unknown or out-of-range
SamplingParams, n > 1 with greedy sampling, LoRA requests without `enable_lora`, prompts that are not
`TokensPrompt`s) and answers with RequestOutput-like objects built from a deterministic scheme: each prompt's
continuations are scripted by the test, and the log-prob of token `tok` at sequence position `t` is `lp(t, tok)`.
So the tests check the translation exactly: requests, finish reasons, stop strings, log-prob extraction,
prompt-log-prob slicing, grouping of n samples, seeds, syncs, and the error when vLLM is missing.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from conftest import REPO, compose
from safetensors.torch import load_file
from transformers import AutoTokenizer

from sisearch import registry
from sisearch.engines.vllm import INSTALL_HINT, VLLMEngine, VLLMEngineConfig, finish_reason
from sisearch.optim.logprobs import encode_completion, encode_prompt
from sisearch.registry import ConfigError

EOS_MARK = "<EOS>"  # a scripted continuation ending in this mark ends with the EOS token


def lp(position: int, token: int) -> float:
    """The fake model's log-prob of `token` at sequence position `position`."""
    return -(position + token / 1000.0) / 10.0


# --- the fake vllm ----------------------------------------------------------------------------------------


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    prompt_logprobs: list[dict[int, Logprob] | None] | None
    outputs: list[CompletionOutput]
    finished: bool = True


class SamplingParams:
    """vLLM's defaults and the checks of its `_verify_args`/`_validate_logprobs` that matter here."""

    DEFAULTS: dict[str, Any] = dict(
        n=1, temperature=1.0, top_p=1.0, seed=None, stop=None, max_tokens=16, logprobs=None, prompt_logprobs=None,
        include_stop_str_in_output=False, skip_special_tokens=True, detokenize=True, logprob_token_ids=None,
    )

    def __init__(self, **kwargs):
        unknown = set(kwargs) - set(self.DEFAULTS)
        if unknown:
            raise TypeError(f"SamplingParams got unexpected keyword arguments {sorted(unknown)}")
        for key, default in self.DEFAULTS.items():
            setattr(self, key, kwargs.get(key, default))
        self.given = dict(kwargs)
        self.stop = [] if self.stop is None else [self.stop] if isinstance(self.stop, str) else list(self.stop)
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        for name in ("logprobs", "prompt_logprobs"):
            value = getattr(self, name)
            if value is not None and value < 0 and value != -1:
                raise ValueError(f"{name} must be non-negative or -1, got {value}")
        if any(not s for s in self.stop):
            raise ValueError("stop cannot contain an empty string.")
        if self.stop and not self.detokenize:
            raise ValueError("stop strings are only supported when detokenize is True.")
        if self.logprob_token_ids is not None and len(self.logprob_token_ids) > 128:
            raise ValueError("Requested logprob_token_ids of length > 128")
        if self.temperature < 1e-5 and self.n > 1:
            raise ValueError(f"n must be 1 when using greedy sampling, got {self.n}.")


def TokensPrompt(**kwargs) -> dict:  # a TypedDict in vLLM: calling it makes a dict
    return dict(kwargs)


@dataclass
class LoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str = ""

    def __post_init__(self):
        if self.lora_int_id < 1:
            raise ValueError(f"id must be > 0, got {self.lora_int_id}")
        assert self.lora_path, "lora_path cannot be empty"


ENGINE_ARGS = {
    "dtype", "seed", "gpu_memory_utilization", "max_model_len", "tensor_parallel_size", "enable_prefix_caching",
    "enforce_eager", "enable_sleep_mode", "trust_remote_code", "logprobs_mode", "enable_lora", "max_lora_rank",
    "max_loras", "distributed_executor_backend", "data_parallel_size",
}


class LLM:
    """Records every call; generates the continuations scripted in `continuations` (by prompt text)."""

    instances: list["LLM"] = []

    def __init__(self, model: str, **kwargs):
        assert (Path(model) / "config.json").is_file(), f"not a model directory: {model}"
        unknown = set(kwargs) - ENGINE_ARGS
        assert not unknown, f"unknown engine arguments {unknown}"
        self.model, self.kwargs = model, kwargs
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.continuations: dict[str, list[str]] = {}
        self.requests: list[tuple[dict, SamplingParams, Any]] = []  # every (prompt, params, lora_request)
        self.events: list[tuple] = []  # generate / collective_rpc / reset_prefix_cache / sleep / wake_up, in order
        LLM.instances.append(self)

    def generate(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None):
        assert isinstance(prompts, list) and prompts
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        assert len(params) == len(prompts) and all(isinstance(p, SamplingParams) for p in params)
        if lora_request is not None:
            assert self.kwargs.get("enable_lora"), "a LoRA request needs enable_lora=True"
            assert isinstance(lora_request, LoRARequest)
            assert (Path(lora_request.lora_path) / "adapter_config.json").is_file()
            assert (Path(lora_request.lora_path) / "adapter_model.safetensors").is_file()
        self.events.append(("generate", len(prompts)))
        outputs = []
        for i, (prompt, p) in enumerate(zip(prompts, params)):
            assert isinstance(prompt, dict) and set(prompt) == {"prompt_token_ids"}, prompt
            ids = prompt["prompt_token_ids"]
            assert ids and all(isinstance(t, int) and 0 <= t < len(self.tokenizer) for t in ids)
            for t in p.logprob_token_ids or []:
                assert 0 <= t < len(self.tokenizer), "out-of-vocab logprob_token_ids"
            self.requests.append((prompt, p, lora_request))
            completions = [self.complete(ids, p, k) for k in range(p.n)]
            prompt_lps = None
            if p.prompt_logprobs is not None:
                assert p.prompt_logprobs == 0
                prompt_lps = [None] + [{ids[t]: Logprob(lp(t, ids[t]))} for t in range(1, len(ids))]
            outputs.append(RequestOutput(str(i), None, ids, prompt_lps, completions))
        return outputs

    def complete(self, ids: list[int], p: SamplingParams, k: int) -> CompletionOutput:
        eos = self.tokenizer.eos_token_id
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        script = self.continuations.get(text, [EOS_MARK])
        if p.temperature < 1e-5:
            chosen = script[0]
        else:
            assert p.seed is not None, "the engine seeds every sampled request"
            chosen = script[(p.seed + k) % len(script)]  # vLLM gives the n children seed + k
        tokens = self.tokenizer(chosen.removesuffix(EOS_MARK), add_special_tokens=False).input_ids
        tokens += [eos] if chosen.endswith(EOS_MARK) else []
        out: list[int] = []
        out_text, reason, stop_reason = "", "length", None
        for tok in tokens:
            out.append(tok)
            if tok == eos:
                reason = "stop"
                break
            out_text = self.tokenizer.decode(out, skip_special_tokens=True)
            hits = [(out_text.find(s), s) for s in p.stop if s in out_text]
            if hits:
                at, s = min(hits)
                out_text = out_text[: at + len(s)] if p.include_stop_str_in_output else out_text[:at]
                reason, stop_reason = "stop", s
                break
            if len(out) == p.max_tokens:
                break
        out_text = self.tokenizer.decode(out, skip_special_tokens=True) if stop_reason is None else out_text
        logprobs = None
        if p.logprobs is not None or p.logprob_token_ids:
            assert p.logprobs in (None, 0), "the engine only needs the sampled token's entry"
            logprobs = []
            for i, tok in enumerate(out):
                position = {tok: Logprob(lp(len(ids) + i, tok))}
                if i == 0:
                    position.update({t: Logprob(lp(len(ids), t)) for t in p.logprob_token_ids or []})
                logprobs.append(position)
        return CompletionOutput(k, out_text if p.detokenize else "", out, None, logprobs, reason, stop_reason)

    def collective_rpc(self, method, timeout=None, args=(), kwargs=None):
        self.events.append(("collective_rpc", method, dict(kwargs or {})))
        if method == "reload_weights":
            path = Path(kwargs["weights_path"])
            assert (path / "config.json").is_file() and any(path.glob("*.safetensors"))
        return [None]

    def reset_prefix_cache(self, reset_running_requests=False, reset_connector=False):
        self.events.append(("reset_prefix_cache",))
        return True

    def sleep(self, level=1, mode="abort"):
        self.events.append(("sleep", level))

    def wake_up(self, tags=None):
        self.events.append(("wake_up", tags))
        return True


@pytest.fixture()
def fake_vllm(monkeypatch):
    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams, vllm.TokensPrompt = LLM, SamplingParams, TokensPrompt
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = TokensPrompt
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = LoRARequest
    vllm.inputs, vllm.lora, lora.request = inputs, lora, request
    for name, module in [("vllm", vllm), ("vllm.inputs", inputs), ("vllm.lora", lora), ("vllm.lora.request", request)]:
        monkeypatch.setitem(sys.modules, name, module)
    LLM.instances.clear()
    return vllm


def build(policy, **cfg) -> tuple[VLLMEngine, LLM]:
    engine = registry.build("engine", {"name": "vllm", **cfg}, policy=policy)
    return engine, engine.llm


PROMPTS = ["Q:1+2=?\n", "Q:7+5-9=?\n", "Q:4-4=?\n"]


# --- building -------------------------------------------------------------------------------------------


def test_engine_starts_vllm_on_the_policy_directory_with_the_configured_arguments(fake_vllm, tiny_policy, tiny_dir):
    _, llm = build(tiny_policy, gpu_memory_utilization=0.7, max_model_len=512, tensor_parallel_size=2, dtype="bfloat16",
                   seed=3, enforce_eager=True)
    assert llm.model == str(tiny_dir)
    assert llm.kwargs == dict(
        dtype="bfloat16", seed=3, gpu_memory_utilization=0.7, max_model_len=512, tensor_parallel_size=2,
        enable_prefix_caching=True, enforce_eager=True, enable_sleep_mode=False, trust_remote_code=False,
        logprobs_mode="raw_logprobs",  # temperature-1 log-probs of the policy itself, whatever the sampling
    )


def test_engine_vllm_composes_and_validates_with_its_defaults():
    cfg = registry.validate("engine", compose(["engine=vllm", "seed=7"])["engine"])
    assert isinstance(cfg, VLLMEngineConfig)
    assert cfg.seed == 7 and cfg.enable_prefix_caching is True and cfg.max_model_len is None and cfg.top_p == 1.0


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("gpu_memory_utilization", 1.5, "gpu_memory_utilization must be in (0, 1], got 1.5"),
        ("max_model_len", 0, "max_model_len must be null or at least 1, got 0"),
        ("tensor_parallel_size", 0, "tensor_parallel_size must be at least 1, got 0"),
        ("dtype", "fp8", "unknown dtype 'fp8'; allowed: auto, half, float16, bfloat16, float, float32"),
        ("top_p", 0.0, "top_p must be in (0, 1], got 0.0"),
        ("max_lora_rank", 12, "max_lora_rank must be one of 1, 8, 16, 32, 64, 128, 256, 320, 512, got 12"),
    ],
)
def test_bad_engine_values_are_one_line_config_errors(key, value, message):
    with pytest.raises(ConfigError) as err:
        registry.validate("engine", {"name": "vllm", key: value})
    assert str(err.value) == f"engine 'vllm': {message}"


# --- generation -----------------------------------------------------------------------------------------


def test_n_samples_are_grouped_per_prompt_each_request_with_its_own_seed(fake_vllm, tiny_policy):
    engine, llm = build(tiny_policy, top_p=0.9)
    llm.continuations = {p: [f"{i}{j}{EOS_MARK}" for j in "123"] for i, p in enumerate(PROMPTS)}
    out = engine.generate(PROMPTS, n=3, max_new_tokens=20, temperature=0.7)
    assert [sorted(s.text for s in samples) for samples in out] == [[f"{i}{j}" for j in "123"] for i in range(3)]
    tokenizer = tiny_policy.tokenizer
    assert len(llm.requests) == 3
    seeds = []
    for prompt, (request, params, lora) in zip(PROMPTS, llm.requests):
        assert request == {"prompt_token_ids": encode_prompt(tokenizer, prompt)}
        assert params.given == dict(
            n=3, temperature=0.7, top_p=0.9, max_tokens=20, stop=None, include_stop_str_in_output=True,
            seed=params.seed, logprobs=0, skip_special_tokens=True,
        )
        assert isinstance(params.seed, int) and lora is None
        seeds.append(params.seed)
    assert len(set(seeds)) == 3
    for prompt, samples in zip(PROMPTS, out):
        assert all(s.prompt_tokens == len(encode_prompt(tokenizer, prompt)) for s in samples)


def test_finish_reasons_stop_strings_and_eos(fake_vllm, tiny_policy):
    engine, llm = build(tiny_policy)
    eos = tiny_policy.tokenizer.eos_token_id
    llm.continuations = {PROMPTS[0]: ["1+2=3\nA:3" + EOS_MARK], PROMPTS[1]: ["A:3" + EOS_MARK], PROMPTS[2]: ["4-4=0\n"]}
    stopped, ended, cut = (s[0] for s in engine.generate(PROMPTS, n=1, max_new_tokens=4, temperature=0.0, stop=["\n"]))
    assert llm.requests[0][1].stop == ["\n"] and llm.requests[0][1].include_stop_str_in_output is True
    # "1+2=3\n" needs 6 tokens: the budget of 4 ends it first
    assert (stopped.text, stopped.finish_reason, len(stopped.token_ids)) == ("1+2=", "length", 4)
    assert (ended.text, ended.finish_reason, ended.token_ids[-1]) == ("A:3", "eos", eos)
    assert (cut.text, cut.finish_reason) == ("4-4=", "length")

    stopped, ended, cut = (s[0] for s in engine.generate(PROMPTS, n=1, max_new_tokens=30, temperature=0.0, stop=["\n"]))
    assert (stopped.text, stopped.finish_reason) == ("1+2=3\n", "stop")  # the stop string is kept
    assert stopped.token_ids == tiny_policy.tokenizer("1+2=3\n", add_special_tokens=False).input_ids
    assert (ended.text, ended.finish_reason) == ("A:3", "eos")
    assert (cut.text, cut.finish_reason) == ("4-4=0\n", "stop")


def test_finish_reason_mapping():
    assert finish_reason(SimpleNamespace(finish_reason="stop", stop_reason="\n")) == "stop"
    assert finish_reason(SimpleNamespace(finish_reason="stop", stop_reason=None)) == "eos"
    # a stop token id comes from the generation config's extra EOS ids (e.g. an end-of-turn token)
    assert finish_reason(SimpleNamespace(finish_reason="stop", stop_reason=128009)) == "eos"
    assert finish_reason(SimpleNamespace(finish_reason="length", stop_reason=None)) == "length"
    with pytest.raises(RuntimeError, match="'abort'"):
        finish_reason(SimpleNamespace(finish_reason="abort", stop_reason=None))


def test_sample_logprobs_are_the_sampled_tokens_entries(fake_vllm, tiny_policy):
    engine, llm = build(tiny_policy)
    llm.continuations = {PROMPTS[0]: ["1+2=3" + EOS_MARK]}
    sample = engine.generate(PROMPTS[:1], n=1, max_new_tokens=10, temperature=1.0)[0][0]
    start = len(encode_prompt(tiny_policy.tokenizer, PROMPTS[0]))
    assert sample.logprobs == [lp(start + i, tok) for i, tok in enumerate(sample.token_ids)]
    assert sample.logprob == pytest.approx(sum(sample.logprobs))


def test_greedy_with_n_copies_asks_vllm_for_one(fake_vllm, tiny_policy):
    engine, llm = build(tiny_policy, top_p=0.8)
    llm.continuations = {PROMPTS[0]: ["1+2=3" + EOS_MARK, "4+4=8" + EOS_MARK]}
    samples = engine.generate(PROMPTS[:1], n=3, max_new_tokens=10, temperature=0.0)[0]
    params = llm.requests[0][1]
    assert (params.n, params.temperature, params.seed, params.top_p) == (1, 0.0, None, 1.0)
    assert [s.text for s in samples] == ["1+2=3"] * 3
    assert samples[0] is not samples[1] and samples[0].token_ids is not samples[1].token_ids
    assert engine.stats.generated_tokens == len(samples[0].token_ids)  # generated once


def test_reseed_reproduces_the_request_seeds_and_samples(fake_vllm, tiny_policy):
    engine, llm = build(tiny_policy)
    llm.continuations = {p: [f"{c}{EOS_MARK}" for c in "1234567"] for p in PROMPTS}

    def run(seed):
        engine.reseed(seed)
        before = len(llm.requests)
        out = engine.generate(PROMPTS, n=2, max_new_tokens=5)
        return [p.seed for _, p, _ in llm.requests[before:]], [[s.text for s in x] for x in out]

    first, again, other = run(5), run(5), run(6)
    assert first == again and first[0] != other[0]


def test_stats_count_calls_prompt_and_generated_tokens(fake_vllm, tiny_policy):
    engine, llm = build(tiny_policy)
    llm.continuations = {PROMPTS[0]: ["12" + EOS_MARK, "1" + EOS_MARK]}
    out = engine.generate(PROMPTS[:1], n=2, max_new_tokens=5)
    assert engine.stats.calls == 1
    assert engine.stats.prompt_tokens == out[0][0].prompt_tokens  # once per prompt, not per sample
    assert engine.stats.generated_tokens == sum(len(s.token_ids) for s in out[0])
    assert engine.generate([], n=2) == [] and engine.stats.calls == 1


# --- scoring --------------------------------------------------------------------------------------------


def test_logprobs_are_the_continuations_prompt_logprobs(fake_vllm, tiny_policy):
    from sisearch.engines.hf import HFEngine, HFEngineConfig

    engine, llm = build(tiny_policy)
    contexts, continuations = ["Q:1+2=?\n", "Q:3+3=?\n1+2=3\n", "Q:5=?\n"], ["1+2=3\n", "A:6", ""]
    got = engine.logprobs(contexts, continuations)
    tokenizer = tiny_policy.tokenizer
    assert len(llm.requests) == 2  # the empty continuation needs no request
    for (request, params, _), ctx, cont, row in zip(llm.requests, contexts, continuations, got):
        ctx_ids, cont_ids = encode_prompt(tokenizer, ctx), encode_completion(tokenizer, cont, append_eos=False)
        ids = ctx_ids + cont_ids
        assert request == {"prompt_token_ids": ids}
        assert (params.prompt_logprobs, params.max_tokens, params.n, params.temperature) == (0, 1, 1, 0.0)
        assert row == [lp(t, ids[t]) for t in range(len(ctx_ids), len(ids))]
    assert got[2] == []
    # the same tokens are scored as by the hf engine
    assert [len(r) for r in got] == [len(r) for r in HFEngine(HFEngineConfig(), tiny_policy).logprobs(contexts, continuations)]
    assert engine.stats.scored_tokens == sum(len(r[0]["prompt_token_ids"]) for r in llm.requests)


def test_next_token_logprobs_ask_for_exactly_the_candidates(fake_vllm, tiny_policy):
    engine, llm = build(tiny_policy)
    tokenizer = tiny_policy.tokenizer
    digits = [tokenizer.convert_tokens_to_ids(c) for c in "0123456789"]
    got = engine.next_token_logprobs(PROMPTS[:2], digits)
    for prompt, (request, params, _), row in zip(PROMPTS, llm.requests, got):
        ids = encode_prompt(tokenizer, prompt)
        assert request == {"prompt_token_ids": ids}
        assert (params.logprob_token_ids, params.max_tokens, params.temperature) == (digits, 1, 0.0)
        assert row == [lp(len(ids), t) for t in digits]


def test_more_than_128_candidates_go_in_chunks(fake_vllm, tiny_policy):
    engine, llm = build(tiny_policy)
    candidates = list(range(3, 23)) * 8  # 160 ids
    got = engine.next_token_logprobs(PROMPTS[:2], candidates)
    assert [len(p.logprob_token_ids) for _, p, _ in llm.requests] == [128, 32, 128, 32]
    for prompt, row in zip(PROMPTS, got):
        n = len(encode_prompt(tiny_policy.tokenizer, prompt))
        assert row == [lp(n, t) for t in candidates]


# --- sync, sleep ----------------------------------------------------------------------------------------


def test_sync_without_lora_reloads_the_saved_weights_in_place(fake_vllm, tiny_policy, tmp_path):
    engine, llm = build(tiny_policy, work_dir=str(tmp_path))
    name, param = next(iter(tiny_policy.model.named_parameters()))
    with torch.no_grad():
        param.add_(1.0)
    engine.sync(tiny_policy)
    (_, method, kwargs), reset = llm.events[-2:]
    assert method == "reload_weights" and reset == ("reset_prefix_cache",)  # stale KV blocks are dropped
    first = Path(kwargs["weights_path"])
    saved = load_file(str(first / "model.safetensors"))
    assert torch.equal(saved[name], param.detach())

    engine.sync(tiny_policy)
    second = Path(llm.events[-2][2]["weights_path"])
    assert second != first and second.is_dir() and not first.exists()  # only the served copy stays


def test_tensor_parallel_engine_gets_each_iterations_weights_through_all_its_workers(fake_vllm, tiny_policy, tmp_path):
    """With tensor_parallel_size > 1 vLLM runs one worker per GPU; the hand-off after training is one
    collective_rpc, which every worker answers by loading its slice of the saved full weights."""
    engine, llm = build(tiny_policy, tensor_parallel_size=4, work_dir=str(tmp_path))
    assert llm.kwargs["tensor_parallel_size"] == 4 and "distributed_executor_backend" not in llm.kwargs
    for _ in range(2):  # two iterations
        engine.sync(tiny_policy)
    rpcs = [e for e in llm.events if e[0] == "collective_rpc"]
    assert [e[1] for e in rpcs] == ["reload_weights", "reload_weights"]
    assert Path(rpcs[-1][2]["weights_path"]).is_dir() and not Path(rpcs[0][2]["weights_path"]).exists()


def test_under_torchrun_each_rank_runs_its_own_engine_in_the_launchs_group(fake_vllm, tiny_policy, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "1")
    _, llm = build(tiny_policy)
    assert llm.kwargs["distributed_executor_backend"] == "external_launcher"
    assert llm.kwargs["data_parallel_size"] == 4 and llm.kwargs["tensor_parallel_size"] == 1
    with pytest.raises(ConfigError, match="tensor_parallel_size=2 under a launch of 4 processes is not supported"):
        VLLMEngine.check_requirements(VLLMEngineConfig(tensor_parallel_size=2))


def test_sync_with_lora_serves_each_new_adapter_under_a_new_id(fake_vllm, tiny_dir, tmp_path):
    from sisearch.models.policy import LoraConfig, load_policy

    policy = load_policy(tiny_dir, device="cpu", lora=LoraConfig(r=4))
    engine, llm = build(policy, work_dir=str(tmp_path))
    assert (llm.model, llm.kwargs["enable_lora"], llm.kwargs["max_lora_rank"], llm.kwargs["max_loras"]) == (
        str(tiny_dir), True, 16, 1)
    llm.continuations = {PROMPTS[0]: ["1+2=3" + EOS_MARK]}
    engine.generate(PROMPTS[:1], n=1, max_new_tokens=8)
    first = llm.requests[-1][2]
    assert first.lora_int_id == 1

    name, param = next((n, p) for n, p in policy.model.named_parameters() if "lora_B" in n)
    with torch.no_grad():
        param.add_(0.5)
    engine.sync(policy)
    engine.generate(PROMPTS[:1], n=1, max_new_tokens=8)
    second = llm.requests[-1][2]
    assert second.lora_int_id == 2 and second.lora_name != first.lora_name and second.lora_path != first.lora_path
    saved = load_file(str(Path(second.lora_path) / "adapter_model.safetensors"))
    assert any(torch.equal(tensor, param.detach()) for tensor in saved.values())
    assert not Path(first.lora_path).exists()
    assert not any(e[0] == "collective_rpc" for e in llm.events)  # the base weights never change


def test_a_lora_rank_above_max_lora_rank_is_refused(fake_vllm, tiny_dir):
    from sisearch.models.policy import LoraConfig, load_policy

    policy = load_policy(tiny_dir, device="cpu", lora=LoraConfig(r=32))
    with pytest.raises(ConfigError, match="LoRA rank 32 exceeds max_lora_rank 16; set engine.max_lora_rank to one of 32, "):
        build(policy)


def test_sleep_frees_the_gpu_until_the_next_call(fake_vllm, tiny_policy):
    engine, llm = build(tiny_policy, enable_sleep_mode=True)
    engine.sleep()
    engine.sleep()
    engine.generate(PROMPTS[:1], n=1, max_new_tokens=3)
    assert [e[0] for e in llm.events] == ["sleep", "wake_up", "generate"]

    engine, llm = build(tiny_policy)  # without sleep mode, sleep() does nothing
    engine.sleep()
    assert llm.events == []


# --- without vllm ---------------------------------------------------------------------------------------


def test_building_without_vllm_fails_in_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # what an environment without vLLM gives
    with pytest.raises(ConfigError) as err:
        registry.build("engine", {"name": "vllm"}, policy=None)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and message.startswith("engine 'vllm' needs vLLM")
    assert message.endswith(INSTALL_HINT)


def test_a_missing_vllm_is_reported_before_any_work(monkeypatch, small_run, tmp_path):
    from sisearch.loop import run

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the missing vLLM was reported")

    monkeypatch.setattr("sisearch.models.tiny.train_tiny", refuse)
    monkeypatch.setattr("sisearch.loop.run_search", refuse)
    monkeypatch.setitem(sys.modules, "vllm", None)
    cfg = compose([o for o in small_run if not o.startswith("model.cache_dir=")]
                  + [f"model.cache_dir={tmp_path / 'cache'}", "engine=vllm"])
    with pytest.raises(ConfigError, match=r"pip install 'sisearch\[vllm\]'"):
        run(cfg, tmp_path / "run")


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_cli_without_vllm_exits_2_with_one_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    env.pop("HYDRA_FULL_ERROR", None)
    result = subprocess.run(
        [sys.executable, "-m", "sisearch.cli", "engine=vllm", "logger=none", f"model.cache_dir={tmp_path / 'cache'}",
         f"hydra.run.dir={tmp_path / 'cli'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sisearch: error: engine 'vllm' needs vLLM"), result.stderr
    assert lines[0].endswith(INSTALL_HINT)
