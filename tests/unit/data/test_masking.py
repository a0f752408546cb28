"""BERT's masking of token ids (data/masking.py): how many tokens, which kinds, drawn the same from the same seed,
fixed per example for evaluation, and drawn afresh for training batches per (seed, epoch, batch)."""

from __future__ import annotations

import torch

from tunelab.data.encoding import IGNORE_INDEX, EncodedSplit, iterate_batches
from tunelab.data.masking import MASK_SHARE, MaskingSpec, fixed_masks, make_mlm_masking, mask_tokens

PAD, CLS, SEP, MASK = 0, 2, 3, 4
SPEC = MaskingSpec(MASK, [PAD, 1, CLS, SEP, MASK], vocab_size=50)


def rows(n_rows: int, n_tokens: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`(B, T)` [CLS] own... [SEP] [PAD]*3 rows of ordinary ids, and the mask of the own tokens."""
    own = torch.randint(5, 50, (n_rows, n_tokens), generator=torch.Generator().manual_seed(seed))
    ids = torch.cat([torch.full((n_rows, 1), CLS), own, torch.full((n_rows, 1), SEP), torch.full((n_rows, 3), PAD)], 1)
    return ids, (ids >= 5)


def test_shares_of_chosen_masked_random_and_kept_tokens() -> None:
    ids, own = rows(400, 100)
    masked, targets = mask_tokens(ids, own, SPEC, torch.Generator().manual_seed(0))
    chosen = targets != IGNORE_INDEX
    assert (chosen.sum(1) == round(100 * MASK_SHARE)).all()          # exactly 15 of each row's 100 own tokens
    assert not (chosen & ~own).any()                                 # [CLS], [SEP], padding never chosen
    assert torch.equal(targets[chosen], ids[chosen])                 # targets are the original tokens
    assert torch.equal(masked[~chosen], ids[~chosen])                # nothing else changes
    n = chosen.sum().item()
    as_mask = (masked[chosen] == MASK).sum().item() / n
    kept = (masked[chosen] == ids[chosen]).sum().item() / n
    replaced = masked[chosen][(masked[chosen] != MASK) & (masked[chosen] != ids[chosen])]
    assert abs(as_mask - 0.8) < 0.02 and abs(kept - 0.1) < 0.015 and abs(1 - as_mask - kept - 0.1) < 0.015
    assert replaced.numel() and not torch.isin(replaced, SPEC.special).any()  # random tokens are never special


def test_short_rows_get_one_masked_token_and_empty_rows_none() -> None:
    ids = torch.tensor([[CLS, 9, SEP, PAD], [CLS, 9, 10, SEP], [CLS, SEP, PAD, PAD]])
    _, targets = mask_tokens(ids, ids >= 5, SPEC, torch.Generator().manual_seed(0))
    assert (targets != IGNORE_INDEX).sum(1).tolist() == [1, 1, 0]


def test_the_same_generator_state_gives_the_same_masks() -> None:
    ids, own = rows(8, 30)
    first = mask_tokens(ids, own, SPEC, torch.Generator().manual_seed(7))
    again = mask_tokens(ids, own, SPEC, torch.Generator().manual_seed(7))
    other = mask_tokens(ids, own, SPEC, torch.Generator().manual_seed(8))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[1], other[1])


def test_fixed_masks_depend_on_the_example_alone() -> None:
    examples = [[CLS, *range(10, 30), SEP], [CLS, *range(20, 45), SEP], [CLS, 7, 8, 9, SEP]]
    masked, targets = fixed_masks(examples, SPEC)
    masked_rev, targets_rev = fixed_masks(examples[::-1], SPEC)
    assert masked == masked_rev[::-1] and targets == targets_rev[::-1]   # order and company change nothing
    for ids, row, goal in zip(examples, masked, targets):
        assert len(row) == len(goal) == len(ids) and any(t != IGNORE_INDEX for t in goal)
        assert all(t == IGNORE_INDEX or t == i for t, i in zip(goal, ids))


def test_training_batches_are_masked_afresh_per_seed_epoch_and_batch() -> None:
    examples = [[CLS, *range(5 + i, 25 + i), SEP] for i in range(12)]
    masked, targets = fixed_masks(examples, SPEC)
    split = EncodedSplit(input_ids=masked, targets=None, records=[], token_targets=targets, targets_in_inputs=True,
                         augment=make_mlm_masking(SPEC))

    def epoch(seed: int, number: int) -> list:
        return list(iterate_batches(split, 4, pad_id=PAD, shuffle=True, seed=seed, epoch=number))

    first, again, later = epoch(0, 0), epoch(0, 0), epoch(0, 1)
    for batch, same in zip(first, again):
        assert torch.equal(batch.inputs["input_ids"], same.inputs["input_ids"])
        assert batch.targets is batch.inputs["labels"]                # the redrawn targets are the batch's
        chosen = batch.targets != IGNORE_INDEX
        originals = torch.tensor([examples[i] for i in batch.indices.tolist()])
        assert torch.equal(batch.targets[chosen], originals[chosen])  # recovered from the fixed masks
        assert (chosen.sum(1) == 3).all()                             # 15% of 20 own tokens
    by_index = lambda batches: {i: b.inputs["input_ids"][r] for b in batches for r, i in enumerate(b.indices.tolist())}  # noqa: E731
    assert any(not torch.equal(by_index(first)[i], by_index(later)[i]) for i in range(12))  # a new epoch, new masks
    plain = next(iterate_batches(split, 12, pad_id=PAD, shuffle=False))  # evaluation: the fixed masks
    assert plain.inputs["input_ids"].tolist() == masked
