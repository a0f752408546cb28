"""How a backbone says it was trained to pool: a sentence-transformers directory lists its modules in
`modules.json` (Transformer, then Pooling, then optionally Normalize) and the pooling mode in the Pooling
module's `config.json`. A sentence encoder such as all-MiniLM-L6-v2 was trained on the L2-normalised mean of
its token states, not on [CLS]; a frozen-feature head reads them best the same way. Imports no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

__all__ = ["DeclaredPooling", "declared_pooling"]

_MODES: dict[str, Literal["cls", "mean"]] = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean"}


@dataclass(frozen=True)
class DeclaredPooling:
    pooling: Literal["cls", "mean"]
    normalize: bool
    source: str  # the file that said so, for the run's note


def declared_pooling(model_dir: Path) -> Optional[DeclaredPooling]:
    """The pooling `model_dir` declares, or None when it declares none or one tunelab's heads do not have
    (max, mean-sqrt-len, several modes at once): the caller then keeps its own default."""
    modules = _read_json(model_dir / "modules.json")
    if not isinstance(modules, list):
        return None
    types = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in modules if isinstance(m, dict)}
    if "Pooling" not in types:
        return None
    pooling_file = model_dir / str(types["Pooling"].get("path", "")) / "config.json"
    settings = _read_json(pooling_file)
    if not isinstance(settings, dict):
        return None
    modes = [key for key, value in settings.items() if key.startswith("pooling_mode") and value is True]
    if len(modes) != 1 or modes[0] not in _MODES:
        return None
    return DeclaredPooling(_MODES[modes[0]], "Normalize" in types, str(pooling_file))


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
