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


def _fake_animal_package(root, images, labels) -> None:
    """A stand-in for the animal-mnist wheel: the same folder and the same gzipped numpy pickles."""
    import gzip
    import pickle

    data = root / "animal_mnist" / "data" / "Animal_MNIST"
    data.mkdir(parents=True)
    (root / "animal_mnist" / "__init__.py").write_text("")
    for kind, array in (("data", images), ("label", labels)):
        with gzip.open(data / f"animal_{kind}_version_3.gz", "wb") as handle:
            pickle.dump(array, handle)


def test_animal_mnist_reads_the_packaged_arrays(tmp_path, monkeypatch) -> None:
    from tunelab.data.builtin import BUILTIN_DATASETS, BUILTIN_TASKS

    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28).astype(np.uint8)
    _fake_animal_package(tmp_path, images, np.array([2, 0, 9]))
    monkeypatch.syspath_prepend(str(tmp_path))
    records = BUILTIN_DATASETS["animal-mnist"]()
    assert [r.label for r in records] == ["2", "0", "9"] and BUILTIN_TASKS["animal-mnist"] == "image_classification"
    assert records[1].where == "animal-mnist:1" and records[1].image.shape == (28, 28)
    assert np.allclose(records[1].image * 255, images[1])


def test_animal_mnist_refuses_a_pickle_that_carries_code(tmp_path, monkeypatch) -> None:
    import os

    from tunelab.data.images import load_animal_mnist_records

    class Runs:
        def __reduce__(self):
            return (os.system, ("echo ran",))

    _fake_animal_package(tmp_path, Runs(), np.array([0]))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(DataError, match="not a numpy array part; refused"):
        load_animal_mnist_records()
