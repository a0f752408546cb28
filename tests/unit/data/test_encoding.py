"""Length-bucketed batches: deterministic per (seed, epoch), a permutation, little padding."""

from __future__ import annotations

import random

import numpy as np

import itertools

from tunelab.data.encoding import (IGNORE_INDEX, EncodedSplit, batch_order, collate, fewest_padded_tokens,
                                iterate_batches, padded_length)


def split_of(n: int, seed: int = 0) -> EncodedSplit:
    rng = random.Random(seed)
    return EncodedSplit(input_ids=[[1] * rng.randint(3, 200) for _ in range(n)], targets=None, records=[])


def test_same_seed_and_epoch_same_batches() -> None:
    split = split_of(500)
    a = batch_order(split, 8, shuffle=True, seed=3, epoch=1)
    b = batch_order(split, 8, shuffle=True, seed=3, epoch=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)


def test_epochs_and_seeds_differ_and_cover_every_example_once() -> None:
    split = split_of(500)
    orders = [np.concatenate(batch_order(split, 8, shuffle=True, seed=s, epoch=e)) for s, e in [(0, 0), (0, 1), (1, 0)]]
    for order in orders:
        assert sorted(order.tolist()) == list(range(500))
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[0], orders[2])


def test_buckets_cut_padding() -> None:
    split = split_of(800)
    def padded(batches) -> int:
        return sum(len(b) * max(len(split.input_ids[i]) for i in b) for b in batches)
    rng = np.random.default_rng(0)
    plain = np.array_split(rng.permutation(800), 100)
    assert padded(batch_order(split, 8, shuffle=True, seed=0, epoch=0)) < 0.7 * padded(plain)


def test_eval_order_is_length_sorted_and_indices_restore_order() -> None:
    split = split_of(50)
    seen = []
    for batch in iterate_batches(split, 8, pad_id=0, shuffle=False):
        assert batch.attention_mask.sum(1).tolist() == [len(split.input_ids[i]) for i in batch.indices.tolist()]
        seen.extend(batch.indices.tolist())
    assert sorted(seen) == list(range(50))


def _cost(lengths: list[int], sizes: list[int], per_forward: int, limit: int) -> int:
    starts = np.cumsum([0, *sizes[:-1]])
    return sum(per_forward + size * padded_length(lengths[start], limit) for start, size in zip(starts, sizes))


def test_fewest_padded_tokens_finds_the_cheapest_cut_within_the_batch_size() -> None:
    rng = random.Random(1)
    for _ in range(30):
        lengths = sorted((rng.randint(1, 120) for _ in range(rng.randint(1, 9))), reverse=True)
        batch_size, per_forward = rng.randint(1, 5), rng.choice([0, 20, 50, 400])
        sizes = fewest_padded_tokens(np.array(lengths), batch_size, per_forward, 120)
        assert sum(sizes) == len(lengths) and max(sizes) <= batch_size
        every = [list(np.diff([0, *cut, len(lengths)])) for k in range(len(lengths))
                 for cut in itertools.combinations(range(1, len(lengths)), k)]
        cheapest = min(_cost(lengths, c, per_forward, 120) for c in every if max(c) <= batch_size)
        assert _cost(lengths, sizes, per_forward, 120) == cheapest


def test_inference_batches_of_mixed_lengths_split_where_padding_costs_more_than_a_forward() -> None:
    lengths = [64] * 4 + [12] * 28  # a server's batch: a few long texts among short ones
    split = EncodedSplit(input_ids=[[1] * n for n in lengths], targets=None, records=[])
    plain = batch_order(split, 32, shuffle=False)
    cut = batch_order(split, 32, shuffle=False, forward_cost_tokens=50)
    assert [len(b) for b in plain] == [32] and [len(b) for b in cut] == [4, 28]
    assert sorted(np.concatenate(cut).tolist()) == list(range(32))
    assert batch_order(split_of(40), 8, shuffle=False, forward_cost_tokens=10**6)[0].size == 8  # never past 8


def test_padded_widths_are_few_and_cost_at_most_a_quarter() -> None:
    widths = {padded_length(n, 10_000) for n in range(1, 1025)}
    assert widths == {8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256,
                      320, 384, 448, 512, 640, 768, 896, 1024}
    for n in range(1, 1025):
        assert n <= padded_length(n, 10_000) <= max(n + 7, n * 1.25)  # a multiple of 8, or a quarter more
    assert padded_length(200, 210) == 210 and padded_length(215, 210) == 215  # capped, never narrower than a row


def test_batches_pad_to_a_width_class_but_not_past_the_longest_example() -> None:
    ids = [[5] * n for n in (130, 100, 7)]
    split = EncodedSplit(input_ids=ids, targets=None, records=[], token_targets=[[1] * len(r) for r in ids])
    assert collate(split, np.array([1, 2]), pad_id=0).input_ids.shape == (2, 112)  # 100 rounds up to 112
    batch = collate(split, np.array([0, 2]), pad_id=0)
    assert batch.input_ids.shape == (2, 130)  # 130 would round to 160: capped at the split's longest example
    assert batch.attention_mask[1].tolist() == [1] * 7 + [0] * 123
    assert batch.targets[1, 7:].eq(IGNORE_INDEX).all() and batch.input_ids[1, 7:].eq(0).all()


def test_unknown_token_rate_counts_unk_among_non_special_tokens(tiny_bert) -> None:
    from transformers import AutoTokenizer

    from tunelab.data.encoding import encode_texts, unknown_token_rate

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    ids = encode_texts(["good great zebra xylophone", "bad movie"], tokenizer, 16)  # [CLS] ... [SEP] each
    assert unknown_token_rate(EncodedSplit(input_ids=ids, targets=None, records=[]), tokenizer) == 2 / 6
    english = encode_texts(["good great movie", "really bad acting"], tokenizer, 16)
    assert unknown_token_rate(EncodedSplit(input_ids=english, targets=None, records=[]), tokenizer) == 0.0


def test_unknown_token_rate_is_none_without_a_distinct_unknown_token() -> None:
    from types import SimpleNamespace

    from tunelab.data.encoding import unknown_token_rate

    split = EncodedSplit(input_ids=[[0, 5, 0]], targets=None, records=[])
    assert unknown_token_rate(split, SimpleNamespace(unk_token_id=None)) is None  # byte-level BPE
    assert unknown_token_rate(split, SimpleNamespace(unk_token_id=0, eos_token_id=0, all_special_ids=[0])) is None
    assert unknown_token_rate(EncodedSplit(input_ids=[[]], targets=None, records=[]),
                              SimpleNamespace(unk_token_id=1, all_special_ids=[1])) is None  # no text (images)
