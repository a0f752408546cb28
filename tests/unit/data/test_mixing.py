"""Multi-task batches (data/mixing.py): how many batches each task gets an epoch, in which order, and that each
task's batches are its single-task run's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tunelab.data.encoding import EncodedSplit, iterate_batches
from tunelab.data.mixing import TaskMixture, mixing_counts


def split(n: int, seed: int = 0) -> EncodedSplit:
    rng = np.random.default_rng(seed)
    ids = [[1, *rng.integers(5, 20, size=int(rng.integers(2, 12))).tolist(), 2] for _ in range(n)]
    return EncodedSplit(input_ids=ids, targets=torch.arange(n) % 2, records=[])


def mixture(sizes: dict[str, int], mixing: str = "proportional", temperature: float = 2.0) -> TaskMixture:
    return TaskMixture({name: split(n, i) for i, (name, n) in enumerate(sizes.items())}, mixing, temperature)


def stream(mix: TaskMixture, batch_size: int, epoch: int = 0, seed: int = 0) -> list:
    def part_batches(part: EncodedSplit, draw: int):
        return iterate_batches(part, batch_size, pad_id=0, shuffle=True, seed=seed, epoch=epoch, draw=draw)
    return list(mix.batches(batch_size, part_batches, seed=seed, epoch=epoch))


def test_proportional_gives_each_task_its_single_task_epoch() -> None:
    assert mixing_counts([700, 100, 33], 16) == [44, 7, 3]


@pytest.mark.parametrize("sizes", [[700, 100], [5000, 10], [50, 50, 400], [17, 1000, 3]])
def test_temperature_shares_the_same_batches_by_n_to_the_one_over_t(sizes: list[int]) -> None:
    total = sum(mixing_counts(sizes, 16))
    for t in (1.0, 2.0, 5.0, 100.0):
        counts = mixing_counts(sizes, 16, "temperature", t)
        assert sum(counts) == total and min(counts) >= 1
        shares = np.array(sizes, dtype=float) ** (1 / t)
        assert np.all(np.abs(np.array(counts) - total * shares / shares.sum()) <= 1)  # largest remainders
    flat = mixing_counts(sizes, 16, "temperature", 100.0)
    assert max(flat) / min(flat) < 1.1  # a large T: about equal shares


def test_a_small_task_gains_batches_as_the_temperature_rises() -> None:
    small = [mixing_counts([700, 100], 16, "temperature", t)[1] for t in (1.0, 2.0, 5.0, 100.0)]
    assert small == sorted(small) and small[0] == 6 and small[-1] in (25, 26)


def test_every_batch_holds_one_task_in_the_counts_drawn_per_seed_and_epoch() -> None:
    mix = mixture({"a": 70, "b": 20, "c": 9}, "temperature", 2.0)
    batches = stream(mix, 8)
    heads = [b.head for b in batches]
    assert len(batches) == mix.num_batches(8) == 9 + 3 + 2
    assert {h: heads.count(h) for h in "abc"} == mix.counts(8)
    for batch in batches:  # homogeneous: the rows are that task's examples
        assert batch.indices.max() < len(mix.parts[batch.head])
    assert heads == [b.head for b in stream(mix, 8)]  # repeats
    assert heads != [b.head for b in stream(mix, 8, epoch=1)] and heads != [b.head for b in stream(mix, 8, seed=1)]


def test_a_task_with_more_batches_than_its_data_starts_another_pass_in_its_own_order() -> None:
    mix = mixture({"big": 400, "small": 24}, "temperature", 5.0)
    counts = mix.counts(8)
    assert counts["small"] > 3  # 24 examples: 3 batches a pass
    rows = [b.indices.tolist() for b in stream(mix, 8) if b.head == "small"]
    first, second = sorted(sum(rows[:3], [])), sorted(sum(rows[3:6], []))
    assert first == second == list(range(24))  # each pass sees every example once
    assert rows[:3] != rows[3:6]  # in another order


def test_one_task_is_its_single_task_stream() -> None:
    part = split(50)
    mix = TaskMixture({"only": part})
    ours = stream(mix, 8, epoch=2, seed=3)
    alone = list(iterate_batches(part, 8, pad_id=0, shuffle=True, seed=3, epoch=2))
    assert len(ours) == len(alone) == part.num_batches(8)
    for a, b in zip(ours, alone):
        assert torch.equal(a.indices, b.indices) and torch.equal(a.inputs["input_ids"], b.inputs["input_ids"])
        assert a.head == "only"
