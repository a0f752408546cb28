"""Randomly initialised twins of the built-in backbones: the same architecture, shape and tokenizer with
none of the pre-training. `recommend` and its validation use them as the negative control that every
transferability score must rank last (a score that cannot tell pre-training from noise ranks nothing);
a user can train one to see what pre-training is worth on their data.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.atomic import atomic_dir, give_usual_modes
from tunelab.hashing import hash_files
from tunelab.paths import model_cache_dir

__all__ = ["random_twin_dir", "random_vision_twin_dir", "RANDOM_SEED"]

RANDOM_SEED = 0  # the twin's weights are the same on every machine
_DONE = "tunelab_random.json"  # written last: a folder without it is an interrupted build


def random_twin_dir(source: Path, name: str) -> Path:
    """The cached directory of `source`'s architecture with its own initialisation (seeded), built on first use
    (atomically). The pooling files of a sentence-transformers directory are left out: a random network was
    not trained to be read any particular way."""
    key = hash_files([source / "config.json"])[:16]
    out = model_cache_dir() / f"{name}-{key}"
    if (out / _DONE).is_file():
        return out
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from tunelab.models.quiet import quiet_transformers

    quiet_transformers()
    with atomic_dir(out, replace=True, fsync=False) as tmp:
        config = AutoConfig.from_pretrained(source)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model = AutoModel.from_config(config)
        model.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(source).save_pretrained(tmp)
        give_usual_modes(tmp)
        (tmp / _DONE).write_text(json.dumps({"source": str(source), "seed": RANDOM_SEED}) + "\n", encoding="utf-8")
    return out


def random_vision_twin_dir(name: str) -> Path:
    """EfficientNet-Lite0's architecture and preprocessing with its own (seeded) initialisation, in the
    format of the converted ImageNet directory (models/vision.py)."""
    import torch

    from tunelab.models.vision import EfficientNetBackbone, ImagePreprocessor

    out = model_cache_dir() / f"{name}-seed{RANDOM_SEED}"
    if (out / _DONE).is_file():
        return out
    with atomic_dir(out, replace=True, fsync=False) as tmp:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            backbone = EfficientNetBackbone()
        backbone.save_pretrained(tmp)
        ImagePreprocessor().save_pretrained(tmp)
        (tmp / _DONE).write_text(json.dumps({"source": "efficientnet-lite0", "seed": RANDOM_SEED}) + "\n",
                                 encoding="utf-8")
    return out
