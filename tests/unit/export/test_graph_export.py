"""`tunelab export --format onnx|torchscript [--quantize int8]`: every text task, LoRA merged, a non-mergeable
adapter in the graph and an image run export with parity checked in their own runtime, predict the run's
predictions from the export directory, and a failed check writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import train_via_cli
from tunelab.errors import TunelabError
from tunelab.export import export_run
from tunelab.serving.predict import predict_rows
from tunelab.serving.predictor import load_predictor

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

FORMATS = {"onnx": ("onnx", None), "torchscript": ("torchscript", None), "int8": ("onnx", "int8")}


def _rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _task_data(task: str, folder: Path, sentiment_csv: Path) -> tuple[Path, str]:
    from tests.unit.tasks.test_task_runs import regression_rows
    from tests.unit.tasks.test_token_classification import ner_rows

    if task == "token_classification":
        return _rows(folder / "ner.jsonl", ner_rows(60)), "tags"
    if task == "regression":
        return _rows(folder / "reg.jsonl", regression_rows(60)), "score"
    return sentiment_csv, "label"


@pytest.fixture(scope="module")
def task_runs(tiny_bert: Path, sentiment_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny trained run per text task (regression with a tunelab MLP head), trained once for the module."""
    runs = {}
    for task, head in (("classification", "native"), ("token_classification", "native"), ("regression", "mlp")):
        folder = tmp_path_factory.mktemp(task)
        train, label = _task_data(task, folder, sentiment_csv)
        data = {"train": str(train), "max_length": 16, **({"label_column": label} if task == "regression" else {})}
        train_via_cli({"model": str(tiny_bert), "task": task, "head": {"type": head, "hidden_size": 16}, "data": data,
                       "optim": {"lr": 3e-3}, "train": {"epochs": 1, "batch_size": 8, "precision": "fp32"},
                       "output": str(folder / "run")}, folder=folder)
        runs[task] = folder / "run"
    return runs


def _check_export(run_dir: Path, out: Path, kind: str) -> dict:
    fmt, quantize = FORMATS[kind]
    meta = export_run(run_dir, out, format=fmt, quantize=quantize)
    parity = meta["parity"]
    assert parity["passed"] and parity["data"].startswith("test split")
    if quantize:
        assert parity["decision_agreement"] >= 0.99 and "metric_delta" in parity
    else:
        assert parity["max_abs_logit_diff"] <= 1e-4
    written = json.loads((out / "export.json").read_text())
    assert written["format"] == fmt and written["quantize"] == quantize and written["versions"]["torch"]
    assert (written["opset"] or 0) >= (17 if fmt == "onnx" else 0)
    assert {"labels.json", "config.yaml", "export.json", written["model_file"]} <= {p.name for p in out.iterdir()}
    return meta


@pytest.mark.parametrize("kind", list(FORMATS))
@pytest.mark.parametrize("task", ["classification", "token_classification", "regression"])
def test_task_exports_and_predicts_like_the_run(task: str, kind: str, task_runs: dict[str, Path], tmp_path: Path) -> None:
    run = task_runs[task]
    out = tmp_path / "export"
    _check_export(run, out, kind)
    texts = ["good film and the plot", "the movie was bad", "good good the film"]
    ours, theirs = predict_rows(out, texts=texts), predict_rows(run, texts=texts)
    assert [set(r) for r in ours] == [set(r) for r in theirs]  # the same table, whatever the backend
    if kind == "int8":
        return
    for mine, want in zip(ours, theirs):
        if task == "regression":
            assert mine["prediction"] == pytest.approx(want["prediction"], abs=1e-4)
        else:
            assert mine["prediction"] == want["prediction"]
        for name, value in want.get("probabilities", {}).items():
            assert mine["probabilities"][name] == pytest.approx(value, abs=1e-4)


@pytest.mark.parametrize("kind", ["onnx", "torchscript", "int8"])
@pytest.mark.parametrize("strategy, adapter", [({"name": "lora", "lora": {"rank": 4}}, "merged (lora)"),
                                               ({"name": "houlsby"}, "in the graph (houlsby)")])
def test_peft_runs_export_merged_or_with_the_adapter(strategy: dict, adapter: str, kind: str, adapter_run,
                                                     tmp_path: Path) -> None:
    if kind == "int8" and strategy["name"] == "houlsby":
        pytest.skip("one int8 PEFT case is enough")
    run = adapter_run(strategy)
    meta = _check_export(run, tmp_path / "export", kind)
    assert meta["adapter"] == adapter
    texts = ["good movie", "bad film was sad"]
    if kind != "int8":
        for mine, want in zip(predict_rows(tmp_path / "export", texts=texts), predict_rows(run, texts=texts)):
            assert mine["probabilities"] == pytest.approx(want["probabilities"], abs=1e-4)


def test_image_run_exports_to_onnx(tiny_vision_dir: Path, tmp_path: Path) -> None:
    from tunelab.data.images import load_digits_records
    from tunelab.serving.predict import predict_records

    train_via_cli({"model": str(tiny_vision_dir), "task": "image_classification", "head": {"type": "linear"},
                   "data": {"builtin": "digits", "limit": 60}, "train": {"epochs": 1, "batch_size": 16, "precision": "fp32"},
                   "output": str(tmp_path / "run")}, folder=tmp_path)
    _check_export(tmp_path / "run", tmp_path / "export", "onnx")
    records = load_digits_records()[:5]
    ours, theirs = predict_records(tmp_path / "export", records), predict_records(tmp_path / "run", records)
    assert ours.values == theirs.values and abs(ours.scores - theirs.scores).max() < 1e-4


@pytest.mark.parametrize("kind, shift, message", [("onnx", 1e-3, r"largest \|Δlogit\| is 0\.001"),
                                                  ("int8", None, r"decides as the PyTorch run on 0\.0%")])
def test_failed_parity_writes_nothing(kind: str, shift, message: str, task_runs: dict[str, Path], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab.inference.exported import ExportedModel

    real = ExportedModel.__call__

    def wrong(self, *args, **inputs):
        logits = real(self, *args, **inputs)
        return logits + shift if shift is not None else -logits  # -logits: every argmax flips (2 classes)

    monkeypatch.setattr(ExportedModel, "__call__", wrong)
    out = tmp_path / "export"
    fmt, quantize = FORMATS[kind]
    with pytest.raises(TunelabError, match=message) as caught:
        export_run(task_runs["classification"], out, format=fmt, quantize=quantize)
    assert "nothing was written" in str(caught.value) and "row " in str(caught.value)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_cli_merge_alias_and_refusals(adapter_run, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tunelab.cli import app

    run = adapter_run({"name": "lora", "lora": {"rank": 4}})
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(run), "--merge", "--out", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "merged" / "export.json").read_text())["format"] == "merged"
    assert load_predictor(tmp_path / "merged").backend == "merged"
    texts = ["good movie"]
    assert predict_rows(tmp_path / "merged", texts=texts)[0]["probabilities"] == pytest.approx(
        predict_rows(run, texts=texts)[0]["probabilities"], abs=1e-4)
    refused = runner.invoke(app, ["export", str(run), "--format", "torchscript", "--quantize", "int8", "--out",
                                  str(tmp_path / "x")])
    assert refused.exit_code == 2 and "--format onnx only" in refused.output
    assert runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "y")]).exit_code == 2


def test_onnx_encoder_graph_uses_eager_attention_and_int8_scales_per_channel(task_runs: dict[str, Path],
                                                                              tmp_path: Path) -> None:
    """SDPA exports with an IsNaN / Where guard over every attention score (a third of onnxruntime's time on
    MiniLM), so the encoder is exported with eager attention, and the loaded run keeps SDPA afterwards;
    int8 weights get one scale per output channel (per-tensor scales flipped 2.5% of BBC decisions)."""
    import onnx

    from tunelab.artifacts.model_io import load_run
    from tunelab.export import graph
    from tunelab.tasks.registry import get_task

    run = task_runs["classification"]
    export_run(run, tmp_path / "fp32", format="onnx")
    ops = {node.op_type for node in onnx.load(str(tmp_path / "fp32" / "model.onnx")).graph.node}
    assert "IsNaN" not in ops and "Softmax" in ops
    model, _ = graph.graph_model(run, get_task(load_run(run).config.task))
    backbone = next(m for m in model.modules() if hasattr(m, "set_attn_implementation"))
    graph.to_onnx(model, graph.signature(load_run(run), get_task("classification"), model), tmp_path / "again.onnx")
    assert backbone.config._attn_implementation == "sdpa"
    export_run(run, tmp_path / "int8", format="onnx", quantize="int8")
    int8 = onnx.load(str(tmp_path / "int8" / "model.onnx"))
    scales = [init for init in int8.graph.initializer if init.name.endswith("_scale") and len(init.dims) == 1]
    assert scales and max(init.dims[0] for init in scales) > 1
