"""LoRA layers on every supported module type: zero-init, merge equivalence, merge twice, parameter formula."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tunelab.config.schema import OptimConfig, StrategyConfig
from tunelab.errors import ConfigError
from tunelab.models import count_parameters
from tunelab.strategies import apply_trainable, compile_strategy
from tunelab.strategies.peft.base import adaptation_of
from tunelab.strategies.peft.lora_layers import LoraLayer


def _conv1d_hf() -> nn.Module:
    from transformers.pytorch_utils import Conv1D

    return Conv1D(12, 10)  # nf=12 outputs, nx=10 inputs


CASES = {
    "Linear": (lambda: nn.Linear(10, 12), lambda: torch.randn(3, 10)),
    "Conv1d": (lambda: nn.Conv1d(4, 6, 3, padding=1), lambda: torch.randn(2, 4, 9)),
    "Conv2d": (lambda: nn.Conv2d(3, 5, 3, stride=2, padding=1), lambda: torch.randn(2, 3, 8, 8)),
    "Embedding": (lambda: nn.Embedding(20, 8), lambda: torch.randint(0, 20, (3, 5))),
    "Conv1D": (_conv1d_hf, lambda: torch.randn(3, 10)),
}


@pytest.mark.parametrize("kind", list(CASES))
@pytest.mark.parametrize("variant", ["plain", "rslora", "dora"])
def test_lora_layer_starts_equal_and_merges_exactly(kind: str, variant: str) -> None:
    if variant == "dora" and kind != "Linear":
        with pytest.raises(ConfigError, match="DoRA"):
            LoraLayer(CASES[kind][0](), rank=2, alpha=4, dropout=0.0, rslora=False, dora=True)
        return
    torch.manual_seed(0)
    make, sample = CASES[kind]
    base = make()
    x = sample()
    reference = base(x).detach().clone()
    layer = LoraLayer(base, rank=2, alpha=4, dropout=0.1, rslora=variant == "rslora", dora=variant == "dora").eval()
    torch.testing.assert_close(layer(x), reference)                       # zero-init: equal to the base
    with torch.no_grad():
        for name in layer.declared_names():
            layer.get_parameter(name).add_(0.3 * torch.randn_like(layer.get_parameter(name)))
    unmerged = layer(x).detach()
    assert not torch.allclose(unmerged, reference)
    layer.merge()
    layer.merge()                                                          # a second merge is a no-op
    torch.testing.assert_close(layer(x), unmerged, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer.base_layer(x), unmerged, atol=1e-5, rtol=1e-5)
    layer.unmerge()
    torch.testing.assert_close(layer.base_layer(x), reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer(x), unmerged, atol=1e-5, rtol=1e-5)


def test_rslora_scaling() -> None:
    assert LoraLayer(nn.Linear(4, 4), rank=4, alpha=8, dropout=0, rslora=False, dora=False).scaling == 2.0
    assert LoraLayer(nn.Linear(4, 4), rank=4, alpha=8, dropout=0, rslora=True, dora=False).scaling == 4.0


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def test_lora_on_conv2d_of_a_tiny_cnn_trains_only_lora() -> None:
    torch.manual_seed(0)
    model = TinyCNN()
    model.features[2] = LoraLayer(model.features[2], rank=2, alpha=2, dropout=0.0, rslora=False, dora=False)
    names = {f"features.2.{n}" for n in model.features[2].declared_names()}
    assert names == {"features.2.lora_A.weight", "features.2.lora_B.weight"}
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, y = torch.randn(8, 1, 6, 6), torch.randint(0, 3, (8,))
    for _ in range(2):  # B moves on step 1, A on step 2
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert changed == names
    out = model(x)
    model.features[2].merge()
    torch.testing.assert_close(model(x), out, atol=1e-5, rtol=1e-5)
    # r * (in * k * k) for A plus out * r for the 1x1 B
    assert sum(model.get_parameter(n).numel() for n in names) == 2 * 4 * 9 + 8 * 2


def compile_lora(model, **lora):
    config = StrategyConfig(name="lora", lora=lora)
    return compile_strategy(config, model, OptimConfig(lr=1e-3), 1)


def test_trainable_parameters_match_the_formula(build_tiny) -> None:
    model = build_tiny()
    head = sum(p.numel() for n, p in model.named_parameters() if "pooler" in n or "classifier" in n)
    plan = compile_lora(model, rank=8)
    apply_trainable(model, plan.trainable)
    trainable, _ = count_parameters(model)
    hidden, blocks, targets_per_block = 32, 2, 2
    assert trainable == blocks * targets_per_block * 8 * (hidden + hidden) + head


def test_target_types_and_freeze_blocks(build_tiny) -> None:
    model = build_tiny()
    compile_strategy(StrategyConfig(name="lora", freeze_blocks=1, lora={"target_modules": [], "target_types": ["Linear"]}),
                     model, OptimConfig(), 1)
    paths = list(adaptation_of(model).layers)
    assert paths and all(".layer.1." in p for p in paths)          # block 0 and the embeddings are left alone
    assert not any("pooler" in p or "classifier" in p for p in paths)  # the head trains fully, never wrapped
    assert len(paths) == 6                                          # q, k, v, attention out, intermediate, output


def test_unknown_target_is_a_config_error(build_tiny) -> None:
    with pytest.raises(ConfigError, match="strategy.lora.target_modules"):
        compile_lora(build_tiny(), target_modules=["q_proj"])


def test_config_rules() -> None:
    from tunelab.catalog import parse_config

    base = {"data": {"builtin": "bbc-news"}}
    with pytest.raises(ConfigError, match="strategy.lora.rank"):
        parse_config({**base, "strategy": {"name": "lora", "lora": {"rank": 0}}})
    with pytest.raises(ConfigError, match="strategy.lora is given but strategy 'full'"):
        parse_config({**base, "strategy": {"name": "full", "lora": {"rank": 4}}})
    with pytest.raises(ConfigError, match="freeze_patterns"):
        parse_config({**base, "strategy": {"name": "lora", "freeze_patterns": ["*query*"]}})
    resolved = parse_config({**base, "strategy": {"name": "lora"}})
    assert resolved.strategy.lora.rank == 8 and resolved.strategy.ia3 is None
