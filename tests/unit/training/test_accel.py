"""Precision resolution and per-block compile keep the model addressable by the same names."""

from __future__ import annotations

import torch

from tunelab.training import accel
from tunelab.training.accel import compile_blocks, resolve_precision
from tunelab.training.step import autocast_for


def test_auto_is_fp32_on_cpu_and_explicit_fp32_stays() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision(cpu, "auto") == ("fp32", "")
    assert resolve_precision(cpu, "fp32") == ("fp32", "")
    assert isinstance(autocast_for(cpu, "auto"), type(autocast_for(cpu, "fp32")))


def test_bf16_on_cpu_only_where_native(monkeypatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(accel, "cpu_has_native_bf16", lambda: False)
    precision, note = resolve_precision(cpu, "bf16")
    assert precision == "fp32" and "AVX512-BF16" in note
    monkeypatch.setattr(accel, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision(cpu, "bf16") == ("bf16", "")


def test_compile_blocks_keeps_parameter_names(tiny_config: dict) -> None:
    from tests.conftest import _build_training as setup

    model = setup(tiny_config)[3]
    names = [n for n, _ in model.named_parameters()]
    assert compile_blocks(model) == 2
    assert [n for n, _ in model.named_parameters()] == names
