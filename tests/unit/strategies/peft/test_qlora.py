"""QLoRA (strategy.lora.quantize): the 4-bit base is bitsandbytes' Linear4bit under LoRA's layers.

A run refuses a CPU device (bitsandbytes' kernels are CUDA's; tunelab does not emulate them slowly), but the
swap itself works on any device, so the wiring is checked here on the CPU with bitsandbytes' own reference
implementation: which modules go to 4 bits, that only LoRA and the head train, that a merge gives plain
full-precision weights equal to what the 4-bit model computes, and that the saved adapter is peft's LoRA
file, loaded back onto plain Linear layers holding the base's weights rounded as in training.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tunelab.config.schema import OptimConfig, StrategyConfig
from tunelab.errors import ConfigError
from tunelab.strategies import apply_trainable, compile_strategy
from tunelab.strategies.peft.base import adaptation_of, merge_adapter
from tunelab.strategies.peft.quantize_layers import is_4bit

QLORA = {"quantize": "nf4", "compute_dtype": "fp32"}


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(5, 25, (8, 10), generator=generator),
            "attention_mask": torch.ones(8, 10, dtype=torch.long)}


def _logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).float()


def test_every_base_linear_is_4bit_and_lora_wraps_the_targets(build_tiny) -> None:
    model = build_tiny().eval()
    batch = _batch()
    reference = _logits(model, batch)
    plan = compile_strategy(StrategyConfig(name="lora", lora=QLORA), model, OptimConfig(), 1)
    adaptation = adaptation_of(model)
    quantized = adaptation.info["quantized"]
    # 2 blocks x (q, k, v, attention out, intermediate, output); never the pooler and classifier (the head)
    assert len(quantized) == 12 and not any("classifier" in p or "pooler" in p for p in quantized)
    assert all(is_4bit(layer.base_layer) for layer in adaptation.layers.values())
    assert sorted(p.rsplit(".", 1)[-1] for p in adaptation.layers) == ["query", "query", "value", "value"]
    assert model.get_submodule("network.classifier").weight.dtype == torch.float32
    # NF4 keeps the function: on this random 32-wide BERT the logits move by a fraction of their spread
    drift = (_logits(model, batch) - reference).abs().max() / reference.std()
    assert 0 < drift < 0.25, drift
    assert all("lora_" in n for n in plan.trainable if ".encoder." in n)


def test_only_lora_and_the_head_train_on_the_4bit_base(build_tiny) -> None:
    model = build_tiny()
    plan = compile_strategy(StrategyConfig(name="lora", lora={**QLORA, "dropout": 0.0}), model, OptimConfig(lr=1e-2), 1)
    apply_trainable(model, plan.trainable)
    _logits(model.eval(), _batch(3))  # an evaluation pass first, as a run's does: training goes on after it
    model.train()
    before = {n: t.detach().clone() for n, t in model.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch, labels = _batch(), torch.tensor([0, 1] * 4)
    losses = []
    for _ in range(15):
        loss = nn.functional.cross_entropy(model(**batch), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    after = model.state_dict()
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    # the 4-bit blocks, their scales and every other base weight are as quantized; LoRA's A and B and the head moved
    assert changed and all(n.split(".")[-2] in ("lora_A", "lora_B", "classifier", "dense") for n in changed), changed
    assert not any(".encoder." in n and "lora_" not in n for n in changed)
    assert any(".lora_A." in n for n in changed) and any(".lora_B." in n for n in changed)


def test_merge_gives_plain_full_precision_weights_that_compute_the_same(build_tiny) -> None:
    model = build_tiny().eval()
    compile_strategy(StrategyConfig(name="lora", lora=QLORA), model, OptimConfig(), 1)
    model.eval()  # LoRA's inserted dropout too
    with torch.no_grad():
        for layer in adaptation_of(model).layers.values():
            layer.lora_B.weight.normal_(0, 0.2)
    batch = _batch(1)
    adapted = _logits(model, batch)
    merge_adapter(model)
    query = model.get_submodule("network.bert.encoder.layer.0.attention.self.query")
    assert type(query) is nn.Linear and query.weight.dtype == torch.float32
    torch.testing.assert_close(_logits(model, batch), adapted, atol=1e-4, rtol=1e-4)


def test_the_saved_adapter_is_peft_lora_and_loads_onto_the_rounded_base(adapter_run, build_tiny) -> None:
    from peft import PeftModel
    from safetensors.torch import load_file

    from tunelab.artifacts.model_io import load_run

    run_dir, trained = adapter_run({"name": "lora", "lora": QLORA}, with_model=True)
    plain_dir = adapter_run({"name": "lora"}, name="plain")
    saved = load_file(str(run_dir / "model" / "adapter_model.safetensors"))
    assert sorted(saved) == sorted(load_file(str(plain_dir / "model" / "adapter_model.safetensors")))
    loaded = load_run(run_dir).model
    assert not any(is_4bit(m) for m in loaded.modules())            # loaded for predict: plain Linear layers,
    batch = _batch(2)                                                # their weights rounded as in training
    torch.testing.assert_close(_logits(loaded.eval(), batch), _logits(trained.eval(), batch), atol=1e-5, rtol=1e-5)
    unrounded = load_run(plain_dir).model                            # (the rounding matters: a base not rounded
    assert not torch.allclose(_logits(unrounded.eval(), batch), _logits(trained, batch), atol=1e-3)  # computes else)
    base = build_tiny().network                                      # and peft reads the file onto the base
    peft_model = PeftModel.from_pretrained(base, str(run_dir / "model"))
    lora_a = next(n for n in saved if n.endswith("query.lora_A.weight"))
    torch.testing.assert_close(peft_model.get_parameter(lora_a.replace(".weight", ".default.weight")), saved[lora_a])


def test_config_rules() -> None:
    from tunelab.catalog import parse_config

    base = {"data": {"builtin": "bbc-news"}, "strategy": {"name": "lora", "lora": {"quantize": "nf4"}}}
    with pytest.raises(ConfigError, match="train.device is cpu"):
        parse_config({**base, "train": {"device": "cpu"}})
    with pytest.raises(ConfigError, match="not with train.distributed: fsdp"):
        parse_config({**base, "train": {"distributed": "fsdp"}})
    with pytest.raises(ConfigError, match="dora: not with quantize"):
        parse_config({**base, "strategy": {"name": "lora", "lora": {"quantize": "nf4", "dora": True}}})
    assert parse_config(base).strategy.lora.quantize == "nf4"


def test_a_run_on_a_cpu_refuses_before_writing_anything(tiny_config: dict, tmp_path) -> None:
    import yaml
    from typer.testing import CliRunner

    from tunelab.cli import app

    tiny_config["strategy"] = {"name": "lora", "lora": {"quantize": "nf4"}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(path)])
    said = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "strategy.lora.quantize: nf4 (QLoRA), and this run's device is cpu" in said
    assert "remove strategy.lora.quantize" in said and "Traceback" not in said
    assert not (tmp_path / "run").exists()


def test_counts_and_weight_drift_read_4bit_weights_at_their_logical_size(build_tiny) -> None:
    """Two bitsandbytes facts a run must not report: a packed weight's numel is half its weights, and its shape
    is not the base's (found by a QLoRA run's forgetting meter, which compares weights with the base's)."""
    from tunelab.models import count_parameters
    from tunelab.orchestration.forgetting import effective_weights, weight_drift

    base = build_tiny()
    _, total = count_parameters(base)
    model = build_tiny()
    compile_strategy(StrategyConfig(name="lora", lora=QLORA), model, OptimConfig(), 1)
    declared = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert count_parameters(model)[1] == total + declared
    weights = effective_weights(model)
    assert all(weights[n].shape == p.shape for n, p in base.named_parameters())
    drift, embedding = weight_drift(base, model)
    assert embedding == 0 and all(0 < d < 0.2 for d in drift), drift   # the 4-bit rounding, before any training
