"""The hf engine: shapes, stop handling, shared prefill, and log-probs that match a manual forward pass."""

import torch
import torch.nn.functional as F

from sisearch.engines.hf import top_p_filter

PROMPTS = ["Q:7+5-9+3=?\n", "Q:1+2=?\n", "Q:9-4+4-1+8=?\n"]


def test_generate_shapes_and_finish_reasons(engine):
    out = engine.generate(PROMPTS, n=3, max_new_tokens=40, temperature=1.0)
    assert len(out) == 3 and all(len(samples) == 3 for samples in out)
    for samples in out:
        for s in samples:
            assert s.finish_reason in ("eos", "length")
            assert len(s.token_ids) == len(s.logprobs) <= 40
            assert s.prompt_tokens > 0
            if s.finish_reason == "length":
                assert len(s.token_ids) == 40


def test_stop_string_ends_each_sequence_after_its_first_step(engine):
    out = engine.generate(PROMPTS, n=4, max_new_tokens=30, temperature=1.0, stop=["\n"])
    for samples in out:
        for s in samples:
            if s.finish_reason == "stop":
                assert s.text.endswith("\n") and s.text.count("\n") == 1
            else:
                assert "\n" not in s.text


def test_greedy_is_deterministic_and_equal_across_the_n_copies(engine):
    a = engine.generate(PROMPTS, n=2, max_new_tokens=30, temperature=0.0)
    b = engine.generate(PROMPTS, n=1, max_new_tokens=30, temperature=0.0)
    for pa, pb in zip(a, b):
        assert pa[0].token_ids == pa[1].token_ids == pb[0].token_ids


def test_reseed_reproduces_samples(engine):
    engine.reseed(5)
    a = engine.generate(PROMPTS, n=2, max_new_tokens=20)
    engine.reseed(5)
    b = engine.generate(PROMPTS, n=2, max_new_tokens=20)
    assert [[s.token_ids for s in x] for x in a] == [[s.token_ids for s in x] for x in b]


def test_generation_logprobs_match_a_manual_forward_pass(engine, tiny_policy):
    out = engine.generate(PROMPTS, n=2, max_new_tokens=25, temperature=1.0)
    model, tokenizer = tiny_policy.model, tiny_policy.tokenizer
    for prompt, samples in zip(PROMPTS, out):
        for s in samples:
            ids = tokenizer(prompt).input_ids + s.token_ids
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids])).logits[0]
            logp = F.log_softmax(logits.float(), -1)
            start = len(ids) - len(s.token_ids)
            manual = [logp[start - 1 + i, t].item() for i, t in enumerate(s.token_ids)]
            assert torch.allclose(torch.tensor(s.logprobs), torch.tensor(manual), atol=1e-4)


def test_scoring_logprobs_match_generation_logprobs(engine):
    out = engine.generate(PROMPTS, n=1, max_new_tokens=25, temperature=1.0)
    texts = [samples[0].text for samples in out]
    scored = engine.logprobs(PROMPTS, texts)
    for samples, lps in zip(out, scored):
        expected = samples[0].logprobs[: len(lps)]  # scoring excludes a final EOS, which is not text
        assert torch.allclose(torch.tensor(lps), torch.tensor(expected), atol=1e-4)


def test_next_token_logprobs_match_the_forward_pass(engine, tiny_policy):
    tokenizer = tiny_policy.tokenizer
    candidates = [tokenizer.convert_tokens_to_ids(c) for c in "0123456789"]
    got = engine.next_token_logprobs(PROMPTS, candidates)
    for prompt, row in zip(PROMPTS, got):
        with torch.no_grad():
            logits = tiny_policy.model(input_ids=torch.tensor([tokenizer(prompt).input_ids])).logits[0, -1]
        expected = F.log_softmax(logits.float(), -1)[candidates]
        assert torch.allclose(torch.tensor(row), expected, atol=1e-4)


def test_top_p_keeps_the_smallest_head_with_the_mass():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    assert torch.equal(top_p_filter(probs, 0.7), torch.tensor([[0.5, 0.3, 0.0, 0.0]]))
    assert torch.equal(top_p_filter(probs, 0.1), torch.tensor([[0.5, 0.0, 0.0, 0.0]]))
    assert top_p_filter(probs, 1.0) is probs


def test_engine_counts_tokens_once_per_prompt(engine):
    before = engine.stats.prompt_tokens
    out = engine.generate(PROMPTS[:1], n=5, max_new_tokens=5)
    assert engine.stats.prompt_tokens - before == out[0][0].prompt_tokens


def test_special_tokens_other_than_eos_are_never_sampled(tiny_policy):
    from sisearch.engines.hf import HFEngine, HFEngineConfig

    tokenizer = tiny_policy.tokenizer
    special = set(tokenizer.all_special_ids) - {tokenizer.eos_token_id}
    engine = HFEngine(HFEngineConfig(seed=0), tiny_policy)
    samples = engine.generate(["Q:7+5-9=?\n"], n=64, max_new_tokens=48, temperature=3.0)[0]
    assert not special & {t for s in samples for t in s.token_ids}
    # the text then holds every sampled token, so ids and text agree
    assert all(tokenizer.decode([t for t in s.token_ids if t != tokenizer.eos_token_id]) == s.text for s in samples)
    loose = HFEngine(HFEngineConfig(seed=0, suppress_special_tokens=False), tiny_policy)
    wild = loose.generate(["Q:7+5-9=?\n"], n=64, max_new_tokens=48, temperature=3.0)[0]
    assert special & {t for s in wild for t in s.token_ids}  # at temperature 3 they do come up otherwise
