"""report.html of runs and compares, read as files: what profile.json holds, which sections each task gets,
that the page fetches nothing, escapes user text, is rebuilt by `tunelab report`, and never fails a run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
from typer.testing import CliRunner

from tests.conftest import train_via_cli
from tunelab.cli import app

runner = CliRunner()


def section_ids(html: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)">', html)


def assert_self_contained(html: str) -> None:
    """Nothing to fetch: no script, stylesheet link, external image or font; only namespace URIs of SVG."""
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert not re.search(r"url\((?!#)", html)  # clip paths point inside the page only
    fetched = re.findall(r'(?:src|href)\s*=\s*"([^"#][^"]*)"', html)
    assert all(not re.match(r"[a-z]+:", url) or url.startswith("data:image/png;base64,") for url in fetched), fetched
    assert not re.search(r"<text\b", html)  # svg.fonttype: path: no text elements that need a font


def test_classification_run_profile_and_report(classification_run: Path) -> None:
    profile = json.loads((classification_run / "profile.json").read_text())
    manifest = json.loads((classification_run / "manifest.json").read_text())
    splits = profile["splits"]
    assert list(splits) == ["train", "validation", "test"] and sum(s["examples"] for s in splits.values()) == 120
    assert all(sum(splits[s]["class_counts"].values()) == splits[s]["examples"] for s in splits)
    assert all(sum(splits[s]["length_counts"]) == splits[s]["examples"] for s in splits)
    assert profile["max_length"] == 8 and 0.0 <= splits["train"]["truncated_share"] <= 1.0
    groups = profile["parameters"]["groups"]
    assert [g["name"] for g in groups] == ["embeddings", "block 0", "block 1", "head"]
    assert sum(g["total"] for g in groups) == manifest["total_params"]
    assert sum(g["trainable"] for g in groups) == manifest["trainable_params"]
    html = (classification_run / "report.html").read_text()
    assert section_ids(html) == ["test", "loss", "validation", "confusion", "per-class", "data", "parameters", "config"]
    assert "test macro_f1:" in html and 'class="best"' in html
    assert_self_contained(html)


def test_task_sections(token_run: Path, regression_run: Path, image_run: Path, instruction_run: Path) -> None:
    token = (token_run / "report.html").read_text()
    assert "entities" in section_ids(token) and "confusion" not in section_ids(token)
    regression = regression_run
    assert "scatter" in section_ids((regression / "report.html").read_text())
    assert "targets" in json.loads((regression / "profile.json").read_text())["splits"]["train"]
    assert "misclassified" in section_ids((image_run / "report.html").read_text())
    import numpy as np

    with np.load(image_run / "misclassified.npz") as found:
        assert found["images"].dtype == np.uint8 and found["images"].shape[1:] == (16, 16, 3)
        assert len(found["true"]) == len(found["images"]) and all(found["true"] != found["predicted"])
    generations = json.loads((instruction_run / "profile.json").read_text())["generations"]
    assert generations and {"prompt", "reference", "before", "where"} <= set(generations[0])
    html = (instruction_run / "report.html").read_text()
    assert "generations" in section_ids(html) and "data" in section_ids(html)
    assert_self_contained(html)


def test_compare_report(compare_dir: Path) -> None:
    from tunelab.report import write_compare_report

    html = write_compare_report(compare_dir).read_text()
    assert section_ids(html) == ["runs", "summary", "params", "time", "curves", "fractions", "skipped"]
    assert 'href="runs/full-s0/report.html"' in html and 'href="runs/bitfit-s0-f0.5/report.html"' not in html
    assert "out of &lt;memory&gt;" in html and "<memory>" not in html  # the failed row's error, escaped
    assert html.count("<svg") == 4
    assert_self_contained(html)


def test_cli_rebuilds_and_names_what_is_missing(classification_run: Path, compare_dir: Path, copy_of, tmp_path: Path) -> None:
    run = copy_of(classification_run)
    (run / "report.html").unlink()
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0 and "run report" in result.output and (run / "report.html").is_file()
    result = runner.invoke(app, ["report", str(compare_dir)])
    assert result.exit_code == 0 and "compare" in result.output and (compare_dir / "report.html").is_file()
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["report", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "neither compare.json" in result.output and "manifest.json" in result.output
    result = runner.invoke(app, ["report", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "is not a folder" in result.output


def test_user_text_is_escaped(classification_run: Path, copy_of) -> None:
    from tunelab.report import write_run_report

    run = copy_of(classification_run)
    (run / "labels.json").write_text(json.dumps({"task": "classification", "labels": ["<script>x</script>", "pos"]}))
    metrics = json.loads((run / "test_metrics.json").read_text())
    metrics["per_class"] = {"<img src=x>": metrics["per_class"]["neg"], "pos": metrics["per_class"]["pos"]}
    (run / "test_metrics.json").write_text(json.dumps(metrics))
    html = write_run_report(run).read_text()
    assert "<script>" not in html and "<img src=x>" not in html and "&lt;img src=x&gt;" in html


def test_report_needs_only_the_run_files(classification_run: Path, copy_of) -> None:
    from tunelab.report import write_run_report

    run = copy_of(classification_run)
    for name in ("model", "checkpoints"):
        if (run / name).exists():
            import shutil

            shutil.rmtree(run / name)
    for name in ("profile.json", "predictions.csv", "metrics.jsonl"):
        (run / name).unlink()
    html = write_run_report(run).read_text()  # an older run: sections say what is missing
    assert "no profile.json" in html and "no training steps" in html


def test_a_failing_report_never_fails_the_run(text_run: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
                                              report_root: Path) -> None:
    import tunelab.report

    def broken(run_dir: Path) -> Path:
        raise RuntimeError("drawing failed")
    monkeypatch.setattr(tunelab.report, "write_run_report", broken)
    run = text_run("broken-report", rows=40)
    assert (run / "manifest.json").is_file() and not (run / "report.html").exists()


def test_report_false_skips_the_page_and_tunelab_report_draws_it(tiny_config: dict, tmp_path: Path) -> None:
    train_via_cli(tiny_config, "--out", str(tmp_path / "run"), folder=tmp_path)  # tiny_config: report false
    run = tmp_path / "run"
    assert (run / "profile.json").is_file() and not (run / "report.html").exists()
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    html = (run / "report.html").read_text()
    assert "<svg" in html and "loss" in section_ids(html)


def test_import_tunelab_stays_light() -> None:
    code = "import sys, tunelab, tunelab.report; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
