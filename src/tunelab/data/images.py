"""Image readers and preprocessing: an image folder (one sub-folder per class), NPZ arrays, and the
built-in scikit-learn digits; resizing, normalisation and train-time augmentation in plain torch.

Records keep the image (an array) or its file in `Record.image`; `text` is the file path or an id, so a
prediction row says which image it is. Augmentation (random resized crop, horizontal flip, small
rotation) is one affine warp per image (`affine_grid` + `grid_sample`): no torchvision needed.
"""

from __future__ import annotations

import gzip
import io
import math
import pickle
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from tunelab.data.records import Record
from tunelab.errors import DataError
from tunelab.optional import package_file, reinstall_command, require

__all__ = ["read_images", "load_digits_records", "load_animal_mnist_records", "images_to_tensor", "make_augment",
           "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def read_images(path: str | Path, *, require_labels: bool = True) -> list[Record]:
    """A folder of class sub-folders (label = sub-folder name), or an `.npz` with `images` and `labels`."""
    path = Path(path)
    if path.is_dir():
        return _read_folder(path, require_labels)
    if path.suffix.lower() == ".npz" and path.is_file():
        return _read_npz(path, require_labels)
    raise DataError(f"{path}: for image classification give a folder with one sub-folder of images per class, "
                    "or an .npz file with arrays `images` (N, H, W[, C]) and `labels` (N,)")


def _read_folder(root: Path, require_labels: bool) -> list[Record]:
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    loose = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not classes and loose and not require_labels:
        return [Record(text=str(p), label="", where=str(p), image=p) for p in loose]
    records = [Record(text=str(f), label=c.name, where=str(f), image=f)
               for c in classes for f in sorted(c.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not records:
        raise DataError(f"{root}: no images found; put each class's images ({', '.join(IMAGE_SUFFIXES)}) in a "
                        "sub-folder named after the class")
    return records


def _read_npz(path: Path, require_labels: bool) -> list[Record]:
    with np.load(path, allow_pickle=False) as data:
        if "images" not in data:
            raise DataError(f"{path}: no array named `images` (found: {', '.join(data.files)}); save it with "
                            "np.savez(path, images=..., labels=...)")
        images = data["images"]
        labels = data["labels"] if "labels" in data else None
    if labels is None and require_labels:
        raise DataError(f"{path}: no array named `labels`; save one class per image: np.savez(path, images=..., labels=...)")
    if images.ndim not in (3, 4) or (labels is not None and len(labels) != len(images)):
        raise DataError(f"{path}: `images` must be (N, H, W) or (N, H, W, C) with one label each; got images "
                        f"{images.shape} and labels {None if labels is None else labels.shape}")
    if images.dtype != np.uint8 and (images.min() < 0 or images.max() > 1):
        raise DataError(f"{path}: float `images` must lie in [0, 1] (found {images.min():.3g}..{images.max():.3g}); "
                        "scale them, or save uint8 pixels (0-255)")
    scaled = images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
    return [Record(text=f"{path.name}#{i}", label="" if labels is None else str(labels[i]).strip(),
                   where=f"{path}:image {i}", image=scaled[i]) for i in range(len(images))]


def load_digits_records() -> list[Record]:
    """scikit-learn's bundled digits: 1,797 grey 8x8 images of the digits 0-9 (pixels 0-16, scaled to [0, 1])."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    return [Record(text=f"digits #{i}", label=str(int(t)), where=f"digits:{i}", image=images[i])
            for i, t in enumerate(digits.target)]


_ANIMAL_PACKAGE = "animal_mnist"


def load_animal_mnist_records() -> list[Record]:
    """Animal-MNIST (PyPI `animal-mnist` 0.4, MIT): 10,000 grey 28x28 silhouettes of 10 animals, 1,000 each,
    in MNIST's format: far from ImageNet's photographs, like digits but less easy. The package does not say
    which index is which animal, so labels are the indices "0".."9". `where` is `"animal-mnist:<i>"`."""
    files = [package_file(_ANIMAL_PACKAGE, f"data/Animal_MNIST/animal_{kind}_version_3.gz", "the animal-mnist data set",
                          error=DataError) for kind in ("data", "label")]
    images, labels = (_numpy_pickle(f) for f in files)
    if images.shape != (len(labels), 28, 28):
        raise DataError(f"{files[0]}: expected (N, 28, 28) images with one label each, got {images.shape}; "
                        f"reinstall it: {reinstall_command(_ANIMAL_PACKAGE)}")
    scaled = images.astype(np.float32) / 255.0
    return [Record(text=f"animal-mnist #{i}", label=str(int(t)), where=f"animal-mnist:{i}", image=scaled[i])
            for i, t in enumerate(labels)]


class _ArraysOnly(pickle.Unpickler):
    """Unpickles a plain numpy array and nothing else: any other global (code) is refused, the same rule as
    `torch.load(weights_only=True)`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return _reconstruct_function()
        raise pickle.UnpicklingError(f"{module}.{name} is not a numpy array part; refused")


def _reconstruct_function() -> Any:
    try:  # numpy >= 2 moved it (the old path still works there, with a deprecation warning)
        from numpy._core.multiarray import _reconstruct  # type: ignore[import-not-found]
    except ImportError:
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


def _numpy_pickle(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as handle:
            array = _ArraysOnly(io.BytesIO(handle.read())).load()
    except (OSError, EOFError, pickle.UnpicklingError) as err:
        raise DataError(f"{path}: not a gzipped numpy array ({err}); reinstall the package") from None
    if not isinstance(array, np.ndarray):
        raise DataError(f"{path}: holds {type(array).__name__}, not a numpy array; reinstall the package")
    return array


def _as_array(record: Record) -> np.ndarray:
    """(H, W, C) float in [0, 1]."""
    image: Any = record.image
    if isinstance(image, (str, Path)):
        require(f"{record.where}: reading image files", "PIL", error=DataError)
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(image) as handle:
                image = np.asarray(handle.convert("RGB"), dtype=np.float32) / 255.0
        except (OSError, UnidentifiedImageError) as err:
            raise DataError(f"{record.where}: cannot read the image ({err}); replace or remove the file") from None
    array = np.asarray(image, dtype=np.float32)
    return array[..., None] if array.ndim == 2 else array


def images_to_tensor(records: list[Record], size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """`(N, 3, size, size)` normalised pixels: grey images repeated to 3 channels, resized bilinearly."""
    out = torch.empty((len(records), 3, size, size))
    mean_t, std_t = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    for i, record in enumerate(records):
        pixels = torch.from_numpy(_as_array(record)).permute(2, 0, 1)  # (C, H, W)
        pixels = pixels[:3] if pixels.shape[0] >= 3 else pixels[:1].expand(3, -1, -1)
        resized = F.interpolate(pixels[None], size=(size, size), mode="bilinear", align_corners=False,
                                antialias=pixels.shape[-1] > size)[0]
        out[i] = (resized - mean_t) / std_t
    return out


def make_augment(crop_scale: tuple[float, float], hflip: bool, rotation: float, fill: Optional[float] = None):
    """A batch transform: per image, a random resized crop (area share in `crop_scale`, aspect 3/4..4/3),
    an optional horizontal flip and a rotation in +-`rotation` degrees, as one affine warp."""
    def augment(inputs: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        pixels = inputs["pixel_values"]  # (B, 3, S, S)
        b = pixels.shape[0]
        rand = lambda: torch.rand(b, generator=generator)  # noqa: E731
        area = crop_scale[0] + (crop_scale[1] - crop_scale[0]) * rand()
        aspect = torch.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * rand())
        sx, sy = (area * aspect).sqrt(), (area / aspect).sqrt()
        fits = (sx <= 1) & (sy <= 1)  # a crop that would leave the image keeps the area at aspect 1
        sx, sy = torch.where(fits, sx, area.sqrt()), torch.where(fits, sy, area.sqrt())
        tx, ty = (1 - sx) * (2 * rand() - 1), (1 - sy) * (2 * rand() - 1)
        angle = torch.deg2rad(rotation * (2 * rand() - 1))
        flip = torch.where(rand() < 0.5, -1.0, 1.0) if hflip else torch.ones(b)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack([torch.stack([sx * cos * flip, -sy * sin, tx], 1),
                             torch.stack([sx * sin * flip, sy * cos, ty], 1)], 1)  # (B, 2, 3)
        grid = F.affine_grid(theta.to(pixels.dtype), list(pixels.shape), align_corners=False)
        return {**inputs, "pixel_values": F.grid_sample(pixels, grid.to(pixels.device), padding_mode="border",
                                                        align_corners=False)}
    return augment
