"""`tunelab compare` on the tiny model: rows are ordinary runs that `tunelab train` repeats bit for bit from
their saved config, fractions are nested, seeds keep the split, failures and refusals become rows, and an
interrupted comparison resumes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.conftest import train_via_cli
from tunelab.cli import app

runner = CliRunner()


def _compare(config: dict, tmp_path: Path, *args: str) -> tuple[int, str, Path]:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", str(path), "--out", str(out), *args])
    return result.exit_code, result.output, out


@pytest.fixture
def config(tiny_config: dict) -> dict:
    tiny_config["train"]["precision"] = "fp32"
    tiny_config["report"] = True  # the rows' report.html are linked from the comparison's page
    return tiny_config


def test_rows_repeat_as_train_runs(config: dict, tmp_path: Path) -> None:
    code, output, out = _compare(config, tmp_path, "--strategies", "head,lora", "--seeds", "0,1",
                                 "--data-fractions", "0.5,1")
    assert code == 0, output
    report = json.loads((out / "compare.json").read_text())
    names = {r["name"] for r in report["rows"]}
    assert names == {f"{s}-s{seed}-f{f}" for s in ("head", "lora") for seed in (0, 1) for f in ("0.5", "1")}
    assert all(r["status"] == "done" for r in report["rows"])
    assert report["metric"] == "macro_f1" and report["verdict"]["strategy"] in ("head", "lora")
    assert {(s["strategy"], s["data_fraction"], s["n"]) for s in report["summary"]} == \
        {(s, f, 2) for s in ("head", "lora") for f in (0.5, 1.0)}
    assert "paired bootstrap" in report["noise_test"]
    assert (out / "compare.csv").read_text().count("\n") == 9
    page = (out / "report.html").read_text()
    assert 'href="runs/lora-s1-f0.5/report.html"' in page and "<svg" in page
    assert all((out / "runs" / n / "report.html").is_file() for n in names)
    # a row with seed 1 on half the data: `tunelab train` of its own config.yaml gives the same run
    row = out / "runs" / "lora-s1-f0.5"
    train_via_cli(row / "config.yaml", "--out", str(tmp_path / "solo"))
    solo = tmp_path / "solo"
    ours, theirs = (json.loads((d / "test_metrics.json").read_text()) for d in (row, solo))
    for metrics in (ours, theirs):
        metrics["forgetting"].pop("seconds")  # the meter's own time: the one figure that is not the run's
    assert ours == theirs
    ours, theirs = load_file(row / "model" / "adapter_model.safetensors"), load_file(solo / "model" / "adapter_model.safetensors")
    assert ours.keys() == theirs.keys() and all((ours[k] == theirs[k]).all() for k in ours)
    manifests = [json.loads((d / "manifest.json").read_text()) for d in (row, solo)]
    assert manifests[0]["data_sha256"] == manifests[1]["data_sha256"]
    # seeds vary the training, never the split; fractions are nested inside the full training split
    tests = {json.loads((out / "runs" / n / "manifest.json").read_text())["data_sha256"]["test"] for n in names}
    assert len(tests) == 1


def test_nested_fractions_are_stratified() -> None:
    from tunelab.data.records import Record
    from tunelab.data.splits import nested_fraction

    records = [Record(text=str(i), label="a" if i % 4 else "b", where=str(i)) for i in range(200)]
    small, large = (set(nested_fraction(records, f, seed=3, label_kind="class")) for f in (0.1, 0.3))
    assert small < large and len(small) == 20 and len(large) == 60
    assert sum(records[i].label == "b" for i in small) == 5  # the 1:3 class ratio kept


def test_a_fraction_row_trains_the_steps_of_the_whole_split(config: dict, tmp_path: Path) -> None:
    """--fraction-budget steps (the default): a 10% row runs 10x the epochs, gradual unfreezes every 10x the
    epochs and early stopping waits 10x as many, so every row of a strategy trains the same optimizer steps;
    --fraction-budget epochs keeps the epochs (a tenth of the steps)."""
    from tunelab.catalog import parse_config
    from tunelab.orchestration.compare import CompareRequest, plan_rows

    config["early_stopping"] = {"metric": "macro_f1", "patience": 2}
    base = parse_config(config)
    for budget, scale in (("steps", 10), ("epochs", 1)):
        request = CompareRequest(out=tmp_path / budget, strategies=["head", "gradual", "full"],
                                 fractions=[0.1, 1.0], fraction_budget=budget)
        rows = {(r.strategy, r.fraction): r.config for r in plan_rows(config, base, request, 2)[0]}
        for strategy in ("head", "gradual", "full"):
            whole, tenth = rows[(strategy, 1.0)], rows[(strategy, 0.1)]
            assert tenth.train.epochs == scale * whole.train.epochs, (budget, strategy)
            assert tenth.early_stopping.patience == scale * whole.early_stopping.patience
        assert rows[("gradual", 0.1)].strategy.unfreeze_every == scale * rows[("gradual", 1.0)].strategy.unfreeze_every
        assert rows[("head", 1.0)].train.epochs == 2 * config["train"]["epochs"]  # head's own budget, then scaled


def test_refused_and_failing_strategies_become_rows(config: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab.orchestration import compare as compare_module

    real = compare_module.run_one

    def flaky(prepared, row_config, **kwargs):
        if row_config.strategy.name == "bitfit":
            raise RuntimeError("loss is NaN at step 3")
        return real(prepared, row_config, **kwargs)

    monkeypatch.setattr(compare_module, "run_one", flaky)
    code, output, out = _compare(config, tmp_path, "--strategies", "head,bitfit,prompt_tuning",
                                 "--set", "prompt_tuning.strategy.prompt.num_tokens=0")
    assert code == 0, output
    report = json.loads((out / "compare.json").read_text())
    failed = [r for r in report["rows"] if r["status"] == "failed"]
    assert [r["strategy"] for r in failed] == ["bitfit"] and "NaN" in failed[0]["error"]
    assert [s["strategy"] for s in report["skipped"]] == ["prompt_tuning"]
    assert "num_tokens" in report["skipped"][0]["reason"]
    assert report["verdict"]["strategy"] == "head"


def test_every_row_failing_exits_non_zero(config: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab.orchestration import compare as compare_module

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(compare_module, "run_one", broken)
    code, output, _ = _compare(config, tmp_path, "--strategies", "head")
    assert code == 1, output


def test_resume_skips_finished_rows(config: dict, tmp_path: Path) -> None:
    code, output, out = _compare(config, tmp_path, "--strategies", "head,bitfit")
    assert code == 0, output
    code, output, _ = _compare(config, tmp_path, "--strategies", "head,bitfit")
    assert code != 0 and "--resume" in output  # an earlier comparison is never silently replaced
    first = (out / "runs" / "head" / "manifest.json").read_text()
    import shutil

    shutil.rmtree(out / "runs" / "bitfit")
    code, output, _ = _compare(config, tmp_path, "--strategies", "head,bitfit", "--resume")
    assert code == 0, output
    assert "head: finished earlier" in output.replace("\n", " ")
    assert (out / "runs" / "head" / "manifest.json").read_text() == first
    report = json.loads((out / "compare.json").read_text())
    assert sorted(r["name"] for r in report["rows"]) == ["bitfit", "head"]


def test_bootstrap_on_the_whole_sample_is_the_metric() -> None:
    import numpy as np

    from tunelab.evaluation.bootstrap import _scores, paired_bootstrap
    from tunelab.evaluation.metrics import classification_metrics

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 300)
    good = np.where(rng.random(300) < 0.9, truth, (truth + 1) % 3)
    bad = np.where(rng.random(300) < 0.6, truth, (truth + 1) % 3)
    ones = np.ones((1, 300))
    expected = classification_metrics(truth, good, ["a", "b", "c"])["macro_f1"]
    assert _scores("macro_f1", truth, good, ones)[0] == pytest.approx(expected)
    assert paired_bootstrap("macro_f1", truth, [good], [bad]) < 0.01       # clearly better
    assert paired_bootstrap("accuracy", truth, [good], [good.copy()]) == 1.0  # the same predictions: a tie


def test_verdict_savings_read_as_shares_or_multiples() -> None:
    from tunelab.orchestration.compare_summary import _savings

    pick = {"train_time_s": 6.4, "trainable_params": 1_000, "model_bytes": 87 * 2**20}
    best = {"train_time_s": 42.4, "trainable_params": 100_000, "model_bytes": 2**20}
    text = _savings(pick, best)
    assert "6.6x faster" in text and "1.00% of its trainable parameters" in text
    assert "87.0x its bytes on disk" in text and "%" not in text.split("parameters")[1]


def test_frozen_prefixes_of_every_row_are_built_in_one_pass(config: dict, tiny_bert: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """head (depth 2, a linear head over the mean the backbone declares), partial (depth 1, the native head) and
    gradual (2, then 1) on the 2-block model: compare builds every entry they read before the first row, in one
    pass over each split (the bare backbone and the classifier's share entries), and no row builds one; rows
    still repeat bit for bit as `tunelab train` of their configs in a cold cache."""
    model_dir = tmp_path / "pooled"  # the tiny BERT declaring mean pooling, as a sentence-transformers folder does
    shutil.copytree(tiny_bert, model_dir)
    (model_dir / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (model_dir / "1_Pooling").mkdir()
    (model_dir / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}))
    config["model"] = str(model_dir)
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path / "cache-compare"))
    code, output, out = _compare(config, tmp_path, "--strategies", "head,partial,gradual")
    assert code == 0, output
    text = " ".join(output.split())  # the console wraps long lines
    examples = sum(1 for _ in open(config["data"]["train"], encoding="utf-8")) - 1  # every split once, one pass
    warmed = text.partition("activation cache for the rows' frozen blocks (depths 1, 2):")[2].partition("[1/3]")[0]
    assert f"6 entries built from {examples} examples in 1 pass" in warmed, text
    assert yaml.safe_load((out / "runs" / "head" / "config.yaml").read_text())["head"]["type"] == "linear"
    for row in ("head", "partial", "gradual"):
        stats = json.loads((out / "runs" / row / "manifest.json").read_text())["activation_cache"]
        assert stats["built_entries"] == 0 and stats["reused_entries"] > 0 and stats["served_batches"] > 0, row
    for row in ("head", "partial"):
        monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path / f"cache-{row}"))
        train_via_cli(out / "runs" / row / "config.yaml", "--out", str(tmp_path / f"solo-{row}"))
        stats = json.loads((tmp_path / f"solo-{row}" / "manifest.json").read_text())["activation_cache"]
        assert stats["built_entries"] == 3  # train, validation and test at its depth: built, not found
        for name in ("model.safetensors", "tunelab_head.safetensors"):
            files = [d / "model" / name for d in (out / "runs" / row, tmp_path / f"solo-{row}")]
            if files[0].is_file():
                ours, theirs = (load_file(f) for f in files)
                assert ours.keys() == theirs.keys() and all((ours[k] == theirs[k]).all() for k in ours), (row, name)
