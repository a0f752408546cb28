"""See any model as embeddings -> an ordered stack of blocks -> everything above (the head).

Depth-based strategies (partial freezing, layer-wise LR, gradual unfreezing, activation caching) speak in
block indices of this stack, never in per-model name patterns. The stack is discovered generically:
the longest `nn.ModuleList` whose children all share one class is the block stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import nn

from tunelab.errors import ModelError

__all__ = ["LayerStack", "discover_layer_stack"]

EMBEDDING_GROUP = -1


@dataclass(frozen=True)
class LayerStack:
    """Parameter grouping by depth: group -1 = embeddings, 0..N-1 = blocks, N = head (the rest)."""

    blocks_path: str                 # e.g. "network.bert.encoder.layer"
    num_blocks: int
    embedding_prefixes: tuple[str, ...]

    @property
    def head_group(self) -> int:
        return self.num_blocks

    def block_prefix(self, index: int) -> str:
        return f"{self.blocks_path}.{index}."

    def group_of(self, param_name: str) -> int:
        """Depth group of a parameter name: -1 embeddings, block index, or num_blocks for the head."""
        prefix = self.blocks_path + "."
        if param_name.startswith(prefix):
            return int(param_name[len(prefix):].split(".", 1)[0])
        if any(param_name.startswith(p) for p in self.embedding_prefixes):
            return EMBEDDING_GROUP
        return self.head_group

    def groups(self, param_names: list[str]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for name in param_names:
            out.setdefault(self.group_of(name), []).append(name)
        return out


def discover_layer_stack(model: nn.Module, blocks_path: Optional[str] = None) -> LayerStack:
    """Find the block stack of `model`; `blocks_path` names it explicitly for unusual architectures."""
    modules = dict(model.named_modules())
    if blocks_path is not None:
        stack = modules.get(blocks_path)
        if not isinstance(stack, nn.ModuleList) or len(stack) == 0:
            lists = [n for n, m in modules.items() if isinstance(m, nn.ModuleList)]
            raise ModelError(f"model.blocks: {blocks_path!r} is not a non-empty ModuleList; candidates: {lists}")
    else:
        blocks_path = _longest_repeated_list(modules, single=_declared_layers(model) == 1)
        stack = modules[blocks_path]
    embedding_prefixes = _embedding_prefixes(model, blocks_path)
    return LayerStack(blocks_path=blocks_path, num_blocks=len(stack), embedding_prefixes=embedding_prefixes)


def _declared_layers(model: nn.Module) -> object:
    """The layer count the model's transformers config declares (None without one)."""
    network = getattr(model, "network", model)
    return getattr(getattr(network, "config", None), "num_hidden_layers", None)


def _longest_repeated_list(modules: dict[str, nn.Module], single: bool = False) -> str:
    """The longest list of two or more blocks of one class; with `single` (the config declares one layer: a
    model cut to one block by model.num_blocks), a list of one block is a stack too."""
    best, best_len = None, 0
    for name, module in modules.items():
        if not isinstance(module, (nn.ModuleList, nn.Sequential)) or len(module) < (1 if single else 2):
            continue
        kinds = {type(child) for child in module}
        has_params = any(True for _ in module.parameters())
        if len(kinds) == 1 and has_params and len(module) > best_len:
            best, best_len = name, len(module)
    if best is None:
        raise ModelError(
            "could not find a stack of repeated blocks in this model; name it with model.blocks "
            "(the dotted path of its ModuleList of layers)"
        )
    return best


def _embedding_prefixes(model: nn.Module, blocks_path: str) -> tuple[str, ...]:
    """Modules below the stack: anything named like an embedding, outside the blocks."""
    prefixes: list[str] = []
    for name, module in model.named_modules():
        if not name or name.startswith(blocks_path):
            continue
        leaf = name.rsplit(".", 1)[-1].lower()
        if ("embed" in leaf or isinstance(module, nn.Embedding)) and not any(name.startswith(p) for p in prefixes):
            prefixes.append(name + ".")
    return tuple(prefixes)
