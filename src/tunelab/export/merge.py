"""`tunelab export RUN_DIR --merge`: fold a mergeable adapter into the base weights and write a plain
Hugging Face directory that transformers loads without peft or tunelab.

The merged directory is loaded back and its logits compared with the adapter model's on probe inputs
before it is moved to its final name; a mismatch leaves nothing behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import torch
from safetensors.torch import load_file

from tunelab.artifacts.model_io import HEAD_WEIGHTS, load_run, save_hf_model
from tunelab.atomic import atomic_dir, sweep_leftovers
from tunelab.errors import TunelabError
from tunelab.strategies.peft.base import merge_adapter
from tunelab.strategies.registry import PEFT_METHODS, peft_method
from tunelab.tasks.registry import get_task

__all__ = ["export_merged", "merge_adapter", "probe_inputs"]


def probe_inputs(vocab_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(4, 24) token ids, some padded, drawn from the vocabulary above the special tokens."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab_size, (4, 24), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 16:] = 0
    mask[3, 8:] = 0
    return ids * mask, mask


def export_merged(run_dir: Path, out_dir: Path, *, atol: float = 1e-4,
                  extra: Optional[Callable[[Path, Any, float], None]] = None) -> dict[str, float]:
    """Write the merged model to `out_dir`; returns the largest logit difference found in the check.
    `extra(staging, run, diff)` adds files to the checked folder before it gets its final name."""
    run = load_run(run_dir)
    method = peft_method(run.config.strategy.name)
    if method is None:
        raise TunelabError(f"export --merge: {run_dir} used strategy {run.config.strategy.name!r}, which already saved a "
                           f"plain model in {run_dir / 'model'}; there is nothing to merge")
    if not method.mergeable:
        mergeable = ", ".join(n for n, m in PEFT_METHODS.items() if m.mergeable)
        raise TunelabError(f"export --merge: {method.name} adds computation that no weight can absorb, so it cannot be "
                           f"merged; mergeable methods: {mergeable}. Use the run directory with tunelab predict instead")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise TunelabError(f"export --out: {out_dir} exists and is not empty; choose a new folder")
    model = run.model.eval()
    ids, mask = probe_inputs(int(model.network.config.vocab_size))
    with torch.no_grad():
        expected = model(ids, mask)
    merge_adapter(model)
    sweep_leftovers(out_dir.parent, out_dir.name)  # what a killed export to this folder left
    # refuses an out_dir filled meanwhile (an empty one is taken over); not fsync'd, as the export never was
    with atomic_dir(out_dir, replace=False, fsync=False) as staging:
        save_hf_model(model, run.tokenizer, staging, run.config)
        got = _reload_logits(staging, run, ids, mask)
        diff = float((got - expected).abs().max())
        if diff > atol:
            raise TunelabError(f"export --merge: the merged model's logits differ from the adapter model's by {diff:.2e} "
                               f"(> {atol:g}); nothing was written. Please report this with the run directory")
        if extra is not None:
            extra(staging, run, diff)
    return {"max_abs_logit_diff": diff}


def _reload_logits(model_dir: Path, run, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Load the written directory as a fresh user would (transformers, no peft) and run the probe."""
    task = get_task(run.config.task)
    fresh = task.build_model(run.config.model, run.config.head, run.label_names, model_dir)
    if fresh.head is not None:
        fresh.head.load_state_dict(load_file(str(model_dir / HEAD_WEIGHTS)))
    with torch.no_grad():
        return fresh.eval()(ids, mask)
