"""transformers' logging, made quiet once for every loader (model, tokenizer, GGUF conversion)."""

from __future__ import annotations

import os

__all__ = ["quiet_transformers"]


def quiet_transformers() -> None:
    """Hide transformers' progress bars and 'newly initialised weights' chatter: our logs say what matters."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
