"""Text augmentation: each operation changes about its share of an example's own tokens and nothing else
(special tokens and padding stay), repeats for a seed, and a run with it trains repeatably with the activation
cache off and the evaluation splits untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import sentiment_rows, write_csv
from tunelab.catalog import parse_config
from tunelab.config.schema import AugmentConfig
from tunelab.data.text_augment import drop_tokens, make_text_augment, mask_spans, swap_neighbours
from tunelab.errors import ConfigError

CLS, SEP, PAD, MASK = 101, 102, 0, 103


def _batch(rows: int = 200, width: int = 60, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of [CLS] tokens... [SEP] padding, of random lengths; `own` marks the tokens between."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(6, width + 1, (rows,), generator=g)
    ids = torch.randint(1000, 30000, (rows, width), generator=g)
    positions = torch.arange(width).expand(rows, width)
    attention = (positions < lengths[:, None]).long()
    ids = torch.where(attention.bool(), ids, torch.full_like(ids, PAD))
    ids[:, 0] = CLS
    ids[torch.arange(rows), lengths - 1] = SEP
    own = attention.bool() & (positions > 0) & (positions < (lengths - 1)[:, None])
    return ids, attention, own


def _g(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_span_masking_masks_its_share_in_runs_and_nothing_outside_the_text() -> None:
    ids, _, own = _batch()
    out = mask_spans(ids, own, 0.15, 3, MASK, _g())
    masked = out == MASK
    assert torch.equal(out[~own], ids[~own]) and not masked[~own].any()
    assert float(masked.sum() / own.sum()) == pytest.approx(1 - (1 - 0.15 / 3) ** 3, abs=0.03)  # overlaps aside
    runs = (masked[:, 1:] & masked[:, :-1]).sum()
    assert runs > masked.sum() / 2  # most masked tokens have a masked neighbour: spans, not single tokens


def test_swaps_keep_every_token_and_move_about_their_share() -> None:
    ids, _, own = _batch()
    out = swap_neighbours(ids, own, 0.2, _g())
    assert torch.equal(out.sort(dim=1).values, ids.sort(dim=1).values)  # the same tokens in each row
    assert torch.equal(out[~own], ids[~own])
    moved = (out != ids) & own
    assert moved.sum() / own.sum() == pytest.approx(0.2, abs=0.05)


def test_dropout_deletes_its_share_keeps_order_and_never_empties_a_row() -> None:
    ids, attention, own = _batch()
    out, mask = drop_tokens(ids, attention, own, 0.3, PAD, _g())
    kept = mask.sum(dim=1)
    assert (kept >= 3).all()  # [CLS], [SEP] and at least one own token
    assert 1 - (kept - 2).sum() / own.sum() == pytest.approx(0.3, abs=0.04)
    for row in range(20):
        before = ids[row][attention[row].bool()].tolist()
        after = out[row][mask[row].bool()].tolist()
        assert after[0] == CLS and after[-1] == SEP
        it = iter(before)
        assert all(token in it for token in after)  # a subsequence: order kept
        assert (out[row][~mask[row].bool()] == PAD).all()
    one = torch.tensor([[CLS, 5000, SEP]])
    same, _ = drop_tokens(one, torch.ones_like(one), torch.tensor([[False, True, False]]), 0.5, PAD, _g())
    assert torch.equal(same, one)  # its only token is never dropped, whatever the draw


def test_the_combined_transform_repeats_per_generator_seed() -> None:
    class Tokenizer:
        all_special_ids, mask_token_id, pad_token_id = [PAD, CLS, SEP, MASK], MASK, PAD

    augment = make_text_augment(AugmentConfig(token_dropout=0.1, swap=0.1, span_mask=0.1), Tokenizer())
    ids, attention, _ = _batch(rows=32)
    first = augment({"input_ids": ids, "attention_mask": attention}, _g(7))
    again = augment({"input_ids": ids, "attention_mask": attention}, _g(7))
    other = augment({"input_ids": ids, "attention_mask": attention}, _g(8))
    assert torch.equal(first["input_ids"], again["input_ids"]) and not torch.equal(first["input_ids"], ids)
    assert not torch.equal(first["input_ids"], other["input_ids"])


@pytest.mark.parametrize("task, data, line", [
    ("token_classification", {"augment": {"token_dropout": 0.1}}, "not task token_classification"),
    ("image_classification", {"augment": {"swap": 0.1}}, "not task image_classification"),
    ("classification", {"augment": {"enabled": True}}, "data.image_size / data.augment.enabled apply to task image"),
    ("classification", {"augment": {"span_mask": 0.9}}, "less than or equal to 0.5"),
])
def test_text_augmentation_is_refused_where_tokens_carry_targets(task: str, data: dict, line: str) -> None:
    with pytest.raises(ConfigError, match=line):
        parse_config({"task": task, "data": {"train": "x.csv", **data}})


def test_a_run_with_augmentation_repeats_recomputes_the_frozen_blocks_and_differs_from_one_without(
        tiny_bert: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tunelab.cli import app

    data = str(write_csv(tmp_path / "t.csv", sentiment_rows(80)))

    def run(name: str, augment: dict) -> tuple[dict, str]:
        config = {"model": str(tiny_bert), "data": {"train": data, "max_length": 16, "augment": augment},
                  "strategy": {"name": "partial", "freeze_blocks": 1}, "optim": {"lr": 3e-3},
                  "train": {"epochs": 2, "batch_size": 8, "cache_dir": str(tmp_path / "cache")},
                  "forgetting": {"measure": False}, "output": str(tmp_path / name)}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        result = CliRunner().invoke(app, ["train", str(tmp_path / f"{name}.yaml")])
        assert result.exit_code == 0, result.output
        return load_file(str(tmp_path / name / "model" / "model.safetensors")), result.output

    augment = {"token_dropout": 0.1, "swap": 0.1, "span_mask": 0.1}
    (first, said), (again, _), (plain, _) = run("a", augment), run("b", augment), run("plain", {})
    assert "activation cache: off, because data.augment changes the training tokens" in " ".join(said.split())
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], plain[k]) for k in first)
