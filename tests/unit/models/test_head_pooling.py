"""`head: auto` reads a sentence encoder's frozen features the way it was trained to pool them: feature
extraction on a directory that declares mean pooling + Normalize gets a linear head over the L2-normalised
mean; fine-tuning keeps the native head (loadable with transformers alone); a directory that declares
nothing, or a pooling tunelab has no head for, keeps the defaults; explicit settings win."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from tunelab.config.schema import HeadConfig
from tunelab.models.heads import PoolingHead
from tunelab.models.pooling import declared_pooling
from tunelab.tasks.registry import get_task

from tests.conftest import train_via_cli


def _declare(model_dir: Path, *, mean: bool = True, normalize: bool = True, mode: str | None = None) -> Path:
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (model_dir / "modules.json").write_text(json.dumps(modules))
    (model_dir / "1_Pooling").mkdir(exist_ok=True)
    modes = {"pooling_mode_cls_token": not mean, "pooling_mode_mean_tokens": mean, "pooling_mode_max_tokens": False}
    if mode:
        modes = {k: k == mode for k in [*modes, mode]}
    (model_dir / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **modes}))
    return model_dir


@pytest.fixture
def sentence_encoder(tiny_bert: Path, tmp_path: Path) -> Path:
    return _declare(Path(shutil.copytree(tiny_bert, tmp_path / "encoder")))


def test_declared_pooling_reads_sentence_transformers_files(tmp_path: Path) -> None:
    assert declared_pooling(tmp_path) is None
    got = declared_pooling(_declare(tmp_path))
    assert got is not None and (got.pooling, got.normalize) == ("mean", True)
    got = declared_pooling(_declare(tmp_path, mean=False, normalize=False))
    assert got is not None and (got.pooling, got.normalize) == ("cls", False)
    assert declared_pooling(_declare(tmp_path, mode="pooling_mode_max_tokens")) is None


def test_auto_settles_per_strategy(tmp_path: Path) -> None:
    task, encoder, auto = get_task("classification"), _declare(tmp_path), HeadConfig()
    head = task.settle_head(auto, "head", encoder)
    assert (head.type, head.pooling, head.normalize) == ("linear", "mean", True)
    assert task.settle_head(auto, "full", encoder).type == "native"
    assert task.settle_head(auto, "head", tmp_path / "missing").type == "native"
    explicit = task.settle_head(HeadConfig(type="mlp", pooling="cls", normalize=False), "head", encoder)
    assert (explicit.type, explicit.pooling, explicit.normalize) == ("mlp", "cls", False)
    assert task.settle_head(head, "head", encoder) == head  # settled is settled
    assert get_task("token_classification").settle_head(auto, "head", encoder).type == "native"


def test_normalized_head_pools_then_normalises() -> None:
    head = PoolingHead(4, 2, kind="linear", pooling="mean", dropout=0.0, mlp_hidden=8, normalize=True)
    states, mask = torch.randn(3, 5, 4) * 7, torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    pooled = (states * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
    expected = head.proj(pooled / pooled.norm(dim=-1, keepdim=True) * 2.0)  # unit norm, times sqrt(4)
    assert torch.allclose(head(states, mask), expected, atol=1e-6)


def test_head_run_records_the_settled_head_and_reloads(tiny_config: dict, sentence_encoder: Path, tmp_path: Path) -> None:
    from tunelab.serving.predictor import load_predictor

    config = {**tiny_config, "model": str(sentence_encoder), "strategy": {"name": "head"}}
    train_via_cli(config, "--out", str(tmp_path / "run"), folder=tmp_path)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["head"]["type"] == "linear" and saved["head"]["pooling"] == "mean" and saved["head"]["normalize"]
    assert (tmp_path / "run" / "model" / "tunelab_head.safetensors").is_file()
    head = load_predictor(tmp_path / "run").model.head
    assert isinstance(head, PoolingHead) and head.normalize and head.pooling == "mean"
