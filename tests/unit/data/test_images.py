"""Image readers (folder, NPZ, digits), resizing/normalisation, and the train-time augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tunelab.data.images import images_to_tensor, load_digits_records, make_augment, read_images
from tunelab.errors import DataError


def test_folder_reader_one_subfolder_per_class(tmp_path: Path) -> None:
    from PIL import Image

    for label, value in (("cat", 0), ("dog", 255)):
        (tmp_path / label).mkdir()
        Image.fromarray(np.full((5, 7, 3), value, dtype=np.uint8)).save(tmp_path / label / "a.png")
        Image.fromarray(np.full((5, 7), value, dtype=np.uint8)).save(tmp_path / label / "b.jpg")
    records = read_images(tmp_path)
    assert [r.label for r in records] == ["cat", "cat", "dog", "dog"]
    pixels = images_to_tensor(records, 8, (0.5,) * 3, (0.5,) * 3)
    assert pixels.shape == (4, 3, 8, 8)
    assert pixels[0].min() == pytest.approx(-1.0) and pixels[3].max() == pytest.approx(1.0, abs=1e-2)


def test_npz_reader_and_its_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "ok.npz", images=np.zeros((3, 4, 4), dtype=np.uint8), labels=np.array([0, 1, 1]))
    assert [r.label for r in read_images(tmp_path / "ok.npz")] == ["0", "1", "1"]
    np.savez(tmp_path / "hot.npz", images=np.full((2, 4, 4), 7.0), labels=np.array([0, 1]))
    with pytest.raises(DataError, match=r"float `images` must lie in \[0, 1\]"):
        read_images(tmp_path / "hot.npz")
    np.savez(tmp_path / "nolabels.npz", images=np.zeros((2, 4, 4)))
    with pytest.raises(DataError, match="no array named `labels`"):
        read_images(tmp_path / "nolabels.npz")
    with pytest.raises(DataError, match="one sub-folder of images per class"):
        read_images(tmp_path / "missing.png")


def test_digits_builtin() -> None:
    records = load_digits_records()
    assert len(records) == 1797 and sorted({r.label for r in records}) == [str(i) for i in range(10)]
    assert records[0].image.shape == (8, 8) and 0.0 <= records[0].image.min() and records[0].image.max() <= 1.0


def test_augment_is_seeded_and_identity_without_change() -> None:
    pixels = torch.randn(4, 3, 16, 16)
    same = make_augment((1.0, 1.0), hflip=False, rotation=0.0)
    out = same({"pixel_values": pixels}, torch.Generator().manual_seed(0))["pixel_values"]
    assert torch.allclose(out, pixels, atol=1e-5)
    warp = make_augment((0.5, 0.9), hflip=True, rotation=15.0)
    a = warp({"pixel_values": pixels}, torch.Generator().manual_seed(1))["pixel_values"]
    b = warp({"pixel_values": pixels}, torch.Generator().manual_seed(1))["pixel_values"]
    assert torch.equal(a, b) and not torch.allclose(a, pixels)
