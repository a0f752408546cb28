"""The settings each strategy runs with when it is one row of a comparison: its learning rate, epochs and
options, in one place beside the registry (compare reads them; a user overrides them per strategy with
`--set lora.optim.lr=2e-3`).

A comparison is only as fair as its settings: each strategy gets the values the literature and our own
measurements (BBC News / MiniLM, benchmarks/README.md) found good for it, not one learning rate for all.
The PEFT methods' learning rates are their own defaults (`default_lr` in each method's file), so they are
not repeated here. Values may depend on the backbone's depth and the config's epoch budget.
"""

from __future__ import annotations

from typing import Any

__all__ = ["recommended_settings", "COMPARE_ORDER"]

# the order a comparison lists and runs strategies in: cheapest first, so a killed comparison has the
# quick answers already
COMPARE_ORDER = ("head", "bitfit", "ia3", "lora", "houlsby", "pfeiffer", "prompt_tuning", "prefix_tuning",
                 "partial", "gradual", "full")


def recommended_settings(name: str, *, num_blocks: int, epochs: int) -> dict[str, Any]:
    """`key.path -> value` overrides that strategy `name` runs with on a backbone of `num_blocks` blocks,
    given the config's epoch budget."""
    if name == "head":
        # feature extraction: the head alone learns, from cached features, so it affords a larger step and
        # twice the epochs at a fraction of one epoch's cost of the others
        return {"optim.lr": 2e-3, "train.epochs": 2 * epochs}
    if name == "partial":
        # the top third of the blocks adapts (Howard & Ruder 2018; Yosinski et al. 2014: upper layers are
        # the task-specific ones), with layer-wise decay below the head
        return {"optim.lr": 1e-4, "strategy.freeze_blocks": round(num_blocks * 2 / 3),
                "strategy.layerwise_lr_decay": 0.9}
    if name == "gradual":
        # ULMFiT: one more block per epoch from the top; one extra epoch so the last one trains two blocks
        return {"optim.lr": 1e-4, "strategy.unfreeze_every": 1, "strategy.layerwise_lr_decay": 0.9,
                "train.epochs": epochs + 1}
    if name == "full":
        return {"optim.lr": 5e-5, "strategy.layerwise_lr_decay": 0.95}
    return {}  # PEFT methods: their sections' defaults and their own default learning rate
