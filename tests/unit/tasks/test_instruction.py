"""Instruction tuning on a tiny random Llama with a word-level ChatML tokenizer built in the test."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tunelab.catalog import parse_config
from tunelab.data.chat import read_instructions
from tunelab.data.encoding import IGNORE_INDEX, iterate_batches
from tunelab.errors import DataError, TunelabError
from tunelab.tasks.instruction import InstructionTuningTask, render_prompt, stop_token_ids

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
WORDS = ["user", "assistant", "system", "what", "colour", "is", "the", "sky", "grass", "blue", "green", "say",
         "hello", "hi", "there", "a", "long", "story", "about", "cats", "and", "dogs"]


def make_tiny_llama(path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    specials = ["<unk>", "<|im_start|>", "<|im_end|>"]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<|im_start|>",
                                        eos_token="<|im_end|>", pad_token="<|im_end|>")
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    tokenizer.chat_template = CHATML
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def qa_rows(n: int) -> list[dict]:
    pairs = [("what colour is the sky", "blue"), ("what colour is the grass", "green"), ("say hello", "hello there")]
    return [{"prompt": pairs[i % 3][0], "response": pairs[i % 3][1]} for i in range(n)]


def config_for(model: Path, data: Path, out: Path, **over) -> "RunConfig":  # noqa: F821
    raw = {"model": str(model), "task": "instruction_tuning",
           "data": {"train": str(data), "validation_split": 0.2, "test_split": 0.2, "max_length": 64},
           "strategy": {"name": "full"}, "optim": {"lr": 3e-3}, "schedule": {"name": "constant"},
           "train": {"epochs": 8, "batch_size": 4, "seed": 0}, "generation": {"max_new_tokens": 4}, "output": str(out)}
    for key, value in over.items():
        section, _, name = key.partition("__")
        if name:
            raw.setdefault(section, {})[name] = value
        else:
            raw[section] = value
    return parse_config(raw)


def tokenizer_of(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


# -- reading ----------------------------------------------------------------------------------------------

def test_reader_accepts_prompt_response_and_messages(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"prompt": "say hello", "response": "hi"},
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello"},
                      {"role": "assistant", "content": "hello"}]},
    ])
    first, second = read_instructions(path)
    assert first.messages == (("user", "say hello"),) and first.label == "hi"
    assert second.messages == (("system", "be brief"), ("user", "say hello")) and second.label == "hello"


@pytest.mark.parametrize("row, needle", [
    ({"text": "x"}, 'no "prompt" or "messages"'),
    ({"prompt": "x", "response": ""}, '"response" must be a non-empty string'),
    ({"messages": [{"role": "user", "content": "x"}]}, "must be the assistant's reply"),
    ({"messages": [{"role": "bot", "content": "x"}]}, "role 'bot'"),
])
def test_reader_errors_name_the_line(tmp_path: Path, row: dict, needle: str) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "ok", "response": "ok"}, row])
    with pytest.raises(DataError) as err:
        read_instructions(path)
    assert f"{path}:line 2" in str(err.value) and needle in str(err.value)


# -- encoding -------------------------------------------------------------------------------------------------

def test_targets_are_the_response_and_end_of_turn_only(tiny_llama: Path, tmp_path: Path) -> None:
    tok = tokenizer_of(tiny_llama)
    records = read_instructions(write_jsonl(tmp_path / "d.jsonl", qa_rows(3)))
    split = InstructionTuningTask().encode(records, tok, 64, [], train=True)
    for ids, targets, record in zip(split.input_ids, split.token_targets, split.records):
        scored = [t for t in targets if t != IGNORE_INDEX]
        assert scored[-1] == tok.eos_token_id == stop_token_ids(tok)[0]  # EOS is a target, never masked
        assert tok.decode(scored[:-1]).strip() == record.label
        first = targets.index(scored[0])
        assert all(t == IGNORE_INDEX for t in targets[:first]) and ids[first:] == scored
    batch = next(iter(iterate_batches(split, 3, pad_id=tok.pad_token_id, shuffle=False)))
    assert torch.equal(batch.inputs["labels"], batch.targets)  # the model sees which positions are scored


def test_long_prompt_is_cut_in_the_middle_and_long_response_refused(tiny_llama: Path, tmp_path: Path) -> None:
    tok = tokenizer_of(tiny_llama)
    task = InstructionTuningTask()
    long_prompt = "what " + "a long story about cats and dogs " * 10 + "is the sky"
    records = read_instructions(write_jsonl(tmp_path / "d.jsonl", [{"prompt": long_prompt, "response": "blue"}]))
    split = task.encode(records, tok, 24, [])
    ids = split.input_ids[0]
    assert len(ids) == 24
    full = render_prompt(tok, records[0].messages)
    assert ids[:5] == full[:5] and ids[-6:-2] == full[-4:]  # start and generation prompt kept, reply follows
    records = read_instructions(write_jsonl(tmp_path / "e.jsonl", [{"prompt": "hi", "response": "cats " * 30}]))
    with pytest.raises(DataError, match=r"e.jsonl:line 1: the response is \d+ tokens"):
        task.encode(records, tok, 24, [])


# -- model and loss -------------------------------------------------------------------------------------------

def test_scored_logits_give_the_same_loss_as_full_logits(tiny_llama: Path, tmp_path: Path) -> None:
    task = InstructionTuningTask()
    tok = tokenizer_of(tiny_llama)
    cfg = config_for(tiny_llama, tmp_path / "x.jsonl", tmp_path / "run")
    model = task.build_model(cfg.model, cfg.head, [], tiny_llama).eval()
    records = read_instructions(write_jsonl(tmp_path / "d.jsonl", qa_rows(5)))
    split = task.encode(records, tok, 64, [])
    batch = next(iter(iterate_batches(split, 5, pad_id=tok.pad_token_id, shuffle=False)))
    with torch.no_grad():
        scored = model(**batch.inputs)                                         # (B, P, V)
        inputs = {k: v for k, v in batch.inputs.items() if k != "labels"}
        reference = model.network(**inputs, labels=batch.targets).loss       # transformers' own shifted loss
        ours = task.loss_fn(cfg.loss, split, [])(scored, batch.targets)
        sums = task.reduce_outputs(scored, batch)
    assert scored.shape[1] < batch.targets.shape[1]  # the LM head ran on fewer positions than the sequence
    assert ours.item() == pytest.approx(reference.item(), abs=1e-5)
    assert (sums[:, 0].sum() / sums[:, 1].sum()).item() == pytest.approx(reference.item(), abs=1e-5)


# -- a whole run ----------------------------------------------------------------------------------------------

def test_run_learns_replies_that_stop_and_serves_them(tiny_llama: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tunelab.cli.main import app
    from tunelab.orchestration.train import train as run_training

    data = write_jsonl(tmp_path / "qa.jsonl", qa_rows(30))
    summary = run_training(config_for(tiny_llama, data, tmp_path / "run"))
    metrics = summary.test_metrics
    assert metrics["exact_match"] == 1.0 and metrics["stop_rate"] == 1.0  # memorised, and stops on its own
    assert metrics["base_exact_match"] == 0.0 and metrics["perplexity"] < 3.0
    assert math.isfinite(metrics["base_rouge_l"])
    history = json.loads((tmp_path / "run" / "manifest.json").read_text())["history"]
    assert history[-1]["perplexity"] < history[0]["perplexity"]
    lines = (tmp_path / "run" / "predictions.csv").read_text().splitlines()
    assert lines[0] == "where,text,label,prediction" and all(l.split(",")[-1] in ("blue", "green", "hello there")
                                                                 for l in lines[1:])
    result = CliRunner().invoke(app, ["generate", str(tmp_path / "run"), "--prompt", "what colour is the grass"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "green"
    wrong = CliRunner().invoke(app, ["generate", str(tmp_path / "run"), "--prompt", " "])
    assert wrong.exit_code == 2 and "prompt is empty" in wrong.output


def test_lora_adapter_loads_in_peft_with_the_same_logits(tiny_llama: Path, tmp_path: Path) -> None:
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    from tunelab.artifacts.model_io import load_run
    from tunelab.orchestration.train import train as run_training

    data = write_jsonl(tmp_path / "qa.jsonl", qa_rows(20))
    cfg = config_for(tiny_llama, data, tmp_path / "run", strategy={"name": "lora", "lora": {
        "target_modules": ["q_proj", "v_proj"], "rank": 4, "lr": 1e-2}}, train__epochs=2)
    run_training(cfg)
    run = load_run(tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "model" / "adapter_config.json").read_text())
    assert meta["task_type"] == "CAUSAL_LM"
    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    theirs = peft.PeftModel.from_pretrained(base, tmp_path / "run" / "model").eval()
    ids = torch.tensor([[1, 3, 4, 5, 6, 7, 2]])
    with torch.no_grad():
        assert torch.allclose(theirs(input_ids=ids).logits, run.model(input_ids=ids), atol=1e-5)
        fresh = AutoModelForCausalLM.from_pretrained(tiny_llama)(input_ids=ids).logits
        assert not torch.allclose(fresh, run.model(input_ids=ids), atol=1e-4)  # the adapter changed something


@pytest.mark.parametrize("over, needle", [
    ({"strategy": {"name": "head"}}, "tied to the input embeddings"),
    ({"strategy": {"name": "prompt_tuning"}}, "soft tokens shift"),
    ({"head": {"type": "linear"}}, "set head.type: native"),
])
def test_combinations_that_make_no_sense_are_config_errors(tmp_path: Path, over: dict, needle: str) -> None:
    with pytest.raises(TunelabError) as err:
        config_for(tmp_path, tmp_path / "d.jsonl", tmp_path / "o", **over)
    assert needle in str(err.value)


def test_default_early_stopping_metric_follows_the_task(tmp_path: Path) -> None:
    assert config_for(tmp_path, tmp_path / "d.jsonl", tmp_path / "o").early_stopping.metric == "loss"
