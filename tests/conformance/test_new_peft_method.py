"""A new PEFT method is its file (its section, its rules, its apply) plus one registry line, and the layer it
inserts in `strategies/peft/<method>_layers.py`.

`OutputScale` below is such a method: a learned per-channel scale on the output of the targeted Linear
layers, ones-initialised. In the package its section and method would be `output_scale.py`, which imports no
torch (validating a config reads every method's section without loading PyTorch), and `OutputScaleLayer`
would be `output_scale_layers.py`, imported inside `_apply`; here both sit in this test file. Registered
with one line, the catalog validates its section (defaults filled, errors with their key paths), and the
PEFT conformance suite's own checks pass on it unchanged.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from pydantic import Field
from torch import nn

from tunelab.catalog import parse_config
from tunelab.config.schema import StrategyConfig
from tunelab.errors import ConfigError
from tunelab.models.task_model import TaskModel
from tunelab.strategies.peft.base import Adaptation, PeftMethod, PeftSection, blocks_allowed, match_name, replace_module
from tunelab.strategies.peft.layer import PeftLayer
from tunelab.strategies.registry import PEFT_METHODS, strategy_names
from tests.conformance import test_peft_methods as suite


# -- its layer (strategies/peft/output_scale_layers.py: torch; `_apply` imports it) ----------------
class OutputScaleLayer(PeftLayer):
    declared: ClassVar[tuple[str, ...]] = ("scale",)

    def __init__(self, base: nn.Linear, init: float) -> None:
        super().__init__()
        self.base_layer = base
        self.scale = nn.Parameter(torch.full((base.out_features,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) * self.scale


# -- the method's file (strategies/peft/output_scale.py: no torch at import) ------------------------
class OutputScaleSection(PeftSection):
    """Which Linear layers get a learned output scale."""

    target_modules: list[str] = Field(default_factory=lambda: ["query", "value"])
    init: float = Field(1.0, gt=0.0, description="Start value of every scale (1.0: the model starts equal).")


class OutputScaleMethod(PeftMethod):
    name = "output_scale"
    section = "output_scale"
    Section = OutputScaleSection
    default_lr = 1e-2

    def check_config(self, config: StrategyConfig) -> list[str]:
        errors = super().check_config(config)
        if not self.settings(config).target_modules:
            errors.append("strategy.output_scale.target_modules: name at least one Linear layer (e.g. [query])")
        return errors

    def _apply(self, model: TaskModel, config: StrategyConfig) -> Adaptation:
        settings, allowed = self.settings(config), blocks_allowed(model, config)
        layers: dict[str, PeftLayer] = {}
        for path, module in list(model.network.named_modules(prefix="network")):
            if isinstance(module, nn.Linear) and match_name(path[len("network."):], settings.target_modules) \
                    and allowed(path):
                layers[path] = OutputScaleLayer(module, settings.init)
                replace_module(model, path, layers[path])
        params = frozenset(f"{p}.scale" for p in layers)
        return Adaptation(method=self.name, layers=layers, params=params)
# -- end of the method's files --------------------------------------------------------------------


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PEFT_METHODS, "output_scale", OutputScaleMethod())  # the one registry line


BASE = {"data": {"builtin": "bbc-news"}}


def test_unregistered_it_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="unknown strategy 'output_scale'; choose one of: full, head"):
        parse_config({**BASE, "strategy": {"name": "output_scale"}})


def test_registered_its_section_validates_with_defaults_and_key_paths(registered) -> None:
    assert "output_scale" in strategy_names()
    resolved = parse_config({**BASE, "strategy": {"name": "output_scale", "output_scale": {"init": 0.5}}})
    assert resolved.strategy.output_scale == OutputScaleSection(init=0.5)
    assert parse_config({**BASE, "strategy": {"name": "output_scale"}}).strategy.output_scale.target_modules == [
        "query", "value"]
    with pytest.raises(ConfigError, match=r"strategy.output_scale.init: Input should be greater than 0"):
        parse_config({**BASE, "strategy": {"name": "output_scale", "output_scale": {"init": 0}}})
    with pytest.raises(ConfigError, match=r"strategy.output_scale.targets: unknown key \(did you mean 'target_modules'"):
        parse_config({**BASE, "strategy": {"name": "output_scale", "output_scale": {"targets": ["query"]}}})
    with pytest.raises(ConfigError, match="strategy.output_scale.target_modules: name at least one"):
        parse_config({**BASE, "strategy": {"name": "output_scale", "output_scale": {"target_modules": []}}})
    with pytest.raises(ConfigError, match="strategy.output_scale is given but strategy 'lora' reads strategy.lora"):
        parse_config({**BASE, "strategy": {"name": "lora", "output_scale": {}}})


@pytest.mark.parametrize("head", suite.HEADS)
def test_the_conformance_suite_passes_on_it(registered, head: str, build_tiny) -> None:
    suite.test_forward_shape_and_start("output_scale", head, build_tiny)
    suite.test_one_train_step_changes_only_declared_parameters("output_scale", head, build_tiny)


@pytest.mark.parametrize("head", suite.HEADS)
def test_its_run_saves_and_loads_with_the_same_outputs(registered, head: str, adapter_run) -> None:
    suite.test_save_load_round_trip("output_scale", head, adapter_run)


def test_its_saved_format_version_is_checked(registered, adapter_run) -> None:
    suite.test_a_newer_format_version_is_refused_clearly("output_scale", adapter_run)
