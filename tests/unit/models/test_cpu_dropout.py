"""The CPU dropout and attention are torch's dropout and SDPA in distribution and in their gradients, and
leave evaluation, saved models and resumable randomness untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from tunelab.models import cpu_dropout
from tunelab.models.cpu_dropout import ATTENTION_NAME, CpuDropout, attention, keep_mask, use_fast_cpu_dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_mask_keeps_each_element_with_probability_one_minus_p(p: float) -> None:
    torch.manual_seed(0)
    keep = keep_mask((400, 1000), p)
    assert keep.dtype == torch.bool and keep.shape == (400, 1000)
    # 400k Bernoulli draws: the standard error of the mean is below 0.0008
    assert abs(keep.float().mean().item() - (1 - p)) < 0.004
    # independent across positions: neighbouring lanes of one int64 word are uncorrelated
    a, b = keep.flatten()[0::4].float(), keep.flatten()[1::4].float()
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item()) < 0.01


def test_keep_mask_follows_torchs_seed_for_repeatable_and_resumable_runs() -> None:
    torch.manual_seed(3)
    first = keep_mask((7, 9), 0.3)
    state = torch.get_rng_state()
    after = keep_mask((7, 9), 0.3)
    torch.manual_seed(3)
    assert torch.equal(keep_mask((7, 9), 0.3), first)
    torch.set_rng_state(state)  # what a checkpoint restores
    assert torch.equal(keep_mask((7, 9), 0.3), after)
    assert keep_mask((5,), 0.0).all()


def test_cpu_dropout_scales_kept_values_and_masks_the_gradient_like_torch() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 32, requires_grad=True)
    layer = CpuDropout(0.25)
    y = layer(x)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.75)
    y.sum().backward()
    assert torch.allclose(x.grad, kept.float() / 0.75)
    layer.eval()
    assert layer(x) is x
    assert isinstance(layer, nn.Dropout) and layer.p == 0.25


class _Attn(nn.Module):
    """What an HF attention layer passes in: the module itself (only `training` and options are read)."""


def _reference(q, k, v, mask, keep, p):
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return ((scores.softmax(-1) * keep / (1 - p)) @ v).transpose(1, 2)


def test_attention_with_dropout_equals_softmax_attention_under_the_same_mask(monkeypatch) -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, requires_grad=True) for _ in range(3))
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[1, :, :, 3:] = False  # the second example has two padding tokens
    keep = torch.rand(2, 3, 5, 5) > 0.2
    monkeypatch.setattr(cpu_dropout, "keep_mask", lambda shape, p, device: keep)
    out, weights = attention(_Attn(), q, k, v, mask, dropout=0.2)
    expected = _reference(q, k, v, mask, keep, 0.2)
    assert weights is None and out.shape == (2, 5, 3, 4)
    assert torch.allclose(out, expected, atol=1e-6)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    expected_grads = torch.autograd.grad(expected.square().sum(), (q, k, v))
    for got, want in zip(grads, expected_grads):
        assert torch.allclose(got, want, atol=1e-5)


def test_attention_without_dropout_is_sdpa_exactly() -> None:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    ours, _ = attention(_Attn(), q, k, v, mask, dropout=0.0)
    theirs, _ = sdpa_attention_forward(_Attn(), q, k, v, mask, dropout=0.0, is_causal=False)
    assert torch.equal(ours, theirs)


def test_a_bert_with_the_cpu_kernels_predicts_the_same_and_saves_a_plain_config(tiny_bert: Path,
                                                                                tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).eval()
    ids = torch.randint(5, 20, (3, 8))
    mask = torch.ones(3, 8, dtype=torch.long)
    mask[0, 5:] = 0
    before = model(input_ids=ids, attention_mask=mask).logits
    swapped = use_fast_cpu_dropout(model)
    assert swapped == {"dropout": 8, "attention": 1}  # embeddings, 3 per block x 2, classifier; one config
    assert model.config._attn_implementation == ATTENTION_NAME
    assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, before)  # eval: SDPA, no dropout
    model.train()
    torch.manual_seed(1)
    first = model(input_ids=ids, attention_mask=mask).logits
    torch.manual_seed(1)
    assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, first)  # seeded: repeatable
    assert not torch.allclose(first, before)  # training: dropout is on
    first.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad and p.dim() == 2
               and "word_embeddings" not in str(p.shape))
    model.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert ATTENTION_NAME not in json.dumps(saved)  # the real library reloads it as it always did
