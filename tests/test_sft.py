"""The sft optimizer: a few steps raise the likelihood of the examples it trains on."""

from sisearch.data.records import SFTExample
from sisearch.optim.common import TrainerConfig
from sisearch.optim.sft import SFTConfig, SFTOptimizer


def test_sft_raises_the_log_likelihood_of_its_examples(arith_task, tiny_policy, engine):
    problems = arith_task.problems("train")[:8]
    records = [SFTExample(p.id, arith_task.prompt(p), p.solution) for p in problems]
    prompts = [r.prompt for r in records]
    completions = [r.completion for r in records]
    before = sum(sum(lp) for lp in engine.logprobs(prompts, completions))
    optimizer = SFTOptimizer(SFTConfig(lr=1e-3, batch_size=4, epochs=3))
    metrics = optimizer.fit(tiny_policy, records, TrainerConfig(accelerator="cpu", progress_bar=False), seed=0)
    after = sum(sum(lp) for lp in engine.logprobs(prompts, completions))
    assert after > before
    assert metrics["train/steps"] == 6  # 8 examples / batch 4 = 2 batches, 3 epochs
    assert not tiny_policy.model.training  # left in eval mode for generation
