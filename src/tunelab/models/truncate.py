"""`model.num_blocks: N`: a backbone cut to the first N blocks of its LayerStack, a smaller and faster student.

Truncation speaks in LayerStack indices (the blocks the stack discovered, whatever the architecture names them),
and keeps the embeddings, blocks [0, N) and everything above the stack (final norm, pooler, head). The
model's configuration is told the new depth through its `num_hidden_layers` (transformers maps the name to
`n_layer`, `n_layers`, ... per architecture), so the saved directory loads with transformers as an N-layer
model. A config whose layer count is not the stack's (an encoder-decoder, a backbone without a transformers
config) is refused: a directory that says one depth and holds another would not load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from tunelab.errors import ModelError
from tunelab.models.layerstack import discover_layer_stack
from tunelab.models.task_model import TaskModel

__all__ = ["keep_first_blocks", "check_num_blocks"]

_PER_LAYER_LISTS = ("layer_types",)  # config lists with one entry per layer (transformers checks their length)


def keep_first_blocks(model: TaskModel, n: Optional[int], source: Path | str) -> TaskModel:
    """`model` with blocks [N, ...) of its LayerStack removed, in place (None or N = all: unchanged)."""
    stack = model.layer_stack
    if n is None or n == stack.num_blocks:
        return model
    config = getattr(model.network, "config", None)
    _check(n, stack.num_blocks, _config_layers(config), source)
    blocks = model.get_submodule(stack.blocks_path)
    del blocks[n:]
    config.num_hidden_layers = n
    for name in _PER_LAYER_LISTS:
        value = getattr(config, name, None)
        if isinstance(value, list) and len(value) == stack.num_blocks:
            setattr(config, name, value[:n])
    model.layer_stack = discover_layer_stack(model, stack.blocks_path)
    return model


def check_num_blocks(model_dir: Path, n: Optional[int], trust_remote_code: bool = False) -> None:
    """Before any model is built (prepare): N within the depth the directory's config.json declares."""
    if n is None:
        return
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(f"model.num_blocks: cannot read the depth of {model_dir} from its config.json ({err}); "
                         "remove model.num_blocks or give a transformers model directory") from None
    layers = _config_layers(config)
    if layers is not None and not 1 <= n <= layers:
        _check(n, layers, layers, model_dir)


def _config_layers(config: Any) -> Optional[int]:
    value = getattr(config, "num_hidden_layers", None)
    return value if isinstance(value, int) else None


def _check(n: int, blocks: int, layers: Optional[int], source: Path | str) -> None:
    if not 1 <= n <= blocks:
        raise ModelError(f"model.num_blocks: {n} is out of range: {source} has {blocks} blocks; choose 1 to {blocks} "
                         "(or remove it to keep them all)")
    if layers != blocks:
        raise ModelError(f"model.num_blocks: {source}'s configuration declares num_hidden_layers={layers}, but its "
                         f"block stack has {blocks} blocks, so a cut model would not load back as what it is; "
                         "remove model.num_blocks for this model")
