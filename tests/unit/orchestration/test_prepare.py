"""prepare: the [UNK] share of each encoded split, counted once and warned about when the model's vocabulary
does not cover the text (the tiny BERT's vocabulary is a few English words)."""

from __future__ import annotations

import io
from pathlib import Path

import yaml
from rich.console import Console

from tests.conftest import sentiment_rows, write_csv
from tunelab.catalog import load_config
from tunelab.orchestration.prepare import prepare


def _prepare(raw: dict, tmp_path: Path) -> tuple[dict, str]:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    out = io.StringIO()
    prepared = prepare(load_config(path), console=Console(file=out, width=400))
    return prepared.unknown_token_rates, out.getvalue()


def test_text_the_vocabulary_covers_does_not_warn(tiny_config: dict, tmp_path: Path) -> None:
    rates, printed = _prepare(tiny_config, tmp_path)
    assert rates == {"train": 0.0, "validation": 0.0, "test": 0.0} and "warning" not in printed


def test_text_outside_the_vocabulary_warns_once_naming_split_rate_and_model(tiny_config: dict, tmp_path: Path) -> None:
    rows = sentiment_rows(60)
    for row in rows:  # one unknown word of every seven sub-tokens
        row["text"] += " zebra"
    tiny_config["data"]["train"] = str(write_csv(tmp_path / "foreign.csv", rows))
    rates, printed = _prepare(tiny_config, tmp_path)
    assert {round(rate, 3) for rate in rates.values()} == {round(1 / 7, 3)}
    assert printed.count("warning:") == 1, printed
    line = " ".join(printed.split())
    assert line.startswith("warning: 14.3% of the train split's sub-tokens are [UNK] (validation 14.3%; test 14.3%; "
                           "special tokens not counted) with the tokenizer of model "), line
    assert tiny_config["model"] in line and "pick a backbone for the text's language, e.g. a multilingual" in line
