"""The engine contract: batched generation and scoring for searchers, rewarders and evaluation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Sequence, Union

FINISH_REASONS = ("stop", "eos", "length")

Prompt = Union[str, Sequence[int]]  # text, or token ids taken as they are


@dataclass
class Sample:
    """One generated continuation.

    `logprobs` are the policy's own (temperature-1) log-probs of each generated token, whatever the sampling
    temperature, so priors and rewards do not depend on how the sample was drawn.
    """

    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str  # "stop" (a stop string), "eos", or "length"
    prompt_tokens: int = 0

    @property
    def logprob(self) -> float:
        return float(sum(self.logprobs))

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


@dataclass
class EngineStats:
    calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    scored_tokens: int = 0
    extra: dict[str, float] = field(default_factory=dict)


class Engine(ABC):
    stats: EngineStats

    @abstractmethod
    def generate(
        self,
        prompts: Sequence[Prompt],
        n: int = 1,
        max_new_tokens: int = 64,
        temperature: float = 1.0,
        stop: list[str] | None = None,
    ) -> list[list[Sample]]:
        """`n` continuations of each prompt, stopping at EOS, after a stop string, or at the token budget.

        A prompt is text (tokenized by `encode`) or token ids, taken as they are: searchers continue a
        partial solution from the ids that were sampled, so that what is trained on is what was generated.
        The n samples of a prompt share one prefill. A continuation keeps the stop string it ended with.
        """

    def prompt_ids(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        """Each prompt's token ids: a text through `encode`, ids as they are."""
        return [self.encode(p) if isinstance(p, str) else list(p) for p in prompts]

    def encode(self, prompt: str) -> list[int] | None:
        """The token ids `generate` reads for a text prompt; None for an engine that takes text only
        (searchers then continue from text)."""
        return None

    @abstractmethod
    def logprobs(self, contexts: list[str], continuations: list[str]) -> list[list[float]]:
        """Per-token log-probs of each continuation given its context (tokenized together: `encode_scored_pairs`)."""

    @abstractmethod
    def next_token_logprobs(self, prompts: list[str], token_ids: list[int]) -> list[list[float]]:
        """Log-probs of the candidate tokens `token_ids` as the next token after each prompt."""

    @abstractmethod
    def sync(self, policy) -> None:
        """Pick up the policy's new weights after training."""

    @abstractmethod
    def reseed(self, seed: int) -> None:
        """Reset the sampling random state, so that a phase of a run is reproducible on its own."""


def check_sampling(n: int, temperature: float) -> None:
    """The arguments every engine's `generate` refuses."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
