"""Precision resolution and per-block compile keep the model addressable by the same names."""

from __future__ import annotations

from pathlib import Path

import torch

from tunelab.inference import precision as precision_rules
from tunelab.inference.precision import autocast_for, resolve_precision
from tunelab.training.accel import compile_blocks


def test_auto_is_fp32_on_a_cpu_without_bf16_units_and_explicit_fp32_stays() -> None:
    cpu = torch.device("cpu")  # conftest: this CPU reports no bf16 units
    assert resolve_precision(cpu, "auto") == ("fp32", "")
    assert resolve_precision(cpu, "fp32") == ("fp32", "")
    assert isinstance(autocast_for(cpu, "auto"), type(autocast_for(cpu, "fp32")))


def test_auto_is_bf16_on_a_cpu_with_bf16_units_and_explicit_fp32_stays(monkeypatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision_rules, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision(cpu, "auto") == ("bf16", "")
    assert resolve_precision(cpu, "fp32") == ("fp32", "")
    assert isinstance(autocast_for(cpu, "auto"), torch.autocast)


def test_a_run_with_auto_precision_on_a_bf16_cpu_trains_in_bf16_and_says_so(monkeypatch, tiny_config: dict,
                                                                             tmp_path) -> None:
    """The saved config records what ran (bf16), so predict and eval later use the same precision."""
    import json
    import math

    import yaml

    from tests.conftest import train_via_cli

    monkeypatch.setattr(precision_rules, "cpu_has_native_bf16", lambda: True)
    train_via_cli({**tiny_config, "train": {**tiny_config["train"], "precision": "auto"}}, folder=tmp_path)
    run = Path(tiny_config["output"])
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["precision"] == "bf16"
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and math.isfinite(metrics["loss"])


def test_bf16_on_cpu_only_where_native(monkeypatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision_rules, "cpu_has_native_bf16", lambda: False)
    precision, note = resolve_precision(cpu, "bf16")
    assert precision == "fp32" and "AVX512-BF16" in note
    monkeypatch.setattr(precision_rules, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision(cpu, "bf16") == ("bf16", "")


def test_compile_blocks_keeps_parameter_names(tiny_config: dict) -> None:
    from tests.conftest import _build_training as setup

    model = setup(tiny_config)[3]
    names = [n for n, _ in model.named_parameters()]
    assert compile_blocks(model) == 2
    assert [n for n, _ in model.named_parameters()] == names
