"""Cache entries are reused when nothing they depend on changed, and rebuilt when any key part did."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from tunelab.catalog import parse_config
from tunelab.data.encoding import EncodedSplit
from tunelab.training.cache import ActivationCache
from tunelab.training.cache_keys import CacheKey
from tunelab.orchestration.train import train as run_training

from tests.conftest import _build_training as setup

CPU = torch.device("cpu")


def ensure(cache: ActivationCache, model, split: EncodedSplit, starts: list[int]):
    return cache.ensure(model, split, starts, device=CPU, batch_size=16, pad_id=0)


@pytest.fixture
def prepared(tiny_config: dict):
    config, task, data, model, enc, loss_fn = setup(tiny_config)
    return model, enc["train"]


def test_second_cache_object_on_same_folder_computes_nothing(prepared, tmp_path: Path) -> None:
    model, split = prepared
    first = ActivationCache(tmp_path)
    ensure(first, model, split, [1, 2])
    assert first.stats.computed_examples == len(split) and first.stats.built_entries == 2
    second = ActivationCache(tmp_path)
    stores = ensure(second, model, split, [2, 1])
    assert second.stats.computed_examples == 0 and second.stats.reused_entries == 2
    # an entry reads back what a fresh capture computes
    index = torch.tensor([3, 0])
    width = max(len(split.input_ids[i]) for i in index.tolist())
    assert stores[1].read(index, width).shape == (2, width, 32)


def _changed(part: str, model, split: EncodedSplit, tmp_path: Path):
    """(cache, model, split) with exactly one key part changed."""
    cache = ActivationCache(tmp_path, tokenizer_settings="BertTokenizerFast|max_length=16")
    if part == "data":
        ids = [list(x) for x in split.input_ids]
        ids[0][1] = 5 if ids[0][1] != 5 else 6
        split = EncodedSplit(input_ids=ids, targets=split.targets, records=split.records)
    elif part == "max_length":  # a shorter max_length truncates the token ids and changes the settings
        split = EncodedSplit(input_ids=[x[:8] for x in split.input_ids], targets=split.targets, records=split.records)
        cache.tokenizer_settings = "BertTokenizerFast|max_length=8"
    elif part == "tokenizer":
        cache.tokenizer_settings = "BertTokenizerFast|max_length=16|lowercase=False"
    elif part == "prefix_weights":
        model = copy.deepcopy(model)
        with torch.no_grad():
            model.network.bert.embeddings.word_embeddings.weight[5, 0] += 0.01
    elif part == "dtype":
        cache.dtype = "bf16"
    elif part == "compute":
        cache.compute = "bf16"
    return cache, model, split


@pytest.mark.parametrize("part", ["data", "max_length", "tokenizer", "prefix_weights", "dtype", "compute"])
def test_any_key_part_change_rebuilds(prepared, tmp_path: Path, part: str) -> None:
    model, split = prepared
    base = ActivationCache(tmp_path, tokenizer_settings="BertTokenizerFast|max_length=16")
    ensure(base, model, split, [1])
    cache, model2, split2 = _changed(part, model, split, tmp_path)
    ensure(cache, model2, split2, [1])
    assert cache.stats.built_entries == 1 and cache.stats.computed_examples == len(split2), part
    assert len([p for p in tmp_path.iterdir() if (p / "meta.json").is_file()]) == 2


def test_k_is_part_of_the_key(prepared, tmp_path: Path) -> None:
    model, split = prepared
    ensure(ActivationCache(tmp_path), model, split, [1])
    cache = ActivationCache(tmp_path)
    ensure(cache, model, split, [1, 2])
    assert (cache.stats.reused_entries, cache.stats.built_entries) == (1, 1)


@pytest.mark.parametrize("where", ["head", "block_above_k"])
def test_weights_above_the_prefix_do_not_invalidate(prepared, tmp_path: Path, where: str) -> None:
    model, split = prepared
    ensure(ActivationCache(tmp_path), model, split, [1])
    other = copy.deepcopy(model)
    with torch.no_grad():
        target = other.network.classifier.weight if where == "head" else other.network.bert.encoder.layer[1].output.dense.weight
        target.add_(0.5)
    cache = ActivationCache(tmp_path)
    ensure(cache, other, split, [1])
    assert cache.stats.computed_examples == 0


def test_cache_key_digest_is_stable_and_sensitive() -> None:
    key = CacheKey(tokens="t", tokenizer="s", model="m", start_block=2, dtype="fp32", compute="fp32")
    assert key.digest() == CacheKey(**{**key.__dict__}).digest()
    for field, value in [("tokens", "u"), ("tokenizer", "x"), ("model", "n"), ("start_block", 3), ("dtype", "bf16"),
                         ("compute", "bf16")]:
        assert CacheKey(**{**key.__dict__, field: value}).digest() != key.digest(), field


def test_two_runs_share_the_cache(tiny_config: dict, tmp_path: Path) -> None:
    tiny_config["strategy"] = {"name": "head"}
    tiny_config["train"]["cache_dir"] = str(tmp_path / "cache")
    manifests = []
    for name in ("one", "two"):
        summary = run_training(parse_config({**tiny_config, "output": str(tmp_path / name)}))
        manifests.append(json.loads((summary.run_dir / "manifest.json").read_text())["activation_cache"])
    assert manifests[0]["computed_examples"] > 0 and manifests[0]["built_entries"] == 3  # train, validation, test
    assert manifests[1]["computed_examples"] == 0 and manifests[1]["reused_entries"] == 3
    assert manifests[1]["served_batches"] > 0


def test_cache_off_recomputes(tiny_config: dict, tmp_path: Path) -> None:
    tiny_config["strategy"] = {"name": "head"}
    tiny_config["train"]["cache"] = "off"
    summary = run_training(parse_config(tiny_config))
    assert json.loads((summary.run_dir / "manifest.json").read_text())["activation_cache"] is None
