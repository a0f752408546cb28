"""Task mlm (continued pre-training of an encoder) on the tiny random BERT: the head it builds, the loss against a
hand computation, perplexity falling on repeated text, the saved backbone loaded by transformers and trained on by
a classification run, LoRA merged into it, and the configs it refuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from tests.conftest import sentiment_rows, write_csv
from tunelab.catalog import parse_config
from tunelab.config.schema import HeadConfig, ModelConfig
from tunelab.data.corpus import read_corpus
from tunelab.data.encoding import IGNORE_INDEX, iterate_batches
from tunelab.errors import ConfigError, ModelError
from tunelab.tasks.mlm import MaskedLMTask

TASK = MaskedLMTask()
SENTENCE = "the movie was very good and the acting was really great"


def corpus(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def config_for(model: Path, text_file: Path, out: Path, **over) -> dict:
    raw = {"model": str(model), "task": "mlm", "data": {"train": str(text_file), "max_length": 16, "validation_split": 0.2,
                                                         "test_split": 0.2},
           "strategy": {"name": "full"}, "optim": {"lr": 3e-3}, "train": {"epochs": 3, "batch_size": 8, "seed": 0},
           "output": str(out)}
    raw.update(over)
    return raw


@pytest.fixture(scope="module")
def sentence_encoder(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT saved as a sentence encoder is: a bare BertModel with its pooler (no MLM head), and
    sentence-transformers' files declaring mean pooling + normalisation."""
    from transformers import AutoConfig, BertModel

    path = tmp_path_factory.mktemp("sentence-encoder")
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_bert / name, path / name)
    torch.manual_seed(1)
    BertModel(AutoConfig.from_pretrained(tiny_bert)).save_pretrained(path, safe_serialization=True)
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32,
                                                                "pooling_mode_mean_tokens": True}))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    return path


def test_the_head_is_built_tied_and_the_run_is_told(tiny_bert: Path) -> None:
    model = TASK.build_model(ModelConfig(name=str(tiny_bert)), HeadConfig(), [], tiny_bert)
    network = model.network
    assert network.get_output_embeddings().weight is network.get_input_embeddings().weight
    assert torch.equal(network.cls.predictions.transform.LayerNorm.weight, torch.ones(32))
    assert float(network.cls.predictions.bias.detach().abs().sum()) == 0.0
    assert 0.01 < float(network.cls.predictions.transform.dense.weight.detach().std()) < 0.03  # normal(0, 0.02)
    (note,) = model.notes
    assert "MLM head" in note and "cls.predictions.transform.dense" in note and "tied to the word embeddings" in note


def test_masked_token_loss_equals_a_hand_computation(tiny_bert: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    records = read_corpus(corpus(tmp_path / "c.txt", [r["text"] for r in sentiment_rows(6)]), text_column="text")
    split = TASK.encode(records, tokenizer, 16, [])
    batch = next(iter(iterate_batches(split, 6, pad_id=0, shuffle=False)))
    torch.manual_seed(0)
    model = TASK.build_model(ModelConfig(name=str(tiny_bert)), HeadConfig(), [], tiny_bert).eval()
    with torch.no_grad():
        logits = model(**batch.inputs)                                           # (M, V): masked positions only
        every = model.network(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits  # (B, T, V)
    chosen = batch.targets != IGNORE_INDEX
    by_hand = [-F.log_softmax(every[b, t], -1)[batch.targets[b, t]] for b, t in chosen.nonzero().tolist()]
    expected = torch.stack(by_hand).mean()
    loss = TASK.loss_fn(parse_config(config_for(tiny_bert, tmp_path / "c.txt", tmp_path)).loss, split, [])
    torch.testing.assert_close(loss(logits, batch.targets), expected)
    stats = TASK.reduce_outputs(logits, batch)                                   # (B, 3)
    assert stats[:, 1].tolist() == chosen.sum(1).float().tolist()
    torch.testing.assert_close(stats[:, 0].sum(), torch.stack(by_hand).sum())
    correct = sum(int(every[b, t].argmax() == batch.targets[b, t]) for b, t in chosen.nonzero().tolist())
    assert stats[:, 2].sum().item() == correct


def test_perplexity_falls_on_repeated_text_and_runs_repeat(tiny_bert: Path, tmp_path: Path) -> None:
    from tunelab.inference.predict import predict_split
    from tunelab.orchestration.prepare import prepare
    from tunelab.orchestration.train import train as run_training

    data = corpus(tmp_path / "c.txt", [SENTENCE] * 60)
    config = parse_config(config_for(tiny_bert, data, tmp_path / "run", train={"epochs": 4, "batch_size": 8, "seed": 0,
                                                                               "precision": "fp32"}))
    prepared = prepare(config)
    base = prepared.build_model(config)
    test = prepared.encoded["test"]
    predictions, _ = predict_split(base, test, TASK, [], batch_size=8, pad_id=0, device=torch.device("cpu"))
    before = TASK.metrics(test, predictions, [])
    after = run_training(config).test_metrics
    assert after["masked_tokens"] == before["masked_tokens"] == 12 * round(0.15 * 11)  # the same fixed masks
    assert after["perplexity"] < before["perplexity"] / 2 and after["masked_accuracy"] > before["masked_accuracy"]
    assert after["base_perplexity"] == pytest.approx(before["perplexity"])         # the run scores the base too
    again = run_training(config, out=str(tmp_path / "again"))
    assert again.test_metrics["loss"] == after["loss"]                              # masks and training repeat
    for name in ("model.safetensors",):
        from safetensors.torch import load_file

        ours, theirs = load_file(str(tmp_path / "run" / "model" / name)), load_file(str(tmp_path / "again" / "model" / name))
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_the_saved_backbone_loads_with_transformers_and_trains_a_classifier(sentence_encoder: Path,
                                                                             tmp_path: Path) -> None:
    from transformers import AutoModel, AutoModelForMaskedLM

    from tunelab.artifacts.model_io import load_run
    from tunelab.models.loading import hash_model_dir
    from tunelab.orchestration.prepare import prepare
    from tunelab.orchestration.train import train as run_training

    rows = sentiment_rows(80)
    data = corpus(tmp_path / "c.txt", [r["text"] for r in rows])
    run_training(parse_config(config_for(sentence_encoder, data, tmp_path / "mlm", train={"epochs": 1, "seed": 0})))
    backbone = tmp_path / "mlm" / "model"
    assert {"modules.json", "1_Pooling", "sentence_bert_config.json", "config.json", "model.safetensors"} <= \
        {p.name for p in backbone.iterdir()}
    masked_lm, info = AutoModelForMaskedLM.from_pretrained(backbone, output_loading_info=True)
    assert not info["missing_keys"]
    ids = torch.tensor([[2, 10, 11, 4, 12, 3]])
    with torch.no_grad():
        torch.testing.assert_close(masked_lm.eval()(input_ids=ids).logits, load_run(tmp_path / "mlm").model(input_ids=ids))
    bare, info = AutoModel.from_pretrained(backbone, output_loading_info=True)
    base = AutoModel.from_pretrained(sentence_encoder)
    assert not info["missing_keys"] and torch.equal(bare.pooler.dense.weight, base.pooler.dense.weight)  # carried
    assert not torch.equal(bare.encoder.layer[0].attention.self.query.weight, base.encoder.layer[0].attention.self.query.weight)

    labelled = write_csv(tmp_path / "l.csv", rows)
    later = {"model": str(backbone), "data": {"train": str(labelled), "max_length": 16}, "output": str(tmp_path / "cls"),
             "optim": {"lr": 3e-3}, "train": {"epochs": 2, "batch_size": 8, "seed": 0}}
    summary = run_training(parse_config(later))
    assert 0.0 <= summary.test_metrics["macro_f1"] <= 1.0
    manifest = json.loads((tmp_path / "cls" / "manifest.json").read_text())
    assert manifest["base_model"] == str(backbone) and manifest["base_model_sha256"] == hash_model_dir(backbone)
    head = prepare(parse_config({**later, "strategy": {"name": "head"}})).config.head
    assert (head.type, head.pooling, head.normalize) == ("linear", "mean", True)  # the copied pooling is read


def test_lora_is_merged_into_the_saved_backbone(tiny_bert: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModelForMaskedLM

    from tunelab.orchestration.train import train as run_training

    data = corpus(tmp_path / "c.txt", [SENTENCE] * 40)
    lora = {"name": "lora", "lora": {"target_modules": ["query", "value"], "rank": 4, "lr": 1e-2}}
    run_training(parse_config(config_for(tiny_bert, data, tmp_path / "run", strategy=lora)))
    saved = tmp_path / "run" / "model"
    assert not (saved / "adapter_config.json").exists()
    weights, base = load_file(str(saved / "model.safetensors")), load_file(str(tiny_bert / "model.safetensors"))
    assert not any("lora" in k for k in weights)
    layer = "encoder.layer.0.attention.self"
    assert not torch.equal(weights[f"bert.{layer}.query.weight"], base[f"{layer}.query.weight"])  # merged update
    assert torch.equal(weights[f"bert.{layer}.key.weight"], base[f"{layer}.key.weight"])           # not adapted
    assert AutoModelForMaskedLM.from_pretrained(saved) is not None


@pytest.mark.parametrize("over, needle", [
    ({"data": {"train": "c.txt", "label_column": "sentiment"}}, "data.label_column: task mlm learns from text alone"),
    ({"strategy": {"name": "head"}}, "strategy.name: head with task mlm"),
    ({"strategy": {"name": "prompt_tuning"}}, "no weight absorbs"),
    ({"head": {"type": "linear"}}, "head.type: task mlm trains the model's own"),
    ({"data": {"train": "c.txt", "augment": {"span_mask": 0.1}}}, "data.augment"),
    ({"loss": {"class_weights": "balanced"}}, "loss.class_weights has no meaning for task mlm"),
])
def test_configs_that_make_no_sense_are_refused(over: dict, needle: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(config_for(tmp_path, tmp_path / "c.txt", tmp_path / "o", **over))
    assert needle in str(err.value)


def test_an_mlm_task_on_a_decoder_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    from tests.unit.tasks.test_instruction import make_tiny_llama
    from tunelab.orchestration.train import train as run_training

    decoder = make_tiny_llama(tmp_path / "llama")
    data = corpus(tmp_path / "c.txt", ["a long story about cats"] * 20)
    with pytest.raises(ModelError) as err:
        run_training(parse_config(config_for(decoder, data, tmp_path / "o")))
    assert "has no mask token" in str(err.value) and "task: causal_lm" in str(err.value)
    assert not (tmp_path / "o").exists()
