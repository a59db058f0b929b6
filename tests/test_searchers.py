"""Searchers driven by the real scheduler: scripted engine runs with exact outcomes, then every searcher
in the loop on the small tiny model."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import compose

from sisearch.engines.base import Engine, EngineStats, Sample
from sisearch import registry
from sisearch.loop import run
from sisearch.rewards.base import Rewarder
from sisearch.search import puct
from sisearch.search.beam import FINISHED, PRUNED, Beam, BeamConfig
from sisearch.search.best_first import LOOKAHEAD, ROLLOUTS, BestFirst, BestFirstConfig
from sisearch.search.iterative_deepening import REFLECTIONS, TRIGGER, IterativeDeepening, IterativeDeepeningConfig
from sisearch.search.mcts import MCTS, MCTSConfig
from sisearch.search.requests import Expand, Rollout, Score
from sisearch.search.scheduler import SearchContext, run_search
from sisearch.search.tree import Node
from sisearch.tasks.arith import ArithConfig, ArithTask
from sisearch.tasks.base import Problem


@pytest.fixture(autouse=True)
def one_thread():
    """On a shared, busy CPU torch's thread pool is many times slower than one thread; restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


QUESTION = "Q:1+1=?"
EOS = "$"  # a scripted text ending in $ finishes with EOS (the $ is not part of the text)


class ScriptedEngine(Engine):
    """Answers each prompt with the next scripted texts for its solution state; records every call.

    Each character is one token with log-prob -0.1. A text ending in `$` ends with EOS; one ending in a stop
    string ends with "stop"; any other text ends with "length" (it filled its budget).
    """

    def __init__(self, script: dict[str, list[str]]):
        self.script = {state: list(texts) for state, texts in script.items()}
        self.calls: list[tuple[int, int, int, list[str] | None]] = []
        self.stats = EngineStats()

    def generate(self, prompts, n=1, max_new_tokens=64, temperature=1.0, stop=None):
        self.calls.append((len(prompts), n, max_new_tokens, stop))
        results = []
        for prompt in prompts:
            state = prompt[len(QUESTION) + 1 :]
            samples = []
            for _ in range(n):
                text = self.script[state].pop(0)
                if text.endswith(EOS):
                    text, finish, ids = text[:-1], "eos", [0] * len(text)  # the EOS token counts
                else:
                    finish = "stop" if stop and any(text.endswith(s) for s in stop) else "length"
                    ids = [0] * len(text)
                assert len(ids) <= max_new_tokens, f"scripted text {text!r} is over the budget {max_new_tokens}"
                samples.append(Sample(text, ids, [-0.1] * len(ids), finish, len(prompt)))
            results.append(samples)
        return results

    def logprobs(self, contexts, continuations):
        raise AssertionError("not used")

    def next_token_logprobs(self, prompts, token_ids):
        raise AssertionError("not used")

    def sync(self, policy):
        pass

    def reseed(self, seed):
        pass


class TableRewarder(Rewarder):
    """Scores a node by a table of solution states (0 for states not in it); records what it scored."""

    def __init__(self, table: dict[str, float]):
        self.table = table
        self.scored: list[str] = []

    def score(self, items):
        self.scored.extend(item.node.state for item in items)
        return [self.table.get(item.node.state, 0.0) for item in items]


def search(searcher, script, table):
    task = ArithTask(ArithConfig(train_size=10, test_size_per_difficulty=2))
    engine, rewarder = ScriptedEngine(script), TableRewarder(table)
    problem = Problem(id="p0", question=QUESTION, answer="2")
    (tree,) = run_search(searcher, [problem], SearchContext(task, engine, rewarder, 32, progress=False))
    leftover = {s: t for s, t in engine.script.items() if t}
    assert not leftover, f"scripted texts never asked for: {leftover}"
    return tree, engine, rewarder


def find(tree, state):
    (node,) = [n for n in tree.root.walk() if n.state == state]
    return node


def test_batch_keys_group_requests_with_equal_settings():
    a, b = Node(), Node(state="x\n")
    assert Expand(a, n=2).batch_key() == Expand(b, n=2).batch_key()
    assert Expand(a, n=2).batch_key() != Expand(a, n=2, temperature=0.5).batch_key()
    assert Expand(a, n=2, whole=True, max_new_tokens=8).batch_key() != Expand(a, n=2, whole=True).batch_key()
    # a whole expansion attaches its samples, a rollout does not: never one engine call
    assert Expand(a, n=2, whole=True).batch_key() != Rollout(a, n=2).batch_key()
    assert Score([a]).batch_key() == Score([b, a]).batch_key()


def test_beam_prunes_pooled_children_and_finished_beams_leave():
    script = {
        "": ["1+1=2\n", "1+1=3\n", "A:2" + EOS, "1+1=4\n"],
        "1+1=3\n": ["A:3" + EOS, "Wait:1+1=2\n"],
        "1+1=2\n": ["A:2" + EOS, "Wait:1+1=2\n"],
        "1+1=3\nWait:1+1=2\n": ["A:2" + EOS, "A:7" + EOS],
    }
    table = {
        "1+1=2\n": 0.6, "1+1=3\n": 0.7, "A:2": 0.5, "1+1=4\n": 0.2,
        "1+1=3\nA:3": 0.3, "1+1=3\nWait:1+1=2\n": 0.8, "1+1=2\nA:2": 0.9, "1+1=2\nWait:1+1=2\n": 0.1,
        "1+1=3\nWait:1+1=2\nA:2": 0.85, "1+1=3\nWait:1+1=2\nA:7": 0.95,
    }
    searcher = Beam(BeamConfig(beam_size=2, expansions=2, max_steps=5))
    tree, engine, _ = search(searcher, script, table)
    # step 0: B1*B2 = 4 samples; keep 1+1=3 (0.7) and 1+1=2 (0.6); A:2 (0.5) and 1+1=4 (0.2) are pruned
    # step 1: both beams expand in ONE engine call; pooled top 2: 1+1=2/A:2 (0.9, finished, leaves) and
    #         1+1=3/Wait (0.8); B1 shrinks to 1
    # step 2: the last beam expands; top 1 is A:7 (0.95), finished; B1 = 0 and the search stops
    assert engine.calls == [(1, 4, 32, ["\n"]), (2, 2, 32, ["\n"]), (1, 2, 32, ["\n"])]
    assert find(tree, "A:2").metadata.get(PRUNED) and find(tree, "1+1=4\n").metadata.get(PRUNED)
    assert find(tree, "1+1=3\nA:3").metadata.get(PRUNED)
    assert find(tree, "1+1=2\nWait:1+1=2\n").metadata.get(PRUNED)
    finished = [n.state for n in tree.root.walk() if n.metadata.get(FINISHED)]
    assert finished == ["1+1=2\nA:2", "1+1=3\nWait:1+1=2\nA:7"]
    assert tree.chosen.state == "1+1=3\nWait:1+1=2\nA:7" and tree.answer == "7"  # highest rewarder value
    assert tree.metadata["beam_unfinished"] == 0
    assert tree.cost.generated_tokens == 22 + 30 + 8  # one token per character, EOS included

    searcher.answer_rule = "majority"  # 2 and 7 tie one vote each: the first in tree order wins
    searcher.finish(tree)
    assert tree.answer == "2"


def test_best_first_values_children_by_rewarder_judged_rollouts():
    script = {
        "": ["1+1=2\n", "1+1=3\n"],
        "1+1=2\n": ["A:2" + EOS, "A:2" + EOS, "A:2" + EOS, "A:4" + EOS],
        "1+1=3\n": ["A:3" + EOS, "A:2" + EOS],
    }
    table = {"1+1=2\nA:2": 1.0, "1+1=3\nA:3": 0.0, "1+1=3\nA:2": 0.6, "1+1=2\nA:4": 0.2}
    tree, engine, rewarder = search(BestFirst(BestFirstConfig(children=2, rollouts=2)), script, table)
    first, second = tree.root.children
    assert first.metadata[LOOKAHEAD] == 1.0 and first.value == 1.0  # 2 of 2 rollouts judged right
    assert second.metadata[LOOKAHEAD] == 0.5 and second.value == 0.5  # 0.0 and 0.6 against threshold 0.5
    assert [r["score"] for r in second.metadata[ROLLOUTS]] == [0.0, 0.6]
    assert first.metadata.get("best_first_expanded") and not second.metadata.get("best_first_expanded")
    # the rollouts of both children went out in one engine call; the rollouts are not attached to the tree
    assert engine.calls[1] == (2, 2, ArithTask(ArithConfig(train_size=10)).max_new_tokens, None)
    assert "1+1=3\nA:3" in rewarder.scored and all(n.state != "1+1=3\nA:3" for n in tree.root.walk())
    # the best child was expanded: its finished children are judged on their own scores
    right, wrong = first.children
    assert (right.value, wrong.value) == (1.0, 0.0)
    assert tree.answer == "2" and tree.chosen is right


def test_iterative_deepening_segments_triggers_and_budgets():
    script = {
        "": ["1+1=", "A:5" + EOS],  # sample 0 is cut by the first budget (4 tokens); sample 1 ends
        "1+1=": ["3\n"],  # the cut step is finished before the trigger
        "1+1=3\nWait:": ["1+1=2\nA:"],  # the second segment (budget 8) is cut too
        "1+1=3\nWait:1+1=2\nA:": ["2" + EOS],
    }
    table = {"A:5": 0.4, "1+1=3\nWait:1+1=2\nA:2": 0.9}
    cfg = IterativeDeepeningConfig(samples=2, first_budget=4, growth=2.0, max_tokens=20)
    tree, engine, _ = search(IterativeDeepening(cfg), script, table)
    assert engine.calls == [(1, 2, 4, None), (1, 1, 32, ["\n"]), (1, 1, 8, None), (1, 1, 32, ["\n"])]
    cut = find(tree, "1+1=")
    assert not cut.terminal and "truncated" not in cut.metadata  # an open segment, not a finished solution
    trigger = find(tree, "1+1=3\nWait:")
    assert trigger.metadata[TRIGGER] and trigger.step == "Wait:" and trigger.num_tokens == 0
    end = find(tree, "1+1=3\nWait:1+1=2\nA:2")
    assert end.terminal and end.value == 0.9 and end.metadata[REFLECTIONS] == 1
    assert find(tree, "A:5").metadata[REFLECTIONS] == 0
    assert tree.answer == "2"  # weighted vote: 0.9 for 2 against 0.4 for 5


def test_iterative_deepening_last_segment_is_a_finished_solution():
    script = {"": ["1+1=2\n"], "1+1=2\nWait:": ["1+1="]}
    cfg = IterativeDeepeningConfig(samples=1, first_budget=6, growth=1.0, max_tokens=10)  # budgets [6, 4]
    tree, engine, _ = search(IterativeDeepening(cfg), script, {})
    end = find(tree, "1+1=2\nWait:1+1=")
    assert end.terminal and end.metadata.get("truncated") and end.verdict.answer is None
    assert engine.calls == [(1, 1, 6, None), (1, 1, 4, None)]


def test_mcts_scripted_run_exact_statistics():
    script = {"": ["x\n", "A:2" + EOS]}
    table = {"x\n": 0.5, "A:2": 1.0}
    cfg = MCTSConfig(simulations=2, commit=False, depth_limit=None)
    tree, engine, _ = search(MCTS(cfg), script, table)
    a, b = tree.root.children
    # a: unfinished, v = C' = 0.5 (no damping at depth 0); b: finished right, v = O + C' = 1 + 1 = 2
    assert (a.value, a.reward, a.q) == (0.5, 0.5, 0.5)
    assert b.value == 2.0 and b.reward == 2.0
    # simulation 1: N_root = 0 counts as 1: 0.5 + p_a vs 2 + p_b -> b; simulation 2: 0.5 + p_a vs 2 + p_b / 2 -> b
    p_a = puct.step_prior(-0.2, 2, 1.25)
    p_b = puct.step_prior(-0.4, 4, 1.25)
    assert 2.0 + p_b / 2 > 0.5 + p_a
    assert (b.visits, b.q, a.visits) == (2, 2.0, 0)
    assert tree.root.visits == 2 and tree.root.metadata["V"] == pytest.approx((1 * 0.5 + 2 * 2.0) / 3)
    assert not a.children  # never selected, never expanded
    assert engine.calls == [(1, 2, 32, ["\n"])] and tree.answer == "2"


def test_mcts_completes_at_the_depth_limit_and_backs_up_the_checked_outcome():
    script = {"": ["1+1=3\n", "1+1=2\n"], "1+1=3\n": ["A:3" + EOS], "1+1=2\n": ["A:2" + EOS]}
    cfg = MCTSConfig(simulations=3, commit=False, depth_limit=1, complete_at_depth_limit=True, step_weight=0.0)
    tree, engine, _ = search(MCTS(cfg), script, {})
    a, b = tree.root.children
    whole = ArithTask(ArithConfig(train_size=10)).max_new_tokens
    # one step expansion, then one whole completion at each depth-limit node; the third simulation selects b's
    # existing completion again instead of sampling another
    assert engine.calls == [(1, 2, 32, ["\n"]), (1, 1, whole, None), (1, 1, whole, None)]
    (a_end,), (b_end,) = a.children, b.children
    assert a_end.terminal and not a_end.verdict.correct and b_end.verdict.correct
    # no critic: the unfinished steps inherit the root's 0; the completions carry O = -1 and +1
    assert (a.value, a_end.value, b_end.value) == (0.0, -1.0, 1.0)
    assert (a.q, a.visits) == (-1.0, 1) and (b.q, b.visits) == (1.0, 2) and b_end.visits == 2
    assert tree.root.visits == 3 and tree.root.metadata["V"] == pytest.approx((1 * -1.0 + 2 * 1.0) / 3)


def test_mcts_injects_the_rest_of_the_gold_solution_where_the_path_follows_it():
    from sisearch.search.mcts import GOLD, gold_continuation

    task = ArithTask(ArithConfig(train_size=10, test_size_per_difficulty=2))
    problem = Problem(id="p0", question=QUESTION, answer="2", solution="1+1=2\nA:2")
    engine = ScriptedEngine({"": ["1+1=3\n", "1+1=2\n"], "1+1=3\n": ["A:3" + EOS, "A:4" + EOS]})
    # c_puct 10: the second simulation explores 1+1=3 (prior ~0.94, unvisited) over the visited gold child
    cfg = MCTSConfig(simulations=2, commit=False, depth_limit=None, include_gt=True, step_weight=0.0, c_puct=10.0)
    (tree,) = run_search(MCTS(cfg), [problem], SearchContext(task, engine, TableRewarder({}), 32, progress=False))
    assert not any(engine.script.values())  # both expansions happened
    wrong, right, gold = tree.root.children
    # the root's expansion gets the whole gold solution as a third, finished child, worth O = +1
    assert gold.metadata[GOLD] and gold.terminal and gold.verdict.correct and gold.step == "1+1=2\nA:2"
    assert (gold.value, gold.token_ids, gold.num_tokens) == (1.0, [], 0)
    # under 1+1=2 (on the gold path) the rest "A:2" would be injected; under 1+1=3 (off it) nothing is
    assert not right.children and [c.step for c in wrong.children] == ["A:3", "A:4"]
    (rest,) = gold_continuation(right, problem)  # on the gold path: the rest of it, once
    assert (rest.step, rest.parent) == ("A:2", right) and gold_continuation(right, problem) == []
    assert gold_continuation(wrong, problem) == [] and gold_continuation(gold, problem) == []
    with pytest.raises(ValueError, match="include_gt needs gold solutions; problem p0 has none"):
        search(MCTS(cfg), {}, {})


def test_mcts_commits_move_by_move():
    script = {"": ["1+1=2\n", "1+1=3\n"], "1+1=2\n": ["A:2" + EOS, "A:2" + EOS]}
    table = {"1+1=2\n": 0.8, "1+1=3\n": 0.1, "1+1=2\nA:2": 1.0}
    cfg = MCTSConfig(simulations=1, first_root_factor=1, depth_limit=1)
    tree, engine, _ = search(MCTS(cfg), script, table)
    first = tree.root.children[0]
    assert first.metadata["committed"] and not tree.root.children[1].metadata.get("committed")
    # the duplicate second sample of the next step was dropped
    assert [c.state for c in first.children] == ["1+1=2\nA:2"]
    assert first.children[0].metadata["committed"] and tree.metadata["committed_depth"] == 2
    assert tree.answer == "2"


@pytest.mark.parametrize(
    "cfg,message",
    [
        ({"name": "mcts", "simulations": 0}, "simulations must be at least 1, got 0"),
        ({"name": "mcts", "depth_limit": 0}, "depth_limit must be at least 1 or null, got 0"),
        ({"name": "mcts", "force_after": -1}, "force_after must be at least 0 or null, got -1"),
        ({"name": "mcts", "dirichlet_fraction": 1.5}, "dirichlet_fraction must be in [0, 1] and dirichlet_alpha > 0"),
        ({"name": "mcts", "commit_temperature": -1}, "commit_temperature must be at least 0, got -1.0"),
        ({"name": "mcts", "outcome": "orm"}, "unknown outcome 'orm'; allowed: verifier, score"),
        ({"name": "mcts", "backup": "max"}, "unknown backup 'max'; allowed: visit_weighted, mean"),
        ({"name": "beam", "expansions": 0}, "expansions must be at least 1, got 0"),
        ({"name": "best_first", "rollouts": 0}, "rollouts must be at least 1, got 0"),
        ({"name": "iterative_deepening", "trigger": ""}, "trigger must not be empty"),
        ({"name": "iterative_deepening", "growth": 0.5}, "segment_budgets: need first >= 1, growth >= 1"),
        ({"name": "best_of_n", "n": 0}, "n must be at least 1, got 0"),
        ({"name": "greedy", "answer_rule": "best"}, "unknown answer rule 'best'; allowed: highest_value, majority, weighted_vote"),
    ],
)
def test_searcher_schemas_refuse_bad_values_before_anything_is_built(cfg, message):
    with pytest.raises(registry.ConfigError) as err:
        registry.validate("searcher", cfg)
    assert str(err.value).startswith(f"searcher '{cfg['name']}': {message}")  # the component named once


SMALL_SIZES = {
    "mcts": ["searcher.simulations=1", "searcher.first_root_factor=1", "searcher.depth_limit=2"],
    "beam": ["searcher.beam_size=2", "searcher.expansions=2"],
    "best_first": ["searcher.children=2", "searcher.rollouts=2"],
    "iterative_deepening": ["searcher.samples=2"],
}


@pytest.mark.parametrize("name", sorted(SMALL_SIZES))
def test_every_searcher_runs_in_the_loop(tmp_path, small_run, name):
    rows = run(compose(small_run + [f"searcher={name}", *SMALL_SIZES[name]]), tmp_path)
    assert [r["iteration"] for r in rows] == [0, 1]
    assert rows[1]["search/generated_tokens"] > 0 and rows[1]["search/solutions"] > 0
    lines = (tmp_path / "iterations" / "iter_01" / "trees.jsonl").read_text().splitlines()
    assert len(lines) == 8
    assert all(json.loads(line)["cost"]["engine_calls"] > 0 for line in lines)
