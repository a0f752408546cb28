"""Every PEFT method in the registry, crossed with the common promises (and both head kinds):
forward shape, starts equal to the base where promised, one train step changes only declared parameters,
save -> load gives identical outputs, merge equivalence (and merge twice) where mergeable."""

from __future__ import annotations

import json

import pytest
import torch

from tunelab.artifacts.model_io import load_run
from tunelab.config.schema import OptimConfig, StrategyConfig
from tunelab.errors import ModelError
from tunelab.models import count_parameters
from tunelab.strategies import apply_trainable, compile_strategy
from tunelab.strategies.peft.base import adaptation_of, head_names
from tunelab.strategies.registry import PEFT_METHODS

METHODS = list(PEFT_METHODS)
HEADS = ["native", "linear"]
IDS = torch.tensor([[2, 5, 9, 12, 7, 3, 0, 0], [2, 6, 10, 3, 0, 0, 0, 0], [2, 8, 8, 13, 14, 15, 16, 3]])
MASK = (IDS != 0).long()


def strategy(name: str) -> StrategyConfig:
    small = {"prompt_tuning": {"prompt": {"num_tokens": 4}}, "prefix_tuning": {"prefix": {"num_tokens": 4}}}
    return StrategyConfig(name=name, **small.get(name, {}))


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(IDS, MASK)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("name", METHODS)
def test_forward_shape_and_start(name: str, head: str, build_tiny) -> None:
    base_out = logits(build_tiny(head))
    model = build_tiny(head)
    compile_strategy(strategy(name), model, OptimConfig(), 1)
    out = logits(model)
    assert out.shape == (3, 2)
    if PEFT_METHODS[name].starts_equal:
        torch.testing.assert_close(out, base_out)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("name", METHODS)
def test_one_train_step_changes_only_declared_parameters(name: str, head: str, build_tiny) -> None:
    model = build_tiny(head)
    plan = compile_strategy(strategy(name), model, OptimConfig(lr=1e-2, weight_decay=0.0), 1)
    adaptation = adaptation_of(model)
    assert plan.trainable == adaptation.params | set(head_names(model))
    apply_trainable(model, plan.trainable)
    trainable, _ = count_parameters(model)
    assert trainable == sum(p.numel() for n, p in model.named_parameters() if n in plan.trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(plan.optimizer_groups(model))
    model.train()
    torch.nn.functional.cross_entropy(model(IDS, MASK), torch.tensor([0, 1, 0])).backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert changed <= plan.trainable
    assert changed & adaptation.params, "the method's own parameters did not move"


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("name", METHODS)
def test_save_load_round_trip(name: str, head: str, adapter_run) -> None:
    run_dir, model = adapter_run(strategy(name).model_dump(exclude_none=True), head=head, with_model=True)
    saved = sorted(p.name for p in (run_dir / "model").iterdir())
    assert "model.safetensors" not in saved                  # never a copy of the base
    torch.testing.assert_close(logits(load_run(run_dir).model), logits(model))


@pytest.mark.parametrize("name", [n for n, m in PEFT_METHODS.items() if m.mergeable])
def test_merge_equivalence(name: str, adapter_run) -> None:
    run = load_run(adapter_run(strategy(name).model_dump(exclude_none=True)))
    expected = logits(run.model)
    layers = adaptation_of(run.model).layers.values()
    for _ in range(2):                                       # merging twice is safe
        for layer in layers:
            layer.merge()
        torch.testing.assert_close(logits(run.model), expected, atol=1e-5, rtol=1e-5)
    for layer in layers:
        layer.unmerge()
    torch.testing.assert_close(logits(run.model), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", METHODS)
def test_a_newer_format_version_is_refused_clearly(name: str, adapter_run) -> None:
    run_dir = adapter_run(strategy(name).model_dump(exclude_none=True))
    meta_path = run_dir / "model" / "tunelab_adapter.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="newer tunelab"):
        load_run(run_dir)
