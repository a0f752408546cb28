"""Token classification on the tiny BERT: sub-token alignment, every head and a PEFT method through the
CLI, word-level predictions written back, and the saved run predicting what the trained model did."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import train_via_cli
from tunelab.cli import app
from tunelab.data.encoding import IGNORE_INDEX, collate
from tunelab.data.records import Record
from tunelab.serving.predict import predict_rows
from tunelab.tasks import get_task

runner = CliRunner()
TAG_OF = {"good": "B-POS", "great": "B-POS", "bad": "B-NEG", "awful": "B-NEG", "movie": "B-OBJ", "film": "B-OBJ"}


def ner_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    words = ["the", "a", "was", "is", "very", "really", "and", "plot", *TAG_OF]
    rows = []
    for _ in range(n):
        tokens = rng.sample(words, 6)
        tags = [TAG_OF.get(w, "O") for w in tokens]
        if tokens[-1] == "very":  # a two-word entity now and then: "very" continues the previous one
            tags[-1] = "O"
        rows.append({"tokens": tokens, "tags": tags})
    return rows


def subword_tokenizer():
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "play", "##ing", "##ed", "go"]
    return BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)


def test_first_subtoken_carries_the_tag_and_padding_is_ignored() -> None:
    task = get_task("token_classification")
    records = [Record(text="playing go", label=("B-X", "O"), where="r1", words=("playing", "go")),
               Record(text="go", label=("B-X",), where="r2", words=("go",))]
    split = task.encode(records, subword_tokenizer(), 16, ["B-X", "O"])
    assert split.token_targets == [[IGNORE_INDEX, 0, IGNORE_INDEX, 1, IGNORE_INDEX], [IGNORE_INDEX, 0, IGNORE_INDEX]]
    batch = collate(split, [0, 1], pad_id=0)
    assert batch.targets.tolist()[1] == [IGNORE_INDEX, 0, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
    import torch

    logits = [torch.tensor([[0., 0.], [0., 9.], [9., 0.], [9., 0.], [0., 0.]]), torch.tensor([[0., 0.], [9., 0.], [0., 0.]])]
    predicted = task.predict(logits, ["B-X", "O"], split)
    assert predicted.values == [("O", "B-X"), ("B-X",)]  # word 0 read from its first sub-token only


def test_truncated_words_are_predicted_o_and_counted() -> None:
    task = get_task("token_classification")
    records = [Record(text="go go go go", label=("B-X", "O", "B-X", "O"), where="r", words=("go",) * 4)]
    split = task.encode(records, subword_tokenizer(), 4, ["B-X", "O"])  # [CLS] go go [SEP]
    import torch

    predicted = task.predict([torch.tensor([[0., 0.], [9., 0.], [0., 9.], [0., 0.]])], ["B-X", "O"], split)
    assert predicted.values == [("B-X", "O", "O", "O")]
    assert task.metrics(split, predicted, ["B-X", "O"])["truncated_words"] == 2


CASES = {"native-full": ({"type": "native"}, {"name": "full"}), "linear-full": ({"type": "linear"}, {"name": "full"}),
         "native-lora": ({"type": "native"}, {"name": "lora"}), "native-bitfit": ({"type": "native"}, {"name": "bitfit"}),
         "native-partial": ({"type": "native"}, {"name": "partial", "freeze_blocks": 1})}


@pytest.mark.parametrize("case", list(CASES))
def test_token_task_trains_saves_and_predicts(case: str, tiny_bert: Path, tmp_path: Path) -> None:
    head, strategy = CASES[case]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in ner_rows(60)), encoding="utf-8")
    raw = {"model": str(tiny_bert), "task": "token_classification", "head": head, "strategy": strategy,
           "data": {"train": str(train), "max_length": 16}, "optim": {"lr": 1e-2},
           "train": {"epochs": 3, "batch_size": 8}, "early_stopping": {"metric": "entity_f1"},
           "output": str(tmp_path / "run")}
    train_via_cli(raw, folder=tmp_path)
    run = tmp_path / "run"
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert {"entity_f1", "token_accuracy", "baseline_entity_f1", "per_type"} <= set(metrics)
    if case == "native-full":
        assert metrics["entity_f1"] > 0.5  # the tags follow the words: learnable in a few epochs
    saved = list(csv.DictReader((run / "predictions.csv").open(encoding="utf-8")))
    assert all(len(r["prediction"].split()) == len(r["text"].split()) for r in saved)
    again = predict_rows(run, texts=[r["text"] for r in saved])
    assert [" ".join(r["prediction"]) for r in again] == [r["prediction"] for r in saved]
    out = tmp_path / "tags.csv"  # `predict --output x.csv` writes tags as the run's predictions.csv does
    assert runner.invoke(app, ["predict", str(run), "--input", str(train), "--output", str(out)]).exit_code == 0
    assert all(len(r["prediction"].split()) == len(r["text"].split()) for r in csv.DictReader(out.open(encoding="utf-8")))
