"""The pure parts of tracking and the console, by hand: per-step rows on the run's global step, B-STaR's
balance metrics, the table rows, the iteration line, progress as log lines, third-party warnings."""

from __future__ import annotations

import logging
import warnings

import pytest

import sisearch.loop
from sisearch.data.records import PreferencePair
from sisearch.progress import LogBar, progress_task, stage
from sisearch.reporting import iteration_line
from sisearch.search.balance import BalanceConfig, balance_metrics, balance_score
from sisearch.search.tree import Node, Tree, Verdict
from sisearch.third_party_warnings import third_party_warnings_to
from sisearch.tracking.steps import StepSink
from sisearch.tracking.tables import problem_table, record_row
from sisearch.tracking.tracker import read_csv_rows


class Rows:
    def __init__(self):
        self.rows: list[tuple[int, dict]] = []

    def __call__(self, metrics, step):
        self.rows.append((step, metrics))


def test_trainers_share_one_global_step_and_micro_batches_merge_into_one_row():
    written = Rows()
    sink = StepSink([written], start_step=10)  # a resumed run: 10 steps before this process
    first = sink.trainer_logger("train")
    # Lightning numbers rows by the steps taken before them; a callback's row of the same step merges in
    first.log_metrics({"loss": 2.0, "epoch": 0}, step=0)
    first.log_metrics({"lr-AdamW": 0.1}, step=0)
    first.log_metrics({"loss": 1.0}, step=1)
    first.log_metrics({"loss": 3.0}, step=1)  # a second micro-batch of step 1: averaged
    first.close(trainer_steps=2)
    head = sink.trainer_logger("reward_head")
    head.log_metrics({"loss": 0.5, "accuracy": 0.75}, step=0)
    head.close(trainer_steps=1)
    assert written.rows == [
        (11, {"train/loss": 2.0, "train/lr-AdamW": 0.1}),
        (12, {"train/loss": 2.0}),
        (13, {"reward_head/loss": 0.5, "reward_head/accuracy": 0.75}),
    ]
    assert sink.global_step == 13


def test_csv_rows_of_a_killed_iteration_are_dropped(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,train/loss,train/nll_loss\n1,2.0,\n2,1.5,0.25\n3,1.0,0.5\n")
    assert read_csv_rows(path, upto=2) == [(1, {"train/loss": 2.0}), (2, {"train/loss": 1.5, "train/nll_loss": 0.25})]


def solution(text: str, correct: bool, value: float, answer: str) -> Node:
    return Node(step=text, state=text, terminal=True, value=value, verdict=Verdict(correct, answer))


def tree_of(problem_id: str, nodes: list[Node], chosen: int | None) -> Tree:
    tree = Tree(problem_id, "Q:1+2=?\n")
    for node in nodes:
        tree.root.add_child(node)
    tree.chosen = nodes[chosen] if chosen is not None else None
    return tree


def test_balance_metrics_by_hand():
    # problem a: two distinct correct solutions (one sampled twice), one wrong; the rewarder selects a correct
    # one and the wrong one; its pick is correct.
    a = tree_of("a", [solution("A:3", True, 0.9, "3"), solution("A:3", True, 0.9, "3"),
                      solution("1+2=3\nA:3", True, 0.2, "3"), solution("A:4", False, 0.7, "4")], chosen=0)
    # problem b: nothing correct, nothing selected, the pick is wrong
    b = tree_of("b", [solution("A:5", False, 0.1, "5")], chosen=0)
    metrics = balance_metrics([a, b], BalanceConfig(n_star=4, threshold=0.5))
    assert metrics == {
        "bstar/pass@k": 0.5,
        "bstar/distinct_correct": 1.0,  # (2 + 0) / 2
        "bstar/distinct_answers": 1.5,  # ({3, 4} + {5}) / 2
        "bstar/pick_accuracy": 0.5,
        "bstar/selected_precision": 0.5,  # 1 correct of 2 selected (both in a)
        "bstar/balance": pytest.approx((min(1 / 4, 1) * 1 / 2 + 0.0) / 2),
    }
    assert balance_score(8, 8, 8) == 1.0 and balance_score(0, 0, 8) == 0.0 and balance_score(2, 4, 8) == 0.125


def test_table_rows_show_the_chosen_solution_and_the_pairs_q_gap():
    tree = tree_of("a", [solution("A:3", True, 0.9, "3")], chosen=0)
    tree.answer = "3"
    tree.cost.generated_tokens = 7
    assert problem_table([tree]).rows == [["a", "Q:1+2=?\n", "A:3", "3", True, 0.9, 7]]
    pair = PreferencePair("a", "Q:1+2=?\n", "A:3", "A:4", chosen_value=0.75, rejected_value=-0.25)
    assert record_row(pair) == ["a", "Q:1+2=?\n", "A:3", "A:4", 1.0]


def test_iteration_line_names_accuracy_tokens_records_and_time():
    base = {"iteration": 0, "eval/greedy/overall": 0.25}
    row = {"iteration": 2, "eval/greedy/overall": 0.5, "search/generated_tokens": 60012.0, "data/records": 312.0,
           "iteration/seconds": 45.21}
    assert iteration_line(row, base) == "iteration 2: accuracy 0.500 (base 0.250), 60012 tokens searched, 312 records, 45.2 s"
    assert iteration_line(base, base) == "iteration 0: accuracy 0.250"


def test_bars_write_labelled_log_lines_when_the_output_is_not_a_terminal(caplog, monkeypatch):
    monkeypatch.setenv("SISEARCH_PROGRESS_INTERVAL", "0")
    caplog.set_level(logging.INFO, logger="sisearch.progress")
    with stage("iteration 2"), progress_task("search (problems)", total=4) as bar:  # pytest's output is no tty
        assert isinstance(bar, LogBar)
        bar.advance(3)
        bar.update(info="2 solved")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("iteration 2 · search (problems): 3/4 (")
    assert lines[-1].startswith("iteration 2 · search (problems): 3/4, 2 solved (") and lines[-1].endswith(", done)")


def test_third_party_warnings_go_to_the_run_dir_and_ours_to_the_console(tmp_path):
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with third_party_warnings_to(tmp_path):
            warnings.warn_explicit("old API", DeprecationWarning, "/site-packages/lightning/x.py", 3)
            warnings.warn_explicit("no training records", UserWarning, sisearch.loop.__file__, 9)
    assert "old API" in (tmp_path / "warnings.log").read_text()
    assert [str(w.message) for w in shown] == ["no training records"]
