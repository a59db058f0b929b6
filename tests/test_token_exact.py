"""Token-exact training data: what the engine sampled is what the optimizer scores.

With a BPE tokenizer, re-tokenizing a sampled text can split it differently from the tokens that were
sampled (merges across a step boundary, or a token sequence that is not the canonical split). So trees keep
each step's sampled ids, searches continue from ids, builders cut pairs at the first differing token, and
optimizers score exactly those ids: a record's per-token log-probs equal the ones the engine reported.
"""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from sisearch import registry
from sisearch.engines.hf import HFEngine, HFEngineConfig
from sisearch.models.policy import Policy
from sisearch.optim.logprobs import IGNORE, encode_completion, token_logps
from sisearch.optim.pairs import collate_pairs, encode_pairs
from sisearch.search.scheduler import SearchContext, run_search
from sisearch.search.tree import Tree, Verdict
from sisearch.tasks.arith import ArithConfig, ArithTask


class CoinTask(ArithTask):
    """Arith prompts, but a solution is 'correct' when its length is even: a random model gets both verdicts."""

    max_new_tokens = 12
    max_steps = 3

    def check(self, problem, solution):
        return Verdict(correct=len(solution) % 2 == 0, answer=str(len(solution)), parsed=True)

    def is_terminal(self, solution):
        return False


@pytest.fixture(scope="module")
def bpe_policy(tmp_path_factory) -> Policy:
    """A random small Llama with a byte-level BPE tokenizer trained here on arith text."""
    task = ArithTask(ArithConfig(train_size=300, test_size_per_difficulty=1))
    corpus = [task.prompt(p) + p.solution for p in task.problems("train")]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=400, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    model = LlamaForCausalLM(config).eval()
    return Policy(model=model, tokenizer=tokenizer, path=str(tmp_path_factory.mktemp("bpe")))


def search_and_build(policy: Policy, searcher: dict, builder: dict):
    """Search 6 problems, record every per-token log-prob the engine reports, and build the records."""
    torch.set_num_threads(1)
    task = CoinTask(ArithConfig(train_size=6, test_size_per_difficulty=1))
    engine = HFEngine(HFEngineConfig(seed=0), policy)
    reported: dict[tuple[int, ...], list[float]] = {}
    generate = engine.generate

    def spy(*args, **kwargs):
        rows = generate(*args, **kwargs)
        for sample in (s for row in rows for s in row):
            ids = sample.token_ids[:-1] if sample.finish_reason == "eos" else sample.token_ids
            reported[tuple(ids)] = sample.logprobs  # (with the EOS token's log-prob when EOS was sampled)
        return rows

    engine.generate = spy
    rewarder = registry.build("rewarder", {"name": "orm"}, task=task, engine=engine)
    problems = task.problems("train")
    trees = run_search(registry.build("searcher", searcher), problems, SearchContext(task, engine, rewarder, 6, False))
    records = registry.build("builder", builder).build(trees, {p.id: p for p in problems}, 0)
    return trees, records, reported


def scored_logps(policy: Policy, pairs) -> list[tuple[list[float], list[float]]]:
    """Per-token log-probs of each pair's chosen and rejected tokens, as the optimizer computes them."""
    items = encode_pairs(policy, pairs)
    batch = collate_pairs(items, policy.tokenizer.pad_token_id, None)
    with torch.no_grad():
        logits = policy.model(input_ids=batch.sequences.input_ids, attention_mask=batch.sequences.attention_mask).logits
    per_token = token_logps(logits, batch.sequences.labels)
    scored = batch.sequences.labels[:, 1:] != IGNORE
    rows = [per_token[i][scored[i]].tolist() for i in range(len(items) * 2)]
    return list(zip(rows[: len(items)], rows[len(items) :]))


def assert_same_logps(scored: list[float], sampled: list[float]) -> None:
    # The record may end with an EOS that was not sampled (a complete solution cut by a stop string).
    assert len(scored) in (len(sampled), len(sampled) + 1)
    assert scored[: len(sampled)] == pytest.approx(sampled, abs=1e-4)
    assert sum(scored[: len(sampled)]) == pytest.approx(sum(sampled), abs=1e-4)


def test_dpo_pairs_score_exactly_the_sampled_tokens(bpe_policy):
    trees, pairs, reported = search_and_build(
        bpe_policy, {"name": "best_of_n", "n": 4}, {"name": "outcome_pairs", "pairs_per_problem": 2}
    )
    assert len(pairs) >= 3 and all(p.chosen_ids is not None for p in pairs)
    by_id = {t.problem_id: t for t in trees}
    for pair, (chosen, rejected) in zip(pairs, scored_logps(bpe_policy, pairs)):
        assert pair.prompt_ids == by_id[pair.problem_id].prompt_ids
        assert_same_logps(chosen, reported[tuple(pair.chosen_ids)])
        assert_same_logps(rejected, reported[tuple(pair.rejected_ids)])
    # the test is sharp: tokenizing the sampled texts again would score other tokens
    tokenizer = bpe_policy.tokenizer
    assert any(encode_completion(tokenizer, p.chosen, append_eos=False) != p.chosen_ids for p in pairs)


def test_step_dpo_pairs_are_cut_at_the_first_differing_token_and_score_the_sampled_tokens(bpe_policy):
    trees, pairs, reported = search_and_build(
        bpe_policy, {"name": "best_first", "children": 3, "rollouts": 1, "max_steps": 3},
        {"name": "step_pairs", "nodes": "all", "extend_only_children": False, "max_pairs_per_tree": 4},
    )
    assert len(pairs) >= 3 and all(p.chosen_ids is not None for p in pairs)
    steps = {tuple(n.token_ids): n for t in trees for n in t.nodes() if n.token_ids}
    for pair, (chosen, rejected) in zip(pairs, scored_logps(bpe_policy, pairs)):
        # The prompt ids end with the tokens both steps share; the continuations differ at their first token.
        assert pair.chosen_ids[0] != pair.rejected_ids[0] or min(len(pair.chosen_ids), len(pair.rejected_ids)) == 1
        for ids, scored in ((pair.chosen_ids, chosen), (pair.rejected_ids, rejected)):
            step = next(s for key, s in steps.items() if key[len(key) - len(ids) :] == tuple(ids))
            shared = len(step.token_ids) - len(ids)
            assert pair.prompt_ids[len(pair.prompt_ids) - shared :] == step.token_ids[:shared] or shared == 0
            assert_same_logps(scored, reported[tuple(step.token_ids)][shared:])


def test_engine_continues_from_ids_as_from_the_text_they_encode(bpe_policy):
    engine = HFEngine(HFEngineConfig(seed=0), bpe_policy)
    text = "Q:7+5-9=?\n7+5=2\n"
    from_text = engine.generate([text], n=2, max_new_tokens=6)[0]
    engine.reseed(0)
    from_ids = engine.generate([engine.encode(text)], n=2, max_new_tokens=6)[0]
    assert [s.token_ids for s in from_ids] == [s.token_ids for s in from_text]
    assert [s.logprobs for s in from_ids] == [s.logprobs for s in from_text]


def test_trees_keep_token_ids_through_json(bpe_policy):
    trees, _, _ = search_and_build(bpe_policy, {"name": "best_of_n", "n": 2}, {"name": "outcome_pairs"})
    again = Tree.from_json(trees[0].to_json())
    assert again.prompt_ids == trees[0].prompt_ids and again.nodes()[1].token_ids == trees[0].nodes()[1].token_ids
    assert again.context(again.nodes()[1]) == trees[0].prompt_ids + trees[0].nodes()[1].token_ids


def test_tpo_ranked_lists_score_exactly_the_sampled_tokens_split_at_their_steps(bpe_policy):
    from sisearch.optim.tpo import encode_lists

    trees, lists, reported = search_and_build(
        bpe_policy, {"name": "best_first", "children": 3, "rollouts": 1, "max_steps": 3},
        {"name": "ranked_lists", "nodes": "all", "require_complete": False, "step_delimiter": "+"},
    )
    assert len(lists) >= 2 and all(r.response_ids is not None for r in lists)
    by_ids = {tuple(n.token_ids): n for t in trees for n in t.nodes() if n.token_ids}
    encoded = encode_lists(bpe_policy, lists)
    for ranked, item in zip(lists, encoded):
        assert item.prompt == ranked.prompt_ids
        for steps, ids, response in zip(ranked.responses, ranked.response_ids, item.responses):
            assert response.ids[: len(ids)] == ids
            assert response.steps == sorted(response.steps) and response.steps[-1] == len([s for s in steps if s]) - 1
            # the response's tokens are the sampled steps' tokens, one node after another
            sampled, rest = [], list(ids)
            while rest:
                node = next(n for key, n in by_ids.items() if tuple(rest[: len(key)]) == key)
                sampled += reported[tuple(node.token_ids)][: len(node.token_ids)]
                rest = rest[len(node.token_ids) :]
            with torch.no_grad():
                logits = bpe_policy.model(input_ids=torch.tensor([item.prompt + ids])).logits
            scored = torch.log_softmax(logits[0, len(item.prompt) - 1 : -1].float(), -1)
            scored = scored.gather(-1, torch.tensor(ids)[:, None])[:, 0].tolist()
            assert scored == pytest.approx(sampled, abs=1e-4)


def test_each_sampled_token_belongs_to_the_step_its_text_starts_in(bpe_policy):
    from sisearch.optim.tpo import step_of_each_token

    tokenizer = bpe_policy.tokenizer
    steps = ["7+5=2\n", "2-9=3\n", "A:3"]
    ids = tokenizer("".join(steps), add_special_tokens=False).input_ids
    starts = [len(tokenizer.decode(ids[:k])) for k in range(len(ids))]
    assert step_of_each_token(tokenizer, ids, steps) == [0 if s < 6 else 1 if s < 12 else 2 for s in starts]
    assert step_of_each_token(tokenizer, ids, ["7+5=2\n", "", "2-9=3\nA:3"]) == [0 if s < 6 else 1 for s in starts]
    assert step_of_each_token(tokenizer, ids, ["something else"]) is None  # then the text is tokenized


def test_step_of_each_token_on_a_long_response_matches_decoding_every_prefix(bpe_policy):
    from sisearch.optim.tpo import step_of_each_token

    tokenizer = bpe_policy.tokenizer
    steps = [f"{i}+{i}={2 * i}\n" for i in range(1, 25)] + ["A:48"]
    ids = tokenizer("".join(steps), add_special_tokens=False).input_ids
    ends = [sum(len(s) for s in steps[: j + 1]) for j in range(len(steps))]
    starts = [len(tokenizer.decode(ids[:k])) for k in range(len(ids))]
    expected = [min(sum(end <= start for end in ends), len(steps) - 1) for start in starts]
    assert step_of_each_token(tokenizer, ids, steps) == expected
