"""Training under a strategy that shards or re-wraps the weights (FSDP, DeepSpeed), while search needs them whole.

Every rank searches its own problems with the policy between trainings, so every rank needs the full weights
in its own, ordinary model. FSDP replaces the modules it trains with sharded wrappers, and DeepSpeed converts
the module it is given (to half precision under 16-bit training). So under these strategies the Trainer trains
a copy of the policy's model; at the end of training the full state dict is gathered from the shards
(Lightning's `strategy.lightning_module_state_dict()`, FSDP's FULL_STATE_DICT on rank 0, offloaded to CPU),
loaded into rank 0's model, and broadcast from there to every rank's model.

Gathering, rather than handing the shards to vLLM, keeps one path for both engines: the `hf` engine needs the
weights in the process, and the `vllm` engine's `sync` saves them and reloads them into its workers (with
tensor parallelism vLLM shards them itself, by its own layout, which is not FSDP's). The price is one full copy
of the weights per rank besides the training copy, which is what data-parallel search costs anyway.

DeepSpeed's stage 3 partitions the parameters the same way but its gathered state dict is not Lightning's
documented contract, so it is refused; stages 1 and 2 keep every parameter whole on every rank.
None of this has run here (no GPUs); it is written against Lightning 2.6's FSDPStrategy and DeepSpeedStrategy.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.distributed as dist

MODEL_PREFIX = "model."  # an ObjectiveModule holds the policy's model as `self.model`


def strategy_name(strategy: Any) -> str:
    return strategy if isinstance(strategy, str) else type(strategy).__name__.lower()


def shards_weights(strategy: Any) -> bool:
    """Whether the strategy trains a re-wrapped model that the policy cannot share (FSDP, DeepSpeed)."""
    name = strategy_name(strategy)
    if name.startswith("deepspeed_stage_3"):
        raise ValueError(
            f"trainer.strategy '{name}' partitions the weights and is not supported; use fsdp (its full weights are "
            "gathered after training) or deepspeed_stage_2"
        )
    return name.startswith(("fsdp", "deepspeed"))


def full_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The policy model's own keys from a LightningModule's state dict."""
    return {k[len(MODEL_PREFIX):]: v for k, v in state.items() if k.startswith(MODEL_PREFIX)}


def broadcast_weights(model: torch.nn.Module) -> None:
    """Rank 0's weights into every rank's model, tensor by tensor (NCCL for CUDA tensors, Gloo for CPU ones)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    with torch.no_grad():
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)


class FullWeights(L.Callback):
    """At the end of training, the trained copy's full weights into the policy's own model, on every rank.

    `on_train_end` runs before the strategy's teardown, while the shards and the process group's devices are
    still in place."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = trainer.strategy.lightning_module_state_dict()  # a collective: every rank calls it
        if trainer.is_global_zero:
            missing, _ = self.model.load_state_dict(full_weights(state), strict=False)
            if missing:
                raise RuntimeError(
                    f"the gathered weights lack {len(missing)} of the policy's tensors, e.g. {missing[0]}"
                )
        broadcast_weights(self.model)


__all__ = ["shards_weights", "full_weights", "broadcast_weights", "FullWeights"]
