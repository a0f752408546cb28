"""A loaded run predicts in the precision its test split was scored in, and the server's model thread keeps
autocast's bf16 copies of the weights between batches."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import train_via_cli
from tunelab.inference import precision
from tunelab.inference.predict import predict_split
from tunelab.serving.backend import keep_cast_weights, text_records
from tunelab.serving.predictor import load_predictor

TEXTS = ["good great movie", "awful plot and sad acting", "the film was fine", "poor story"]


@pytest.fixture(scope="module")
def bf16_run(tiny_bert: Path, sentiment_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run whose config says it was trained (and its test split scored) in bf16."""
    folder = tmp_path_factory.mktemp("bf16")
    train_via_cli({"model": str(tiny_bert), "task": "classification", "data": {"train": str(sentiment_csv),
                   "max_length": 16}, "train": {"epochs": 1, "batch_size": 8, "precision": "fp32"},
                   "output": str(folder / "run")}, folder=folder)
    config = folder / "run" / "config.yaml"
    raw = yaml.safe_load(config.read_text())
    raw["train"]["precision"] = "bf16"
    config.write_text(yaml.safe_dump(raw))
    return folder / "run"


def _scores(predictor, precision_name: str) -> torch.Tensor:
    split = predictor.encode(text_records(TEXTS, "classification", "t"))
    predictions, _ = predict_split(predictor.model, split, predictor.task, predictor.label_names, batch_size=8,
                                   pad_id=predictor.pad_id, device=torch.device("cpu"), precision=precision_name)
    return torch.as_tensor(predictions.scores)


def test_a_bf16_run_predicts_in_bf16_where_the_cpu_has_it(bf16_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    predictor = load_predictor(bf16_run)
    assert predictor.precision == "bf16"
    served = torch.as_tensor(predictor.predict(text_records(TEXTS, "classification", "t")).scores)
    assert torch.equal(served, _scores(predictor, "bf16"))  # exactly what its test split was scored with
    assert not torch.allclose(served, _scores(predictor, "fp32"), atol=1e-6)


def test_without_native_bf16_the_run_predicts_in_fp32(bf16_run: Path) -> None:
    assert load_predictor(bf16_run).precision == "fp32"  # conftest: no native bf16 in this process


def test_the_model_thread_keeps_autocast_casts_between_calls() -> None:
    """Inside keep_cast_weights' region an autocast region's exit leaves the cast cache alone (nesting stays
    above 0), and autocast itself stays off, so fp32 models stay fp32."""
    seen: dict[str, object] = {}

    def worker() -> None:
        keep_cast_weights()
        seen["enabled"] = torch.is_autocast_enabled("cpu")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pass
        seen["nesting after a region"] = torch.autocast_increment_nesting() - 1
        torch.autocast_decrement_nesting()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == {"enabled": False, "nesting after a region": 1}
