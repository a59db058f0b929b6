"""How each rewarder maps engine outputs to scores (a scripted fake engine, exact numbers), and each rewarder
in the loop."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from conftest import compose

from sisearch import registry
from sisearch.engines.base import Engine, EngineStats, Sample
from sisearch.models.tiny import build_tokenizer
from sisearch.rewards.base import ScoreItem
from sisearch.rewards.composite import CompositeConfig, CompositeRewarder
from sisearch.rewards.follow_up import FollowUpCategory, FollowUpConfig, FollowUpRewarder
from sisearch.rewards.orm import ORMConfig, ORMRewarder
from sisearch.rewards.pav import PAVConfig, PAVRewarder
from sisearch.rewards.prm import PRMConfig, PRMRewarder
from sisearch.rewards.self_judge import SelfJudgeConfig, SelfJudgeRewarder
from sisearch.search.tree import Node
from sisearch.tasks.arith import ArithConfig, ArithTask
from sisearch.tasks.base import Problem

PROMPT = "Q:1+2-4=?\n"
PROBLEM = Problem(id="p", question="Q:1+2-4=?", answer="9")


class ScriptedEngine(Engine):
    """Answers from tables keyed by prompt text; counts calls so tests can check batching."""

    def __init__(self, rollouts=None, next_token=None, follow_ups=None):
        self.rollouts = rollouts or {}  # prompt -> list of completion texts (cycled to n)
        self.next_token = next_token or {}  # prompt -> log-probs of the candidate tokens
        self.follow_ups = follow_ups or {}  # (context, continuation) -> per-token log-probs
        self.calls: list[tuple[str, int]] = []
        self.stats = EngineStats()
        self.policy = SimpleNamespace(tokenizer=build_tokenizer())

    def generate(self, prompts, n=1, max_new_tokens=64, temperature=1.0, stop=None):
        self.calls.append(("generate", len(prompts)))
        out = []
        for p in prompts:
            texts = self.rollouts[p]
            out.append([Sample(texts[j % len(texts)], [1], [0.0], "eos") for j in range(n)])
        return out

    def logprobs(self, contexts, continuations):
        self.calls.append(("logprobs", len(contexts)))
        return [list(self.follow_ups[(c, x)]) for c, x in zip(contexts, continuations)]

    def next_token_logprobs(self, prompts, token_ids):
        self.calls.append(("next_token_logprobs", len(prompts)))
        return [list(self.next_token[p]) for p in prompts]

    def sync(self, policy):
        pass

    def reseed(self, seed):
        pass


@pytest.fixture()
def task():
    return ArithTask(ArithConfig(train_size=20, test_size_per_difficulty=2))


def item(state: str, terminal: bool = False) -> ScoreItem:
    return ScoreItem(PROBLEM, PROMPT, Node(step=state, state=state, terminal=terminal))


# -- self_judge ----------------------------------------------------------------------------------------------


def test_self_judge_renormalises_over_the_option_forms(task):
    solution = "1+2=3\n"
    engine = ScriptedEngine(next_token={PROMPT + solution: [math.log(0.2), math.log(0.1), math.log(0.1)]})
    cfg = SelfJudgeConfig(true_options=["1", "A"], false_options=["W"])
    rewarder = SelfJudgeRewarder(cfg, task=task, engine=engine)
    # P(True) = (0.2 + 0.1) / (0.2 + 0.1 + 0.1) = 0.75
    assert rewarder.score([item(solution)]) == [pytest.approx(0.75)]
    cfg.output = "logit"
    logit = SelfJudgeRewarder(cfg, task=task, engine=engine).score([item(solution)])[0]
    assert logit == pytest.approx(math.log(0.3) - math.log(0.1))
    assert not rewarder.uses_gold


def test_self_judge_per_step_batches_every_prefix_in_one_call(task):
    state = "1+2=3\n3-4=9\nA:9"
    engine = ScriptedEngine(
        next_token={
            PROMPT + "1+2=3\n": [math.log(0.9), math.log(0.1)],  # P = 0.9
            PROMPT + "1+2=3\n3-4=9\n": [math.log(0.3), math.log(0.1)],  # P = 0.75
            PROMPT + "1+2=3\n3-4=9\nA:9\n": [math.log(0.5), math.log(0.5)],  # P = 0.5 (suffix appended)
            PROMPT + "1+2=3\n": [math.log(0.9), math.log(0.1)],
        }
    )
    cfg = SelfJudgeConfig(true_options=["1"], false_options=["W"], per_step=True, aggregate="mean")
    rewarder = SelfJudgeRewarder(cfg, task=task, engine=engine)
    scores = rewarder.score([item(state, terminal=True), item("1+2=3\n")])
    assert scores == [pytest.approx((0.9 + 0.75 + 0.5) / 3), pytest.approx(0.9)]
    assert engine.calls == [("next_token_logprobs", 4)]


def test_self_judge_hinted_by_the_gold_solution_reads_gold(task):
    gold = Problem(id="g", question="Q:1+2-4=?", answer="9", solution="1+2=3\n3-4=9\nA:9")
    template = "{reference}\n{prompt}{solution}"
    prompt = "1+2=3\n3-4=9\nA:9\n" + PROMPT + "1+2=3\n"
    engine = ScriptedEngine(next_token={prompt: [math.log(0.3), math.log(0.1)]})
    hinted = SelfJudgeRewarder(SelfJudgeConfig(template=template, true_options=["1"], false_options=["W"]),
                               task=task, engine=engine)
    assert hinted.uses_gold  # training-time search only
    assert hinted.score([ScoreItem(gold, PROMPT, Node(step="1+2=3\n", state="1+2=3\n"))]) == [pytest.approx(0.75)]
    with pytest.raises(ValueError, match="needs a gold solution; problem p has none"):
        hinted.score([item("1+2=3\n")])
    assert not SelfJudgeRewarder(SelfJudgeConfig(), task=task, engine=engine).uses_gold


def test_self_judge_rejects_options_that_are_not_one_token(task):
    with pytest.raises(ValueError, match="exactly one known token"):
        SelfJudgeRewarder(SelfJudgeConfig(true_options=["Yes"]), task=task, engine=ScriptedEngine())
    with pytest.raises(ValueError, match="unknown template field"):
        SelfJudgeRewarder(SelfJudgeConfig(template="{gold}"), task=task, engine=ScriptedEngine())


# -- follow_up -----------------------------------------------------------------------------------------------


def test_follow_up_is_positive_minus_negative_mean_normalised_loglik(task):
    ctx = PROMPT + "1+2=3"  # the trailing newline is stripped before the follow-ups
    engine = ScriptedEngine(
        follow_ups={
            (ctx, "\nA:"): [-1.0, -2.0, -3.0],  # l = -2
            (ctx, "\nWait:"): [-0.5] * 6,  # l = -0.5
            (ctx, "1"): [-1.0],  # l = -1
            (ctx, "22"): [-2.0, -4.0],  # l = -3 -> mean positive (-1 + -3)/2 = -2
            (ctx, "W"): [-4.0],  # l = -4
        }
    )
    cfg = FollowUpConfig(
        categories=[
            FollowUpCategory(name="doubt", positive=["\nA:"], negative=["\nWait:"]),  # -2 - -0.5 = -1.5
            FollowUpCategory(name="other", positive=["1", "22"], negative=["W"]),  # -2 - -4 = 2
        ]
    )
    rewarder = FollowUpRewarder(cfg, task=task, engine=engine)
    assert rewarder.score([item("1+2=3\n"), item("1+2=3\n")]) == [pytest.approx(0.25)] * 2
    assert engine.calls == [("logprobs", 10)]  # both items' five follow-ups in one call


class MergingTokenizer:
    """Longest match first over a tiny vocabulary in which "ab" is one token (a BPE merge)."""

    bos_token = None
    vocab = {"ab": 10, "a": 1, "b": 2, "x": 3, "\n": 4, "W": 5}

    def __call__(self, text, add_special_tokens=False):
        ids = []
        while text:
            piece = next(p for p in sorted(self.vocab, key=len, reverse=True) if text.startswith(p))
            ids.append(self.vocab[piece])
            text = text[len(piece):]
        return SimpleNamespace(input_ids=ids)


def test_follow_ups_are_tokenized_in_their_context():
    from sisearch.optim.logprobs import encode_scored_pairs

    pairs = encode_scored_pairs(MergingTokenizer(), ["xa", "x\n", "x", "xa"], ["b", "Wb", "ab", ""])
    # "xa" + "b" reads as x, ab: the merged token straddles the boundary and is scored as the follow-up
    # (on its own "b" would be token 2, a split the model never sees after "xa")
    assert pairs == [([3], [10]), ([3, 4], [5, 2]), ([3], [10]), ([3, 1], [])]


# -- prm (Monte-Carlo mode) ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "label,aggregate,expected",
    [("soft", "min", 0.25), ("soft", "mean", (0.25 + 0.75 + 1.0) / 3), ("soft", "prod", 0.25 * 0.75),
     ("soft", "last", 1.0), ("hard", "min", 1.0)],
)
def test_prm_mc_labels_each_prefix_by_rollouts_and_aggregates(task, label, aggregate, expected):
    engine = ScriptedEngine(
        rollouts={
            PROMPT + "1+2=3\n": ["3-4=9\nA:9", "A:1", "A:2", "A:0"],  # 1 of 4 right
            PROMPT + "1+2=3\n3-4=9\n": ["A:9", "A:9", "A:9", "A:1"],  # 3 of 4 right
        }
    )
    cfg = PRMConfig(mode="mc", rollouts=4, label=label, aggregate=aggregate)
    rewarder = PRMRewarder(cfg, task=task, engine=engine)
    assert rewarder.uses_gold
    assert PRMConfig().aggregate == "last" and PRMConfig().label == "soft"  # soft labels read as values: the last
    # the finished answer line is checked directly: 1.0
    assert rewarder.score([item("1+2=3\n3-4=9\nA:9", terminal=True)]) == [pytest.approx(expected)]
    assert engine.calls == [("generate", 2)]


# -- pav -----------------------------------------------------------------------------------------------------


PAV_ROLLOUTS = {PROMPT: ["A:9", "A:1", "A:2", "A:3"], PROMPT + "1+2=3\n": ["A:9", "A:9", "A:9", "A:0"]}


@pytest.mark.parametrize(
    "prover,k,expected",
    [
        # Q_pi(after) = 0.75, before = 0.25; A = 0.5; 0.75 + 2 * 0.5
        ("policy", 1, 1.75),
        # Bo3: after 1 - 0.25^3 = 0.984375, before 1 - 0.75^3 = 0.578125; 0.75 + 2 * 0.40625
        ("best_of_k", 3, 1.5625),
    ],
)
def test_pav_is_policy_value_plus_alpha_times_prover_progress(task, prover, k, expected):
    engine = ScriptedEngine(rollouts=PAV_ROLLOUTS)
    rewarder = PAVRewarder(PAVConfig(alpha=2.0, rollouts=4, prover=prover, k=k), task=task, engine=engine)
    # two siblings after the same parent: the parent prefix is rolled out once
    scores = rewarder.score([item("1+2=3\n"), item("1+2=3\n")])
    assert scores == [pytest.approx(expected)] * 2
    assert engine.calls == [("generate", 2)]


def test_pav_finished_node_uses_its_verdict(task):
    engine = ScriptedEngine(rollouts=PAV_ROLLOUTS)
    rewarder = PAVRewarder(PAVConfig(alpha=1.0, rollouts=4, prover="policy"), task=task, engine=engine)
    # after = the right answer (1.0), before = "1+2=3\n" (0.75): 1.0 + 1.0 * 0.25
    assert rewarder.score([item("1+2=3\nA:9", terminal=True)]) == [pytest.approx(1.25)]


def test_pav_model_prover_needs_a_path(task):
    with pytest.raises(ValueError, match="prover_path"):
        PAVRewarder(PAVConfig(prover="model"), task=task, engine=ScriptedEngine())
    with pytest.raises(ValueError, match="allowed: policy, best_of_k, model"):
        PAVRewarder(PAVConfig(prover="oracle"), task=task, engine=ScriptedEngine())


# -- composite -----------------------------------------------------------------------------------------------


def test_composite_is_the_weighted_sum_of_its_components(task):
    engine = ScriptedEngine(next_token={PROMPT + "1+2=3\nA:9\n": [math.log(0.6), math.log(0.2)]})
    cfg = CompositeConfig(
        components=[
            {"name": "orm", "weight": 2.0},
            {"name": "self_judge", "weight": 0.5, "true_options": ["1"], "false_options": ["W"]},
        ]
    )
    rewarder = CompositeRewarder(cfg, task=task, engine=engine)
    assert rewarder.uses_gold  # the verifier reads the gold answer
    # orm verifier: 1.0 (right answer); self_judge: 0.6 / 0.8 = 0.75; 2 * 1 + 0.5 * 0.75
    assert rewarder.score([item("1+2=3\nA:9", terminal=True)]) == [pytest.approx(2.375)]


def test_composite_rejects_components_without_weight(task):
    with pytest.raises(ValueError, match="has no 'weight'"):
        CompositeRewarder(CompositeConfig(components=[{"name": "orm"}]), task=task, engine=ScriptedEngine())
    with pytest.raises(registry.ConfigError, match="unknown rewarder"):
        CompositeRewarder(CompositeConfig(components=[{"name": "nope", "weight": 1}]), task=task, engine=None)


def test_trained_mode_without_a_head_and_no_training_explains_how(task, tmp_path):
    cfg = ORMConfig(mode="trained", path=str(tmp_path / "none"), train_if_missing=False)
    engine = ScriptedEngine()
    engine.policy.path = str(tmp_path)
    with pytest.raises(FileNotFoundError, match="train_if_missing=true"):
        ORMRewarder(cfg, task=task, engine=engine)


def test_every_rewarder_says_whether_it_reads_the_gold_answer(task):
    engine = ScriptedEngine()
    assert ORMRewarder(ORMConfig(mode="verifier"), task=task).uses_gold
    assert PRMRewarder(PRMConfig(mode="mc"), task=task, engine=engine).uses_gold
    assert PAVRewarder(PAVConfig(), task=task, engine=engine).uses_gold
    assert not SelfJudgeRewarder(SelfJudgeConfig(), task=task, engine=engine).uses_gold
    assert not FollowUpRewarder(FollowUpConfig(), task=task, engine=engine).uses_gold


# -- in the loop ---------------------------------------------------------------------------------------------

SMALL_TRAIN = [
    "rewarder.train.problems=6", "rewarder.train.samples_per_problem=2", "rewarder.train.rollouts=2",
    "rewarder.train.epochs=1", "rewarder.train.batch_size=8",
]
LOOP_REWARDERS = {
    "orm_trained": ["rewarder=orm", "rewarder.mode=trained", *SMALL_TRAIN],
    "prm_trained": ["rewarder=prm", *SMALL_TRAIN],
    "prm_mc": ["rewarder=prm", "rewarder.mode=mc", "rewarder.rollouts=2"],
    "pav": ["rewarder=pav", "rewarder.rollouts=2"],
    "self_judge": ["rewarder=self_judge", "rewarder.per_step=true"],
    "follow_up": ["rewarder=follow_up"],
    "composite": ["rewarder=composite"],
}
# every rewarder with the tree searchers; best_of_n (whole solutions) with the trained heads
LOOP_CASES = [(r, s) for r in sorted(LOOP_REWARDERS) for s in ("mcts", "beam")] + [
    ("orm_trained", "best_of_n"), ("prm_trained", "best_of_n"), ("pav", "best_of_n")
]
# searcher settings that keep one loop run to seconds
SMALL_SEARCH = {
    "best_of_n": ["searcher.n=4"],
    "mcts": ["searcher.simulations=2", "searcher.first_root_factor=1", "searcher.depth_limit=2"],
    "beam": ["searcher.beam_size=2", "searcher.expansions=2", "searcher.max_steps=4"],
}


@pytest.mark.parametrize("rewarder,searcher", LOOP_CASES)
def test_rewarder_runs_in_the_loop(tmp_path, small_run, rewarder, searcher):
    from sisearch.loop import run

    overrides = list(LOOP_REWARDERS[rewarder])
    if "rewarder.mode=trained" in overrides or rewarder == "prm_trained":
        overrides.append(f"rewarder.path={tmp_path / 'head'}")
    rows = run(compose(small_run + overrides + [f"searcher={searcher}", *SMALL_SEARCH[searcher]]), tmp_path / "run")
    assert [r["iteration"] for r in rows] == [0, 1]
    assert rows[1]["search/solutions"] > 0
    if "rewarder.path" in " ".join(overrides):
        assert (tmp_path / "head" / "head.safetensors").is_file()


class ScriptedHead:
    """A trained verifier stand-in: a fixed value at the end of each known prefix."""

    VALUES = {"": 0.2, "1+2=3\n": 0.4, "1+2=3\n3-4=9\n": 0.7}

    def values_at(self, prompts, steps):
        return [[self.VALUES["".join(s[: h + 1])] for h in range(len(s))] or [self.VALUES[""]] for s in steps]


@pytest.mark.parametrize(
    "prover,k,expected",
    [
        # second step: before 0.4, after 0.7 -> 0.7 + 2 * 0.3; first step: before (prompt) 0.2, after 0.4
        ("policy", 1, [1.3, 0.8]),
        # Bo2 values: 1 - 0.6^2 = 0.64 -> 1 - 0.3^2 = 0.91; 1 - 0.8^2 = 0.36 -> 0.64
        ("best_of_k", 2, [0.7 + 2 * 0.27, 0.4 + 2 * 0.28]),
    ],
)
def test_pav_trained_estimator_reads_the_verifier_before_and_after_the_last_step(task, prover, k, expected):
    rewarder = PAVRewarder(PAVConfig(alpha=2.0, prover=prover, k=k), task=task, engine=ScriptedEngine())
    rewarder.cfg.estimator, rewarder.head = "trained", ScriptedHead()  # as if loaded from a trained head
    scores = rewarder.score([item("1+2=3\n3-4=9\n"), item("1+2=3\n")])
    assert scores == [pytest.approx(e) for e in expected]


def test_pav_trained_estimator_needs_soft_labels(task):
    from sisearch.rewards.heads import HeadTrainConfig

    with pytest.raises(ValueError, match="mc_soft"):
        PAVRewarder(PAVConfig(estimator="trained", train=HeadTrainConfig(labels="mc_hard")), task=task,
                    engine=ScriptedEngine())
