"""`vllm`: generation and scoring with vLLM on GPU (paged KV cache, prefix caching, tensor parallelism).

Written against vLLM 0.33.0's Python API (read in its released sources: `vllm/entrypoints/llm.py`,
`vllm/sampling_params.py`, `vllm/outputs.py`, `vllm/logprobs.py`, `vllm/lora/request.py`,
`vllm/inputs/llm.py`, `vllm/config/model.py`, `vllm/v1/sample/sampler.py`, `vllm/v1/worker/gpu_worker.py`,
`vllm/model_executor/model_loader/reload/inplace.py`). It has not been run against a real vLLM here (no GPU);
the tests drive it through a fake `vllm` module that checks every argument it is given. Of what it uses,
`SamplingParams.logprob_token_ids` and the worker's `reload_weights(weights_path=...)` are recent additions:
older vLLM releases lack them.

How the Engine contract maps onto vLLM:

- Prompts are tokenized by the policy's tokenizer exactly as the `hf` engine does, and handed over as
  `TokensPrompt(prompt_token_ids=...)`, so both engines see the same tokens (and the counts are ours).
- Per-token log-probs: `LLM(logprobs_mode="raw_logprobs")` makes vLLM return log_softmax of the model's own
  logits, taken before temperature, top-p and every other logits processor (the Sampler's step 1), and
  `SamplingParams(logprobs=0)` returns just the sampled token's entry. That is the policy's temperature-1
  log-prob whatever the sampling temperature, as `Sample` requires. ('processed_logprobs' would return the
  log-probs of the tempered, top-p-truncated distribution, which cannot be turned back into the policy's.)
  The mode is an engine-wide setting (vllm-project/vllm#21398, mid-2025), so it is fixed here, not configurable.
- A continuation keeps the stop string it ended with (`include_stop_str_in_output=True`); vLLM cuts the text
  right after it, while `token_ids` (and their log-probs) hold every generated token, the last of which may
  reach past the stop string.
- Greedy decoding (temperature 0) with n > 1 is refused by vLLM; the one greedy continuation is copied n times.
- Seeds: each prompt's request gets its own seed drawn from a generator that `reseed` resets; vLLM gives the
  n children of a request the seeds seed+0..seed+n-1. Runs repeat up to vLLM's batch-dependent numerics.
- `logprobs` reads prompt log-probs (`prompt_logprobs=0`, `max_tokens=1`) of context+continuation and keeps the
  continuation's positions; `next_token_logprobs` asks for exactly the candidates with
  `SamplingParams(logprob_token_ids=...)` (at most 128 a request, so longer lists go in chunks).
- `sync`: a LoRA policy's adapter is saved to a new directory and served through a new `LoRARequest` (a new
  name, path and id each time, so no cached adapter or prefix-cache block of the old one is reused). A full
  policy's weights are saved and loaded into the running engine in place with the worker's
  `reload_weights(weights_path=...)` through `LLM.collective_rpc`, then the prefix cache is reset (its blocks
  were computed with the old weights). In-place reload keeps the KV cache, the CUDA graphs and the engine
  process; rebuilding the `LLM` from a saved directory instead would redo the memory profiling and graph
  capture every iteration, and needs the old engine's GPU memory freed within the same process first.
- Parallelism. In one process, `tensor_parallel_size` > 1 makes vLLM start its own workers, one per GPU, each
  holding a slice of every layer (a model that does not fit one GPU); `sync` reaches them all through
  `collective_rpc`, each worker loading its slice from the saved full weights. Under a distributed launch
  (torchrun, several SLURM tasks) every rank searches its own problems, so every rank runs its own engine on its
  own GPU inside the launch's process group: `distributed_executor_backend="external_launcher"` with
  `data_parallel_size` = the number of ranks, vLLM's documented way to run under torchrun
  (examples/features/torchrun/torchrun_dp_example_offline.py), the prompts split outside vLLM by our shards.
  Tensor parallelism inside such a launch would need the ranks of a tensor-parallel group to search the same
  problems, which the shards do not do yet, so it is refused.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sisearch.distributed import World, world_from_env
from sisearch.engines.base import Engine, EngineStats, Sample, check_sampling
from sisearch.models.policy import Policy
from sisearch.optim.logprobs import encode_prompt, encode_scored_pairs
from sisearch.registry import ConfigError, register

INSTALL_HINT = "pip install 'sisearch[vllm]'"
VLLM_DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")
# vllm.config.lora.MaxLoRARanks
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# vllm.sampling_params.MAX_LOGPROB_TOKEN_IDS
MAX_LOGPROB_TOKEN_IDS = 128


@dataclass
class VLLMEngineConfig:
    name: str = "vllm"
    # the share of GPU memory vLLM takes (weights + KV cache); the policy trains on the same GPU between searches
    gpu_memory_utilization: float = 0.5
    max_model_len: int | None = None  # null: the model config's context length
    tensor_parallel_size: int = 1
    enable_prefix_caching: bool = True
    dtype: str = "auto"
    seed: int = 0
    top_p: float = 1.0
    max_lora_rank: int = 16  # must be >= the policy's LoRA rank
    enforce_eager: bool = False  # true: no CUDA graphs (faster start, slower decoding)
    enable_sleep_mode: bool = False  # lets `sleep()` hand GPU memory to training between searches
    trust_remote_code: bool = False
    work_dir: str | None = None  # where synced weights and adapters are written (null: the system temp dir)

    def __post_init__(self) -> None:
        what = f"engine '{self.name}'"
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ConfigError(f"{what}: gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ConfigError(f"{what}: max_model_len must be null or at least 1, got {self.max_model_len}")
        if self.tensor_parallel_size < 1:
            raise ConfigError(f"{what}: tensor_parallel_size must be at least 1, got {self.tensor_parallel_size}")
        if self.dtype not in VLLM_DTYPES:
            raise ConfigError(f"{what}: unknown dtype '{self.dtype}'; allowed: {', '.join(VLLM_DTYPES)}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"{what}: top_p must be in (0, 1], got {self.top_p}")
        if self.max_lora_rank not in LORA_RANKS:
            raise ConfigError(
                f"{what}: max_lora_rank must be one of {', '.join(map(str, LORA_RANKS))}, got {self.max_lora_rank}"
            )


@dataclass(frozen=True)
class VLLMApi:
    """The few vLLM names this engine uses, imported only when the engine is built."""

    LLM: Any
    SamplingParams: Any
    TokensPrompt: Any
    LoRARequest: Any


def import_vllm() -> VLLMApi:
    """vLLM's classes, or a one-line ConfigError naming the extra that installs it."""
    try:
        from vllm import LLM, SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest
    except ImportError as err:
        raise ConfigError(
            f"engine 'vllm' needs vLLM, which could not be imported ({err}); install it with: {INSTALL_HINT}"
        ) from None
    return VLLMApi(LLM, SamplingParams, TokensPrompt, LoRARequest)


def parallel_args(cfg: VLLMEngineConfig, world: World) -> dict[str, Any]:
    """The LLM's parallelism arguments beyond tensor_parallel_size: under a distributed launch, one engine per
    rank inside the launch's process group (vLLM's external launcher), each a data-parallel replica."""
    if not world.distributed:
        return {}
    if cfg.tensor_parallel_size != 1:
        raise ConfigError(
            f"engine 'vllm': tensor_parallel_size={cfg.tensor_parallel_size} under a launch of {world.size} processes "
            "is not supported (each rank searches its own problems with its own engine); use tensor_parallel_size=1 "
            "per rank, or one process (no torchrun) with tensor_parallel_size=N for a model that needs N GPUs"
        )
    return {"distributed_executor_backend": "external_launcher", "data_parallel_size": world.size}


def lora_rank(policy: Policy) -> int:
    config = getattr(policy.model, "peft_config", {}).get("default")
    return int(getattr(config, "r", 0) or 0)


def finish_reason(output: Any) -> str:
    """vLLM's (finish_reason, stop_reason) as ours: 'stop' for a stop string, 'eos', or 'length'."""
    if output.finish_reason == "length":
        return "length"
    if output.finish_reason == "stop":
        # stop_reason: the stop string, a stop token id (the generation config's extra EOS ids), or None (EOS)
        return "stop" if isinstance(output.stop_reason, str) else "eos"
    raise RuntimeError(
        f"engine 'vllm': a request finished with '{output.finish_reason}' (stop_reason {output.stop_reason!r}); "
        f"expected 'stop' or 'length'"
    )


def chosen_logprobs(output: Any) -> list[float]:
    """The sampled tokens' log-probs from `CompletionOutput.logprobs` (one {token_id: Logprob} per position)."""
    if output.logprobs is None:
        raise RuntimeError("engine 'vllm': vLLM returned no log-probs for a sample (SamplingParams.logprobs=0 was set)")
    return [float(position[token].logprob) for position, token in zip(output.logprobs, output.token_ids)]


@register("engine", "vllm", schema=VLLMEngineConfig)
class VLLMEngine(Engine):
    @classmethod
    def check_requirements(cls, cfg: VLLMEngineConfig) -> None:
        """Called while the run config is validated, so a missing vLLM or a parallelism it cannot run is reported
        before any work."""
        import_vllm()
        parallel_args(cfg, world_from_env())

    def __init__(self, cfg: VLLMEngineConfig, policy: Policy):
        self.vllm = import_vllm()
        self.cfg = cfg
        self.policy = policy
        self.stats = EngineStats()
        self.uses_lora = policy.is_peft
        if self.uses_lora and lora_rank(policy) > cfg.max_lora_rank:
            raise ConfigError(
                f"engine 'vllm': the policy's LoRA rank {lora_rank(policy)} exceeds max_lora_rank {cfg.max_lora_rank}; "
                f"set engine.max_lora_rank to one of {', '.join(str(r) for r in LORA_RANKS if r >= lora_rank(policy))}"
            )
        self.work_dir = Path(tempfile.mkdtemp(prefix="sisearch-vllm-", dir=cfg.work_dir))
        weakref.finalize(self, shutil.rmtree, self.work_dir, True)
        self.lora_request: Any = None
        self.lora_id = 0
        self.weights_dir: Path | None = None  # the last synced full weights (None: still policy.path's)
        self.weights_version = 0
        self.asleep = False
        lora_args = {"enable_lora": True, "max_lora_rank": cfg.max_lora_rank, "max_loras": 1} if self.uses_lora else {}
        self.llm = self.vllm.LLM(
            model=str(policy.path),  # a LoRA policy's base model; adapters come with each request
            dtype=cfg.dtype,
            seed=cfg.seed,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            max_model_len=cfg.max_model_len,
            tensor_parallel_size=cfg.tensor_parallel_size,
            enable_prefix_caching=cfg.enable_prefix_caching,
            enforce_eager=cfg.enforce_eager,
            enable_sleep_mode=cfg.enable_sleep_mode,
            trust_remote_code=cfg.trust_remote_code,
            logprobs_mode="raw_logprobs",
            **parallel_args(cfg, world_from_env()),
            **lora_args,
        )
        if self.uses_lora:  # a resumed run's policy already carries trained adapters
            self.push_adapter(policy)
        self.reseed(cfg.seed)

    # -- state -------------------------------------------------------------------------------------
    def reseed(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def sync(self, policy: Policy) -> None:
        if policy.is_peft != self.uses_lora:
            raise ValueError(
                "engine 'vllm': the policy changed between a LoRA and a full model after the engine was built; "
                "vLLM's LoRA support is fixed when the engine starts"
            )
        self.wake()
        self.policy = policy
        if self.uses_lora:
            self.push_adapter(policy)
        else:
            self.reload_weights(policy)

    def push_adapter(self, policy: Policy) -> None:
        """Save the adapter and serve it as a new LoRARequest; the previous adapter's files go."""
        self.lora_id += 1
        directory = self.work_dir / f"adapter-{self.lora_id}"
        policy.model.save_pretrained(directory, safe_serialization=True)
        previous = self.lora_request
        self.lora_request = self.vllm.LoRARequest(
            lora_name=f"sisearch-policy-{self.lora_id}", lora_int_id=self.lora_id, lora_path=str(directory)
        )
        if previous is not None:
            shutil.rmtree(previous.lora_path, ignore_errors=True)

    def reload_weights(self, policy: Policy) -> None:
        """Save the full weights and load them into the running engine in place."""
        self.weights_version += 1
        directory = self.work_dir / f"weights-{self.weights_version}"
        policy.model.save_pretrained(directory, safe_serialization=True)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(directory)})
        # Cached KV blocks hold keys and values computed with the old weights.
        self.llm.reset_prefix_cache()
        if self.weights_dir is not None:
            shutil.rmtree(self.weights_dir, ignore_errors=True)
        self.weights_dir = directory

    def sleep(self) -> None:
        """Free the GPU memory vLLM holds (e.g. while the policy trains); the next call wakes it.

        Level 1 keeps a CPU copy of the weights, so the engine wakes with the weights it had; `sync` then loads
        the new ones. Needs `enable_sleep_mode: true`; without it this does nothing.
        """
        if self.cfg.enable_sleep_mode and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def wake(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    def request_kwargs(self) -> dict[str, Any]:
        return {"use_tqdm": False, "lora_request": self.lora_request}

    # -- generation --------------------------------------------------------------------------------
    def encode(self, prompt: str) -> list[int]:
        return encode_prompt(self.policy.tokenizer, prompt)

    def generate(self, prompts, n=1, max_new_tokens=64, temperature=1.0, stop=None) -> list[list[Sample]]:
        check_sampling(n, temperature)
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        prompt_ids = self.prompt_ids(prompts)
        if not prompts or max_new_tokens == 0:
            return [[Sample("", [], [], "length", len(ids)) for _ in range(n)] for ids in prompt_ids]
        self.wake()
        greedy = temperature == 0
        per_request = 1 if greedy else n  # vLLM refuses n > 1 with greedy sampling; the copies are identical
        params = [
            self.vllm.SamplingParams(
                n=per_request,
                temperature=temperature,
                top_p=1.0 if greedy else self.cfg.top_p,
                max_tokens=max_new_tokens,
                stop=list(stop) if stop else None,
                include_stop_str_in_output=True,
                seed=None if greedy else self.rng.getrandbits(32),
                logprobs=0,
                skip_special_tokens=True,
            )
            for _ in prompts
        ]
        requests = [self.vllm.TokensPrompt(prompt_token_ids=ids) for ids in prompt_ids]
        outputs = self.llm.generate(requests, params, **self.request_kwargs())
        if len(outputs) != len(prompts):
            raise RuntimeError(f"engine 'vllm': {len(prompts)} prompts but {len(outputs)} results")
        self.stats.calls += 1
        self.stats.prompt_tokens += sum(len(ids) for ids in prompt_ids)
        results: list[list[Sample]] = []
        for ids, result in zip(prompt_ids, outputs):
            samples = []
            for completion in sorted(result.outputs, key=lambda o: o.index):
                token_ids = list(completion.token_ids)
                self.stats.generated_tokens += len(token_ids)
                samples.append(
                    Sample(completion.text, token_ids, chosen_logprobs(completion), finish_reason(completion), len(ids))
                )
            if len(samples) != per_request:
                raise RuntimeError(f"engine 'vllm': asked for {per_request} samples of a prompt, got {len(samples)}")
            if greedy and n > 1:
                s = samples[0]
                samples = [replace(s, token_ids=list(s.token_ids), logprobs=list(s.logprobs)) for _ in range(n)]
            results.append(samples)
        return results

    # -- scoring -----------------------------------------------------------------------------------
    def logprobs(self, contexts: list[str], continuations: list[str]) -> list[list[float]]:
        tokenizer = self.policy.tokenizer
        pairs = encode_scored_pairs(tokenizer, contexts, continuations)
        results: list[list[float]] = [[] for _ in pairs]
        # As in the hf engine, a token at position 0 has no context and no score.
        wanted = [i for i, (ctx, cont) in enumerate(pairs) if cont and len(ctx) + len(cont) > 1]
        if not wanted:
            return results
        self.wake()
        params = self.vllm.SamplingParams(n=1, temperature=0.0, max_tokens=1, prompt_logprobs=0, detokenize=False)
        requests = [self.vllm.TokensPrompt(prompt_token_ids=pairs[i][0] + pairs[i][1]) for i in wanted]
        outputs = self.llm.generate(requests, params, **self.request_kwargs())
        self.stats.calls += 1
        for i, result in zip(wanted, outputs):
            ctx, cont = pairs[i]
            ids = ctx + cont
            # prompt_logprobs[0] is None; entry t holds {ids[t]: Logprob} given ids[:t]
            results[i] = [float(result.prompt_logprobs[t][ids[t]].logprob) for t in range(max(len(ctx), 1), len(ids))]
            self.stats.scored_tokens += len(ids)
        return results

    def next_token_logprobs(self, prompts: list[str], token_ids: list[int]) -> list[list[float]]:
        tokenizer = self.policy.tokenizer
        encoded = [encode_prompt(tokenizer, p) for p in prompts]
        candidates = list(token_ids)
        if not prompts or not candidates:
            return [[] for _ in prompts]
        self.wake()
        chunks = [candidates[i : i + MAX_LOGPROB_TOKEN_IDS] for i in range(0, len(candidates), MAX_LOGPROB_TOKEN_IDS)]
        requests = [self.vllm.TokensPrompt(prompt_token_ids=ids) for ids in encoded for _ in chunks]
        params = [
            self.vllm.SamplingParams(n=1, temperature=0.0, max_tokens=1, logprob_token_ids=chunk, detokenize=False)
            for _ in encoded
            for chunk in chunks
        ]
        outputs = self.llm.generate(requests, params, **self.request_kwargs())
        self.stats.calls += 1
        self.stats.scored_tokens += sum(len(ids) for ids in encoded)
        results = []
        for p in range(len(prompts)):
            row: list[float] = []
            for c, chunk in enumerate(chunks):
                first = outputs[p * len(chunks) + c].outputs[0].logprobs[0]  # {token_id: Logprob} of the next token
                row.extend(float(first[t].logprob) for t in chunk)
            results.append(row)
        return results
