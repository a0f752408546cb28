"""Task causal_lm (continued pre-training of a decoder LM) on a tiny random Llama: documents cut into chunks, the
next-token loss against a hand computation, perplexity falling on repeated text, the saved backbone loaded by
transformers (LoRA merged into it), and the refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from tests.unit.tasks.test_instruction import make_tiny_llama
from tunelab.catalog import parse_config
from tunelab.config.schema import HeadConfig, ModelConfig
from tunelab.data.corpus import read_corpus
from tunelab.data.encoding import iterate_batches
from tunelab.errors import ConfigError, ModelError
from tunelab.tasks.causal_lm import CausalLMTask

TASK = CausalLMTask()
STORY = "a long story about cats and dogs"


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def corpus(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def config_for(model: Path, text_file: Path, out: Path, **over) -> dict:
    raw = {"model": str(model), "task": "causal_lm",
           "data": {"train": str(text_file), "max_length": 8, "validation_split": 0.2, "test_split": 0.2},
           "strategy": {"name": "full"}, "optim": {"lr": 3e-3},
           "train": {"epochs": 3, "batch_size": 8, "seed": 0, "precision": "fp32"}, "output": str(out)}
    raw.update(over)
    return raw


def test_documents_are_cut_into_chunks_of_max_length(tiny_llama: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    long = " ".join([STORY] * 3)                                         # 21 tokens: chunks of 8, 8 and 5
    records = read_corpus(corpus(tmp_path / "c.txt", [STORY, long, "cats dogs cats dogs cats dogs cats dogs hi"]),
                          text_column="text")
    split = TASK.encode(records, tokenizer, 8, [])
    assert [len(ids) for ids in split.input_ids] == [7, 8, 8, 5, 8]   # the 9th token of the last is left alone
    assert split.records[0] is records[0]                              # a document of one chunk keeps its record
    assert [r.where.split(":")[-1] for r in split.records[1:4]] == ["line 2 tokens 1-8", "line 2 tokens 9-16",
                                                                    "line 2 tokens 17-21"]
    assert split.records[4].where.endswith("line 3 tokens 1-8")
    assert split.token_targets == split.input_ids and split.targets_in_inputs
    unlabelled = TASK.encode(records, tokenizer, 8, [], with_targets=False)  # prediction input: one per text
    assert [len(ids) for ids in unlabelled.input_ids] == [7, 8, 8] and unlabelled.records == records


def test_next_token_loss_equals_a_hand_computation(tiny_llama: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    records = read_corpus(corpus(tmp_path / "c.txt", [STORY, "the sky is blue", "hello there"]), text_column="text")
    split = TASK.encode(records, tokenizer, 16, [])
    batch = next(iter(iterate_batches(split, 3, pad_id=tokenizer.pad_token_id, shuffle=False)))
    torch.manual_seed(0)
    model = TASK.build_model(ModelConfig(name=str(tiny_llama)), HeadConfig(), [], tiny_llama).eval()
    with torch.no_grad():
        logits = model(**batch.inputs)
        every = model.network(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits  # (B, T, V)
    by_hand = [-F.log_softmax(every[b, t], -1)[batch.input_ids[b, t + 1]]
               for b, ids in enumerate(split.input_ids) for t in range(len(ids) - 1)]
    loss = TASK.loss_fn(parse_config(config_for(tiny_llama, tmp_path / "c.txt", tmp_path)).loss, split, [])
    torch.testing.assert_close(loss(logits, batch.targets), torch.stack(by_hand).mean())
    stats = TASK.reduce_outputs(logits, batch)
    assert stats[:, 1].tolist() == [len(ids) - 1 for ids in split.input_ids]


def test_perplexity_falls_on_repeated_text_and_the_backbone_loads(tiny_llama: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from tunelab.artifacts.model_io import load_run
    from tunelab.orchestration.train import train as run_training

    data = corpus(tmp_path / "c.txt", [" ".join([STORY] * 2)] * 40)
    config = parse_config(config_for(tiny_llama, data, tmp_path / "run"))
    before = base_metrics(config)
    after = run_training(config).test_metrics
    assert after["target_tokens"] == before["target_tokens"] and after["perplexity"] < before["perplexity"] / 2
    assert after["base_perplexity"] == pytest.approx(before["perplexity"])
    history = [row["perplexity"] for row in summary_history(tmp_path / "run")]
    assert history == sorted(history, reverse=True)
    ids = torch.tensor([[3, 4, 5, 6, 7, 8]])
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model").eval()
    with torch.no_grad():
        torch.testing.assert_close(saved(input_ids=ids).logits, load_run(tmp_path / "run").model(input_ids=ids))

    lora = {"name": "lora", "lora": {"target_modules": ["q_proj", "v_proj"], "rank": 4, "lr": 1e-2}}
    run_training(parse_config(config_for(tiny_llama, data, tmp_path / "lora", strategy=lora)))
    assert not (tmp_path / "lora" / "model" / "adapter_config.json").exists()
    merged, base = (AutoModelForCausalLM.from_pretrained(p) for p in (tmp_path / "lora" / "model", tiny_llama))
    layer, base_layer = merged.model.layers[0].self_attn, base.model.layers[0].self_attn
    assert not torch.equal(layer.q_proj.weight, base_layer.q_proj.weight)   # the update merged in
    assert torch.equal(layer.k_proj.weight, base_layer.k_proj.weight)


def base_metrics(config) -> dict:
    """The test split's scores of the model before training, through the run's own encoding and prediction."""
    from tunelab.inference.predict import predict_split
    from tunelab.orchestration.prepare import prepare

    prepared = prepare(config)
    test = prepared.encoded["test"]
    predictions, _ = predict_split(prepared.build_model(config), test, TASK, [], batch_size=8,
                                   pad_id=prepared.tokenizer.pad_token_id, device=torch.device("cpu"))
    return TASK.metrics(test, predictions, [])


def summary_history(run: Path) -> list[dict]:
    import json

    return json.loads((run / "manifest.json").read_text())["history"]


def test_refusals(tiny_bert: Path, tmp_path: Path) -> None:
    from tunelab.orchestration.train import train as run_training

    with pytest.raises(ConfigError, match="data.train_fraction: task causal_lm cuts documents into chunks"):
        parse_config(config_for(tmp_path, tmp_path / "c.txt", tmp_path / "o",
                                data={"train": "c.txt", "train_fraction": 0.5}))
    with pytest.raises(ConfigError, match="strategy.name: houlsby with task causal_lm"):
        parse_config(config_for(tmp_path, tmp_path / "c.txt", tmp_path / "o", strategy={"name": "houlsby"}))
    data = corpus(tmp_path / "c.txt", ["the movie was good"] * 20)
    with pytest.raises(ModelError) as err:  # an encoder: transformers would give it a causal head
        run_training(parse_config(config_for(tiny_bert, data, tmp_path / "o")))
    assert "pre-trained as a masked LM" in str(err.value) and "task: mlm" in str(err.value)
