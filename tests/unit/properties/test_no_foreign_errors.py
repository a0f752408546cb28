"""Property tests: whatever a user feeds the config loader or the data readers, the only exception that comes
out is tunelab's own (TunelabError), which the CLI turns into one message and exit code 2."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunelab.catalog import load_config, parse_config
from tunelab.config.loading import apply_overrides
from tunelab.data.readers import read_records
from tunelab.errors import TunelabError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
KEYS = ["model", "data", "train", "optim", "strategy", "schedule", "task", "head", "loss", "early_stopping", "output",
        "epochs", "lr", "batch_size", "name", "builtin", "validation_split", "max_length", "freeze_blocks", "metric",
        "patience", "warmup_ratio", "warmup_steps", "betas", "seed", "precision", "id_column", "x"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(["full", "gradual", "bbc-news", "fp32", "nan", "1e-4"]))
trees = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
                     max_leaves=20)


def only_our_errors(call) -> None:
    try:
        call()
    except TunelabError:
        pass


@SETTINGS
@given(st.dictionaries(st.sampled_from(KEYS), trees, max_size=6))
def test_parse_config_raises_only_config_errors(raw: dict) -> None:
    only_our_errors(lambda: parse_config(raw))


@SETTINGS
@given(st.binary(max_size=300) | trees.map(lambda t: yaml.safe_dump(t).encode()))
def test_load_config_from_any_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_bytes(data)
        only_our_errors(lambda: load_config(path))


@SETTINGS
@given(st.dictionaries(st.sampled_from(KEYS), trees, max_size=4), st.lists(st.text(max_size=30), max_size=4))
def test_overrides_raise_only_config_errors(raw: dict, overrides: list[str]) -> None:
    only_our_errors(lambda: parse_config(apply_overrides(raw, overrides)))


cells = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12)
csv_like = st.lists(st.lists(cells, max_size=4).map(lambda r: ",".join(r)), max_size=6).map(
    lambda rows: "\n".join(rows).encode("utf-8"))
jsonl_like = st.lists(st.dictionaries(st.sampled_from(["text", "label", "x"]), trees, max_size=3), max_size=5).map(
    lambda objs: "\n".join(json.dumps(o) for o in objs).encode("utf-8"))


@SETTINGS
@given(suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt"]),
       data=st.one_of(st.binary(max_size=200), csv_like, jsonl_like),
       label_kind=st.sampled_from(["class", "classes", "number"]),
       require_labels=st.booleans())
def test_readers_raise_only_data_errors(suffix: str, data: bytes, label_kind: str, require_labels: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data{suffix}"
        path.write_bytes(data)
        only_our_errors(lambda: read_records(path, text_column="text", label_column="label", label_kind=label_kind,
                                             require_labels=require_labels))
