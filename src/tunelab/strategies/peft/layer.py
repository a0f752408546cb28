"""The base class of every module a PEFT method inserts: it declares the names of its own parameters.

Kept apart from `base.py` because it is an `nn.Module`: the methods' files (sections, rules) import no
torch, their `<method>_layers.py` files subclass this.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from tunelab.errors import ModelError

__all__ = ["PeftLayer"]


class PeftLayer(nn.Module):
    """A module inserted by a PEFT method. `declared` lists its own trainable parameter names (local to the
    layer); `peft_keys` maps them to the key suffixes of peft's on-disk format where the method uses it."""

    declared: ClassVar[tuple[str, ...]] = ()
    mergeable: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.merged = False

    def declared_names(self) -> tuple[str, ...]:
        """The declared parameters that exist on this instance (e.g. DoRA's magnitude only when enabled)."""
        own = dict(self.named_parameters())
        return tuple(n for n in self.declared if n in own)

    def peft_keys(self) -> dict[str, str]:
        return {n: n for n in self.declared_names()}

    def merge(self) -> None:
        raise ModelError(f"{type(self).__name__} cannot be merged into the base weights")

    def unmerge(self) -> None:
        raise ModelError(f"{type(self).__name__} cannot be merged into the base weights")
