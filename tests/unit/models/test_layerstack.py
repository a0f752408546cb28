from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from tunelab.config.schema import HeadConfig, ModelConfig
from tunelab.errors import ModelError
from tunelab.models import build_task_model, discover_layer_stack, resolve_model_dir


def _model(tiny_bert: Path, head: str = "native"):
    return build_task_model(ModelConfig(name=str(tiny_bert)), HeadConfig(type=head), problem_type="single_label_classification",
                            label_names=["neg", "pos"], num_outputs=2)


def test_bert_stack_is_discovered(tiny_bert: Path) -> None:
    model = _model(tiny_bert)
    stack = model.layer_stack
    assert stack.blocks_path == "network.bert.encoder.layer"
    assert stack.num_blocks == 2
    assert stack.group_of("network.bert.embeddings.word_embeddings.weight") == -1
    assert stack.group_of("network.bert.encoder.layer.1.output.dense.weight") == 1
    assert stack.group_of("network.classifier.weight") == 2
    assert stack.group_of("network.bert.pooler.dense.weight") == 2


def test_custom_head_model_groups(tiny_bert: Path) -> None:
    model = _model(tiny_bert, head="mlp")
    assert model.layer_stack.blocks_path == "network.encoder.layer"
    names = [n for n, _ in model.named_parameters()]
    groups = model.layer_stack.groups(names)
    assert all(n.startswith("head.") for n in groups[2])
    assert not any("pooler" in n for n in names)  # custom heads do not carry an unused pooler


def test_generic_module_and_explicit_path() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.short = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])
            self.layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])
            self.out = nn.Linear(4, 2)

    net = Net()
    stack = discover_layer_stack(net)
    assert (stack.blocks_path, stack.num_blocks) == ("layers", 3)
    assert stack.group_of("embed.weight") == -1 and stack.group_of("out.weight") == 3
    assert discover_layer_stack(net, "short").num_blocks == 2
    with pytest.raises(ModelError, match="not a non-empty ModuleList"):
        discover_layer_stack(net, "out")


def test_model_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="neither a built-in"):
        resolve_model_dir(str(tmp_path / "missing"))
    (tmp_path / "m").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model_dir(str(tmp_path / "m"))
    (tmp_path / "m" / "config.json").write_text("{}")
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="pickle"):
        resolve_model_dir(str(tmp_path / "m"))
