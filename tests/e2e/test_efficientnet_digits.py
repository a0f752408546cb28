"""End to end on the real EfficientNet-Lite0 ImageNet weights and a subset of digits: the shipped config
trains through the CLI (head-only, 2 epochs at 32x32), writes the preprocessing statistics with the
model, and the saved run reloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, train_via_cli

pytestmark = pytest.mark.e2e


def test_digits_config_on_a_subset(tmp_path: Path) -> None:
    out = tmp_path / "digits"
    train_via_cli(REPO / "configs" / "digits-efficientnet.yaml", "--out", str(out), "--set", "data.limit=300",
                  "--set", "data.image_size=32", "--set", "train.epochs=2", "--set", "strategy.name=head")
    preprocessor = json.loads((out / "model" / "preprocessor.json").read_text())
    assert preprocessor["image_size"] == 32 and preprocessor["mean"][0] == pytest.approx(127 / 255)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["trainable_params"] == 1280 * 320 + 2 * 1280 + 1280 * 10 + 10  # neck conv + BN + classifier
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["accuracy"] > 0.2  # 10 classes: chance is 0.1
    from tunelab.artifacts.model_io import load_run

    assert load_run(out).model.layer_stack.num_blocks == 16
