"""Bad input fails before any work with a message naming the problem and what is allowed; unsafe input is
never executed (model text, remote code, pickled checkpoints)."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, compose

from sisearch.loop import run
from sisearch.registry import ConfigError


class WorkStarted(AssertionError):
    pass


@pytest.fixture()
def no_work(monkeypatch):
    """Any tiny-model training, search or evaluation fails the test: errors must come before them."""

    def refuse(*args, **kwargs):
        raise WorkStarted("work started before the bad input was reported")

    monkeypatch.setattr("sisearch.models.tiny.train_tiny", refuse)
    monkeypatch.setattr("sisearch.loop.run_search", refuse)
    monkeypatch.setattr("sisearch.loop.evaluate_with_outputs", refuse)


@pytest.fixture()
def fresh_small_run(small_run, tmp_path):
    # An empty model cache: a tiny model would have to be trained, which `no_work` forbids.
    return [o for o in small_run if not o.startswith("model.cache_dir=")] + [f"model.cache_dir={tmp_path / 'cache'}"]


def run_error(overrides: list[str], run_dir: Path, error: type[Exception] = ConfigError) -> str:
    with pytest.raises(error) as info:
        run(compose(overrides), run_dir)
    return str(info.value)


# --- config: names, keys, types -------------------------------------------------------------------------


def test_unknown_component_name_lists_the_registered_ones(no_work, fresh_small_run, tmp_path):
    message = run_error(fresh_small_run + ["searcher.name=bets_of_n"], tmp_path / "run")
    assert "unknown searcher 'bets_of_n'" in message
    assert "registered searchers:" in message and "best_of_n" in message and "greedy" in message


def test_misspelt_component_key_names_key_component_and_allowed_keys(no_work, fresh_small_run, tmp_path):
    message = run_error(fresh_small_run + ["+searcher.nn=4"], tmp_path / "run")
    assert message.startswith("searcher 'best_of_n': unknown key 'nn'; allowed keys: name, n, temperature")


def test_mistyped_component_value_names_key_and_expected_type(no_work, fresh_small_run, tmp_path):
    message = run_error(fresh_small_run + ["model.hidden_size=big"], tmp_path / "run")
    assert message == (
        "model 'tiny': bad value for 'hidden_size': Value 'big' of type 'str' could not be converted to Integer"
    )


def test_misspelt_top_level_key_is_refused_even_when_forced_with_plus(no_work, fresh_small_run, tmp_path):
    message = run_error(fresh_small_run + ["+iteration=3"], tmp_path / "run")
    assert message.startswith("unknown top-level config key 'iteration'; allowed: seed, iterations,")


def test_mistyped_top_level_and_trainer_values(no_work, fresh_small_run, tmp_path):
    message = run_error(fresh_small_run + ["iterations=three"], tmp_path / "run")
    assert message.startswith("run config: bad value for 'iterations'") and "Integer" in message
    message = run_error(fresh_small_run + ["+eval.sample=4"], tmp_path / "run")
    assert message == "run config: unknown key 'eval.sample'; allowed keys: samples, temperature"
    message = run_error(fresh_small_run + ["+trainer.lr=0.1"], tmp_path / "run")
    assert "trainer config: unknown key 'lr'; allowed keys: accelerator, strategy, devices, num_nodes, precision" in message
    message = run_error(fresh_small_run + ["trainer.devices=two"], tmp_path / "run")
    assert message == "trainer config: devices must be a count >= 1, a list of device indices or 'auto', got 'two'"
    message = run_error(fresh_small_run + ["trainer.callbacks=[{_target_:no_such_module.Callback}]"], tmp_path / "run")
    assert message.startswith("trainer.callbacks: cannot make no_such_module.Callback: "), message
    message = run_error(fresh_small_run + ["trainer.strategy=no_such_strategy"], tmp_path / "run")
    assert message.startswith("trainer config: ") and "no_such_strategy" in message, message
    message = run_error(fresh_small_run + ["trainer.max_time=90"], tmp_path / "run")
    assert message == "trainer config: max_time must be 'DD:HH:MM:SS' (e.g. 00:01:30:00), got '90'"
    message = run_error(fresh_small_run + ["search_token_budget=0"], tmp_path / "run")
    assert message == "search_chunk must be >= 1 and search_token_budget null or >= 1"


def test_bad_logger_mode_is_reported_before_the_model_loads(no_work, fresh_small_run, tmp_path):
    overrides = [o for o in fresh_small_run if o != "logger=none"] + ["logger=wandb", "logger.mode=onlin"]
    message = run_error(overrides, tmp_path / "run")
    assert message == "logger 'wandb': unknown mode 'onlin'; allowed: auto, online, offline"


def test_missing_required_value_is_named(no_work, small_run, tmp_path):
    overrides = [o for o in small_run if not o.startswith("model.")] + ["model=hf"]
    assert run_error(overrides, tmp_path / "run").startswith("model 'hf': 'path' has no value and must be set")


# --- the CLI: exit code 2 and one line ------------------------------------------------------------------


def cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "sisearch.cli", *args, "logger=none", f"hydra.run.dir={tmp_path / 'cli'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize(
    "override, expected, allowed",
    [
        # Hydra's struct mode catches these during composition; the CLI turns them into one line.
        ("iteration=3", "sisearch: error: unknown config key 'iteration'; allowed keys there: task,", "iterations"),
        ("searcher.nn=3", "sisearch: error: unknown config key 'searcher.nn'; allowed keys there: name, n,", "n"),
        ("searcher=bets_of_n", "sisearch: error: In 'config': Could not find 'searcher/bets_of_n'; available "
         "options in 'searcher':", "best_of_n"),
        # ... and these by sisearch's own validation.
        ("model.num_layers=two", "sisearch: error: model 'tiny': bad value for 'num_layers'", "Integer"),
        ("+iteration=3", "sisearch: error: unknown top-level config key 'iteration'; allowed:", "iterations"),
    ],
)
def test_cli_reports_bad_input_in_one_line_with_exit_code_2(override, expected, allowed, tmp_path):
    result = cli([override], tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), result.stderr
    assert allowed in lines[0]


# --- dataset files --------------------------------------------------------------------------------------


def gsm8k_run(small_run: list[str], train: Path, test: Path) -> list[str]:
    return [o for o in small_run if not o.startswith("task.")] + [
        "task=gsm8k", f"task.train_path={train}", f"task.test_path={test}",
    ]


def write_gsm8k(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


GOOD_LINE = json.dumps({"question": "What is 2+3?", "answer": "2+3=5\n#### 5"})


def test_missing_dataset_file_names_the_path(no_work, fresh_small_run, tmp_path):
    test = write_gsm8k(tmp_path / "test.jsonl", [GOOD_LINE])
    message = run_error(gsm8k_run(fresh_small_run, tmp_path / "nope.jsonl", test), tmp_path / "run", FileNotFoundError)
    assert message == f"task 'gsm8k': train file not found: {tmp_path / 'nope.jsonl'}"


@pytest.mark.parametrize(
    "bad_line, detail",
    [
        ('{"question": "What is 1+1?", "answer": "2"', "Expecting"),  # cut-off JSON
        (json.dumps({"question": "What is 1+1?"}), "missing field 'answer'"),
        (json.dumps({"question": "What is 1+1?", "answer": "it is 2"}), "no '#### <answer>' line"),
        (json.dumps({"question": "What is 1+1?", "answer": "1+1\n#### two"}), "not a number: 'two'"),
        (json.dumps({"question": ["q"], "answer": "#### 2"}), "field 'question' must be a string, got list"),
        ("[1, 2]", "not a JSON object but list"),
    ],
)
def test_malformed_dataset_line_is_reported_with_its_number(no_work, fresh_small_run, tmp_path, bad_line, detail):
    train = write_gsm8k(tmp_path / "train.jsonl", [GOOD_LINE, "", GOOD_LINE, bad_line, GOOD_LINE])
    test = write_gsm8k(tmp_path / "test.jsonl", [GOOD_LINE])
    message = run_error(gsm8k_run(fresh_small_run, train, test), tmp_path / "run", ValueError)
    assert message.startswith(f"task 'gsm8k': {train} line 4 is malformed (")
    assert detail in message and 'each line must be a JSON object {"question": str' in message


def test_empty_problem_set_is_refused(no_work, fresh_small_run, tmp_path):
    train = write_gsm8k(tmp_path / "train.jsonl", [GOOD_LINE])
    empty = write_gsm8k(tmp_path / "test.jsonl", ["", "  "])
    message = run_error(gsm8k_run(fresh_small_run, train, empty), tmp_path / "run", ValueError)
    assert message == f"task 'gsm8k': {empty} holds no problems"



@pytest.mark.parametrize(
    "override, expected",
    [
        (["task=gsm8k", "task.test_limit=0"], "task 'gsm8k': test_limit must be at least 1 or null (no limit), got 0"),
        (["task=math", "task.max_steps=0"], "task 'math': max_steps must be at least 1, got 0"),
        (["task=math", "task.group_by=levels"], "task 'math': unknown group_by 'levels'; allowed: level, type, none"),
        (["task=gsm8k", "task.prompt_template='Q: {problem}'"], "task 'gsm8k': prompt_template is not a valid"),
    ],
)
def test_bad_task_value_is_refused_before_work(no_work, fresh_small_run, tmp_path, override, expected):
    overrides = [o for o in fresh_small_run if not o.startswith("task.")] + override
    assert run_error(overrides, tmp_path / "run", ValueError).startswith(expected)

# --- model directories and tokenizers -------------------------------------------------------------------


def hf_run(small_run: list[str], path: Path) -> list[str]:
    return [o for o in small_run if not o.startswith("model.")] + ["model=hf", f"model.path={path}", "model.device=cpu"]


def test_missing_model_directory(no_work, small_run, tmp_path):
    message = run_error(hf_run(small_run, tmp_path / "nowhere"), tmp_path / "run", FileNotFoundError)
    assert message == f"model directory not found: {tmp_path / 'nowhere'}"


def test_directory_that_is_not_a_model(no_work, small_run, tmp_path):
    not_model = tmp_path / "notes"
    not_model.mkdir()
    (not_model / "readme.txt").write_text("hello")
    message = run_error(hf_run(small_run, not_model), tmp_path / "run", ValueError)
    assert message.startswith(f"{not_model} is not a Hugging Face model directory: it has no config.json")
    assert "expected config.json with a model_type, weights as *.safetensors or *.bin" in message


def test_model_directory_without_weights(no_work, small_run, tmp_path, tiny_dir):
    model = copy_model(tiny_dir, tmp_path / "model")
    (model / "model.safetensors").unlink()
    message = run_error(hf_run(small_run, model), tmp_path / "run", ValueError)
    assert message.startswith(f"{model} holds no weights (*.safetensors or *.bin)")


def copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def edit_tokenizer_config(model: Path, **changes) -> None:
    path = model / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_tokenizer_without_eos_is_refused(no_work, small_run, tmp_path, tiny_dir):
    model = copy_model(tiny_dir, tmp_path / "model")
    edit_tokenizer_config(model, eos_token=None)
    message = run_error(hf_run(small_run, model), tmp_path / "run", ValueError)
    assert message.startswith(f"the tokenizer in {model} has no eos_token; sisearch needs one to end solutions")


def test_tokenizer_without_pad_reuses_eos(tmp_path, tiny_dir):
    from sisearch.models.policy import load_policy

    model = copy_model(tiny_dir, tmp_path / "model")
    edit_tokenizer_config(model, pad_token=None)
    policy = load_policy(model, device="cpu")
    assert policy.tokenizer.pad_token == "</s>" == policy.tokenizer.eos_token


# --- nothing untrusted is executed ----------------------------------------------------------------------


class Exploit:
    """Unpickling this would create a marker file (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_checkpoint_is_not_executed(tmp_path, tiny_dir):
    from sisearch.models.policy import load_policy

    model = copy_model(tiny_dir, tmp_path / "model")
    (model / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    with open(model / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"model.embed_tokens.weight": Exploit(marker)}, handle)
    with pytest.raises(Exception):  # torch.load(weights_only=True) refuses the global
        load_policy(model, device="cpu")
    assert not marker.exists()


def test_remote_code_is_off_by_default_and_never_run(tmp_path, tiny_dir):
    from sisearch.models.hf import HFModelConfig
    from sisearch.models.policy import load_policy
    from sisearch.models.tiny import TinyConfig

    assert HFModelConfig(path="/models/x").trust_remote_code is False and TinyConfig().trust_remote_code is False
    assert "trust_remote_code: false" in (REPO / "sisearch" / "conf" / "model" / "hf.yaml").read_text()
    model = copy_model(tiny_dir, tmp_path / "model")
    marker = tmp_path / "pwned"
    (model / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (model / "config.json").write_text(json.dumps(config))
    try:
        load_policy(model, device="cpu")  # llama is built in, so the built-in code is used
    except Exception:
        pass  # refusing is fine too; running evil.py is not
    assert not marker.exists()


def python_sources() -> list[Path]:
    return [p for folder in ("sisearch", "plugins") for p in (REPO / folder).rglob("*.py")]


def test_no_eval_or_exec_of_text_anywhere():
    pattern = re.compile(r"(?<![.\w])(eval|exec|compile)\(|pickle\.loads?\(|os\.system\(|subprocess\.")
    offenders = [f"{p}:{i}" for p in python_sources() for i, line in enumerate(p.read_text().splitlines(), 1)
                 if pattern.search(line)]
    assert offenders == []


def test_every_torch_load_is_weights_only():
    offenders = []
    for path in python_sources():
        text = path.read_text()
        for match in re.finditer(r"torch\.load\(", text):
            call = text[match.start(): text.find(")", match.end()) + 1]
            if "weights_only=True" not in call:
                offenders.append(f"{path}: {call}")
    assert offenders == []


def test_gsm8k_answers_are_only_numbers_and_checked_under_a_timeout(monkeypatch, tmp_path):
    from sisearch.tasks import answers, gsm8k
    from sisearch.tasks.base import Problem

    marker = tmp_path / "pwned"
    attack = f"The answer is __import__('os').system('touch {marker}')\n#### 1+__import__('os')"
    calls: list[dict] = []
    real_parse, real_verify = answers.parse, answers.verify

    def spy_parse(text, **kwargs):
        calls.append({"parse": text, **kwargs})
        return real_parse(text, **kwargs)

    def spy_verify(gold, predicted, **kwargs):
        calls.append({"verify": True, **kwargs})
        return real_verify(gold, predicted, **kwargs)

    monkeypatch.setattr(answers, "parse", spy_parse)
    monkeypatch.setattr(answers, "verify", spy_verify)
    task = gsm8k.GSM8KTask(gsm8k.GSM8KConfig())
    verdict = task.check(Problem("p", "q", "1"), attack)
    assert verdict.answer == "1" and verdict.correct  # only the number after '####' is read
    assert not marker.exists()
    assert all(re.fullmatch(r"-?[0-9.]+", c["parse"]) for c in calls if "parse" in c)
    assert [c["parsing_timeout"] for c in calls if "parse" in c] == [answers.CHECK_TIMEOUT_S] * 2
    assert [c["timeout_seconds"] for c in calls if "verify" in c] == [answers.CHECK_TIMEOUT_S]
    assert 0 < answers.CHECK_TIMEOUT_S <= 10


def test_a_chat_prompt_for_a_model_without_a_chat_template_is_refused_before_loading_it(no_work, fresh_small_run, tmp_path):
    message = run_error(fresh_small_run + ["task.prompt.format=chat"], tmp_path / "run")
    assert message == (
        "task 'arith': prompt.format is 'chat' but model 'tiny' has no chat template; "
        "use task.prompt.format=plain (or auto: chat only when the tokenizer has a template)"
    )
    # an HF directory is asked through its tokenizer files, without loading the model
    from sisearch.models.hf import directory_has_chat_template

    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "tokenizer_config.json").write_text('{"model_max_length": 512}')
    (tmp_path / "chat").mkdir()
    (tmp_path / "chat" / "tokenizer_config.json").write_text('{"chat_template": "{{ messages }}"}')
    (tmp_path / "jinja").mkdir()
    (tmp_path / "jinja" / "chat_template.jinja").write_text("{{ messages }}")
    assert [directory_has_chat_template(tmp_path / d) for d in ("plain", "chat", "jinja")] == [False, True, True]
    hf_run = [o for o in fresh_small_run if not o.startswith("model")] + ["model=hf", f"model.path={tmp_path / 'plain'}"]
    message = run_error(hf_run + ["task.prompt.format=chat"], tmp_path / "run2")
    assert message.startswith("task 'arith': prompt.format is 'chat' but model 'hf' has no chat template")
