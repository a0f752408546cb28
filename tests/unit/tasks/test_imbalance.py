"""Class imbalance: the focal loss (gamma 0 is the weighted cross-entropy it extends), explicit class weights,
batches drawn by class (every class equally often, repeatable per seed and epoch), the metrics that show a
minority class (balanced accuracy, PR-AUC against scikit-learn), and the config rules that keep them where they
mean something."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import sentiment_rows, train_via_cli, write_csv
from tunelab.catalog import parse_config
from tunelab.data.encoding import EncodedSplit, batch_order
from tunelab.errors import ConfigError
from tunelab.evaluation.metrics import average_precision, classification_metrics
from tunelab.tasks.classification import class_weight_tensor
from tunelab.tasks.losses import FocalLoss, SigmoidFocalLoss

DATA = {"train": "x.csv"}


def test_focal_at_gamma_zero_is_the_weighted_cross_entropy_and_gamma_weighs_down_easy_rows() -> None:
    logits, targets = torch.randn(12, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2] * 4)
    weight = torch.tensor([1.0, 2.0, 5.0])
    assert torch.allclose(FocalLoss(0.0, weight)(logits, targets), nn.CrossEntropyLoss(weight=weight)(logits, targets))
    easy, hard = torch.tensor([[4.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 0.0]])
    zero = torch.tensor([0])
    ratio = lambda loss: float(loss(easy, zero) / loss(hard, zero))  # noqa: E731
    assert ratio(FocalLoss(2.0)) < ratio(FocalLoss(0.0)) / 10  # an easy row counts far less than under CE
    multi, labels = torch.randn(6, 4), (torch.rand(6, 4) > 0.5).float()
    assert torch.allclose(SigmoidFocalLoss(0.0)(multi, labels), nn.BCEWithLogitsLoss()(multi, labels))


def test_explicit_class_weights_name_labels_and_an_unknown_one_is_refused() -> None:
    assert class_weight_tensor({"spam": 4.0}, None, ["ham", "spam"]).tolist() == [1.0, 4.0]
    with pytest.raises(ConfigError, match="loss.class_weights: 'spma' is not a label"):
        class_weight_tensor({"spma": 4.0}, None, ["ham", "spam"])
    balanced = class_weight_tensor("balanced", torch.tensor([0] * 9 + [1]), ["ham", "spam"])
    assert balanced.tolist() == pytest.approx([10 / 18, 10 / 2])


def _split(targets: list[int]) -> EncodedSplit:
    return EncodedSplit(input_ids=[[1] * (3 + i % 5) for i in range(len(targets))], targets=torch.tensor(targets),
                        records=[])


@pytest.mark.parametrize("sampler, expected_share", [("balanced", 0.5), ("sqrt", 1 / (1 + 3))])
def test_batches_drawn_by_class_repeat_per_seed_and_epoch(sampler: str, expected_share: float) -> None:
    split = _split([0] * 900 + [1] * 100)  # 9 : 1; sqrt weighs the classes 30 : 10 in total
    split.sampler = sampler
    epoch = lambda e, seed=0: np.concatenate(batch_order(split, 16, shuffle=True, seed=seed, epoch=e))  # noqa: E731
    drawn = epoch(0)
    assert len(drawn) == len(split)  # an epoch keeps the split's size (steps and schedule unchanged)
    share = float((split.targets.numpy()[drawn] == 1).mean())
    assert share == pytest.approx(expected_share, abs=0.05)
    assert np.array_equal(drawn, epoch(0)) and not np.array_equal(drawn, epoch(1))
    assert not np.array_equal(drawn, epoch(0, seed=1))
    assert split.select(list(range(500))).sampler == sampler  # a data fraction keeps drawing by class


def test_balanced_accuracy_and_pr_auc_follow_scikit_learn() -> None:
    from sklearn.metrics import average_precision_score, balanced_accuracy_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    scores = rng.dirichlet(np.ones(3), 60)
    pred = scores.argmax(1)
    metrics = classification_metrics(y, pred, ["a", "b", "c"], scores=scores)
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    for j, name in enumerate("abc"):
        assert metrics["per_class"][name]["pr_auc"] == pytest.approx(average_precision_score(y == j, scores[:, j]))
    assert average_precision(np.array([1, 0, 1, 0]), np.array([0.5, 0.5, 0.5, 0.1])) == pytest.approx(
        average_precision_score([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.1]))  # ties count as one threshold


@pytest.mark.parametrize("task, loss, data, line", [
    ("regression", {"name": "focal"}, {}, "loss.name: focal applies to tasks classification"),
    ("multilabel", {}, {"sampler": "balanced"}, "data.sampler: balanced draws by class, and task multilabel"),
    ("classification", {"name": "focal", "focal_alpha": 0.25}, {}, "loss.focal_alpha: multilabel focal loss only"),
    ("classification", {"name": "focal", "label_smoothing": 0.1}, {}, "loss.label_smoothing: not with loss.name: focal"),
    ("classification", {"class_weights": {"a": 0}}, {}, "every class weight must be > 0"),
])
def test_imbalance_settings_are_refused_where_they_mean_nothing(task: str, loss: dict, data: dict, line: str) -> None:
    with pytest.raises(ConfigError, match=line):
        parse_config({"task": task, "data": {**DATA, **data}, "loss": loss})


def test_the_tuned_threshold_maximises_f1_halfway_to_the_next_score() -> None:
    from tunelab.evaluation.thresholds import best_f1_threshold

    y, s = np.array([1, 1, 0, 1, 0, 0]), np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.1])
    threshold, f1 = best_f1_threshold(y, s)  # the top 4 taken: 3 of 3 positives in 4, F1 = 6 / 7
    assert threshold == pytest.approx(0.45) and f1 == pytest.approx(6 / 7)
    assert best_f1_threshold(np.zeros(3, dtype=int), s[:3]) == (0.5, 0.0)


def test_an_imbalanced_run_tunes_its_threshold_on_validation_for_predict(tiny_bert: Path, tmp_path: Path) -> None:
    """Focal loss, balanced batches and a tuned threshold in one run: the minority metrics are reported, the
    threshold is saved and `predict` decides at it."""
    from typer.testing import CliRunner

    from tunelab.cli import app

    rows = [r for i, r in enumerate(sentiment_rows(300)) if r["label"] == "pos" or i % 6 == 1]  # 150 pos : 25 neg
    config = {"model": str(tiny_bert), "data": {"train": str(write_csv(tmp_path / "t.csv", rows)), "max_length": 16,
                                                "validation_split": 0.2, "sampler": "balanced"},
              "loss": {"name": "focal", "focal_gamma": 2.0, "class_weights": {"neg": 2.0}},
              "thresholds": {"tune": True}, "optim": {"lr": 3e-3}, "train": {"epochs": 2, "batch_size": 8},
              "output": str(tmp_path / "run")}
    train_via_cli(config, folder=tmp_path)
    run = tmp_path / "run"
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert 0.0 <= metrics["balanced_accuracy"] <= 1.0 and 0.0 < metrics["macro_pr_auc"] <= 1.0
    assert {"pr_auc", "recall"} <= set(metrics["per_class"]["neg"])
    chosen = json.loads((run / "thresholds.json").read_text())
    (name, threshold), = chosen["thresholds"].items()
    assert name == "neg" and 0.0 < threshold < 1.0  # the rarer class
    assert chosen["validation_f1"]["neg"]["tuned"] >= chosen["validation_f1"]["neg"]["default"]
    assert metrics["thresholds"]["thresholds"] == {"neg": threshold}
    inputs = write_csv(tmp_path / "in.csv", [{"text": r["text"]} for r in rows[:40]])
    out = tmp_path / "p.jsonl"
    result = CliRunner().invoke(app, ["predict", str(run), "--input", str(inputs), "--output", str(out)])
    assert result.exit_code == 0, result.output
    for line in out.read_text().splitlines():
        row = json.loads(line)
        assert (row["prediction"] == "neg") == (row["probabilities"]["neg"] >= threshold), row


def test_thresholds_are_refused_before_training_where_they_cannot_be_tuned(tiny_bert: Path, tmp_path: Path) -> None:
    from tunelab.orchestration.prepare import prepare

    with pytest.raises(ConfigError, match="thresholds.tune: binary classification and multilabel only"):
        parse_config({"task": "regression", "data": DATA, "thresholds": {"tune": True}})
    rows = [{"text": r["text"], "label": ["a", "b", "c"][i % 3]} for i, r in enumerate(sentiment_rows(60))]
    config = parse_config({"model": str(tiny_bert), "data": {"train": str(write_csv(tmp_path / "t.csv", rows)),
                                                             "max_length": 16}, "thresholds": {"tune": True},
                           "output": str(tmp_path / "run")})
    from tunelab.artifacts.rundir import RunDirectory
    from tunelab.orchestration.run_one import run_one

    with pytest.raises(ConfigError, match="a threshold is tuned for two classes; this data has 3"):
        run_one(prepare(config), run_dir=RunDirectory(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
