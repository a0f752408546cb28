"""Load a backbone and its tokenizer from a built-in name or a local Hugging Face directory.

Offline by construction (`local_files_only`), safetensors only, and `trust_remote_code` only when the
config says so. Every failure names the directory and what is missing.
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from typing import Any, Literal, Optional

import torch
from safetensors import SafetensorError
from torch import nn

from tunelab.config.schema import HeadConfig, ModelConfig
from tunelab.errors import ModelError
from tunelab.hashing import hash_files
from tunelab.models.builtin import BUILTIN_MODELS
from tunelab.models.heads import PoolingHead
from tunelab.models.quiet import quiet_transformers
from tunelab.models.task_model import TaskModel
from tunelab.models.truncate import keep_first_blocks

__all__ = ["resolve_model_dir", "load_tokenizer", "build_task_model", "build_head", "hidden_size", "build_causal_lm", "build_masked_lm", "model_type",
           "hash_model_dir", "quiet_transformers", "count_parameters"]

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def resolve_model_dir(name: str, trust_pickle: bool = False) -> Path:
    """A built-in name becomes its packaged directory; anything else must be a model directory with safetensors
    weights. Pickle-only weights are refused unless `trust_pickle` (then see models/pickle_weights.py)."""
    if name in BUILTIN_MODELS:
        return BUILTIN_MODELS[name]()
    path = Path(name).expanduser()
    if not path.exists():
        raise ModelError(
            f"model: {name!r} is neither a built-in model ({', '.join(BUILTIN_MODELS)}) nor an existing directory; "
            "give a local Hugging Face model directory (tunelab never downloads from a hub)"
        )
    if not path.is_dir():
        raise ModelError(f"model: {path} is a file; give the Hugging Face model directory that contains it")
    if not (path / "config.json").is_file():
        raise ModelError(f"model: {path} has no config.json; is it a Hugging Face model directory (save_pretrained output)?")
    weights = list(path.glob("*.safetensors"))
    if not weights:
        pickles = sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles and trust_pickle:
            from tunelab.models.pickle_weights import convert_pickle_dir

            return convert_pickle_dir(path, pickles)
        if pickles:
            raise ModelError(
                f"model: {path} holds only pickle weights ({', '.join(p.name for p in pickles)}), which can run "
                "arbitrary code when loaded; convert them to safetensors (model.save_pretrained(dir, "
                "safe_serialization=True)), or pass --trust-pickle if you trust their source"
            )
        raise ModelError(f"model: {path} has no *.safetensors weights; add the model's weights file")
    return path


def load_tokenizer(model_dir: Path, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=trust_remote_code)
    except Exception as err:  # transformers raises many types here
        raise ModelError(f"model: cannot load a tokenizer from {model_dir}: {err}; the directory needs tokenizer files") from None


def build_task_model(model_cfg: ModelConfig, head_cfg: HeadConfig, *, problem_type: str, label_names: list[str],
                     num_outputs: int, model_dir: Path | None = None, native: Literal["sequence", "token"] = "sequence",
                     per_token: bool = False) -> TaskModel:
    """Backbone from `model_dir` (default: resolved from the config) plus a fresh head for the task.

    `native` picks the Hugging Face auto class of `head: native` (the task says which); `per_token` makes a
    tunelab head project every position instead of pooling (token tasks)."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification

    quiet_transformers()
    model_dir = model_dir or resolve_model_dir(model_cfg.name)
    head_cfg = head_cfg.with_defaults()  # settled already in a run; a direct call's `auto` is the plain default
    kwargs: dict[str, Any] = dict(local_files_only=True, use_safetensors=True, trust_remote_code=model_cfg.trust_remote_code)
    try:
        if head_cfg.type == "native":
            id2label = {i: n for i, n in enumerate(label_names)} if label_names else {0: "value"}
            extra = {"problem_type": problem_type} if native == "sequence" else {}
            config = AutoConfig.from_pretrained(model_dir, num_labels=num_outputs, id2label=id2label,
                                                label2id={n: i for i, n in id2label.items()}, **extra, **_no_code(kwargs))
            auto = AutoModelForSequenceClassification if native == "sequence" else AutoModelForTokenClassification
            with _silence():
                network = auto.from_pretrained(model_dir, config=config, **kwargs)
            return keep_first_blocks(TaskModel(network), model_cfg.num_blocks, model_dir)
        with _silence():
            network = AutoModel.from_pretrained(model_dir, add_pooling_layer=False, **kwargs)
    except ModelError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
        raise ModelError(f"model: cannot load {model_dir} as a {head_cfg.type} {problem_type} model: {_short(err)}; "
                         f"{_load_advice(model_dir, err)}") from None
    head = build_head(head_cfg, hidden_size(network), num_outputs, per_token=per_token)
    return keep_first_blocks(TaskModel(network, head), model_cfg.num_blocks, model_dir)


def hidden_size(network: nn.Module) -> int:
    """Width of the backbone's hidden states: what a head reads."""
    return int(getattr(network.config, "hidden_size", 0) or getattr(network.config, "d_model", 0))


def build_head(head_cfg: HeadConfig, hidden: int, num_outputs: int, *, per_token: bool = False) -> PoolingHead:
    """A fresh tunelab head (`linear` or `mlp`, settled) over `hidden`-wide states; a task's `build_head`."""
    return PoolingHead(hidden, num_outputs, kind=head_cfg.type, pooling="none" if per_token else head_cfg.pooling,
                       dropout=head_cfg.dropout, mlp_hidden=head_cfg.hidden_size, normalize=bool(head_cfg.normalize))


def build_causal_lm(model_cfg: ModelConfig, model_dir: Path | None = None,
                    wrapper: Optional[type[TaskModel]] = None) -> TaskModel:
    """A decoder LM with its own LM head (`AutoModelForCausalLM`), for instruction tuning; `wrapper`: the TaskModel
    class around it (default CausalLMTaskModel; preference tuning scores pairs of replies)."""
    from transformers import AutoModelForCausalLM

    from tunelab.models.causal_lm import CausalLMTaskModel

    quiet_transformers()
    model_dir = model_dir or resolve_model_dir(model_cfg.name)
    try:
        with _silence():
            network = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, use_safetensors=True,
                                                           trust_remote_code=model_cfg.trust_remote_code)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
        advice = _load_advice(model_dir, err)
        if "Unrecognized configuration class" in str(err):
            advice = "give a decoder language model directory (Llama, Mistral, GPT-2, ...)"
        raise ModelError(f"model: cannot load {model_dir} as a causal language model: {_short(err)}; {advice}") from None
    network.generation_config.pad_token_id = network.generation_config.pad_token_id or network.config.eos_token_id
    return keep_first_blocks((wrapper or CausalLMTaskModel)(network), model_cfg.num_blocks, model_dir)


def build_masked_lm(model_cfg: ModelConfig, model_dir: Path | None = None) -> TaskModel:
    """An encoder with its masked-LM head (`AutoModelForMaskedLM`), for continued pre-training. A checkpoint saved
    without one (a sentence encoder such as all-MiniLM-L6-v2 ships the bare BertModel) gets the head transformers
    builds for it: the decoder tied to the word embeddings, the transform layer initialised by the architecture's
    own `_init_weights`, the output bias zero; the model's `notes` say so."""
    from transformers import AutoModelForMaskedLM

    from tunelab.models.masked_lm import MaskedLMTaskModel

    quiet_transformers()
    model_dir = model_dir or resolve_model_dir(model_cfg.name)
    try:
        with _silence():
            network, info = AutoModelForMaskedLM.from_pretrained(
                model_dir, local_files_only=True, use_safetensors=True, trust_remote_code=model_cfg.trust_remote_code,
                output_loading_info=True)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
        advice = _load_advice(model_dir, err)
        if "Unrecognized configuration class" in str(err):
            advice = ("task mlm needs an encoder pre-trained as a masked LM (BERT, RoBERTa, DistilBERT, ...); for a "
                      "decoder LM use task: causal_lm")
        raise ModelError(f"model: cannot load {model_dir} as a masked language model: {_short(err)}; {advice}") from None
    model = MaskedLMTaskModel(network)
    created = sorted({key.rsplit(".", 1)[0] for key in info["missing_keys"] if key.endswith(".weight")})
    if info["missing_keys"]:
        tied = network.get_output_embeddings().weight is network.get_input_embeddings().weight
        model.notes = (f"MLM head: {model_dir} holds none, so it is built as transformers builds it: "
                       f"{', '.join(created) or 'its biases'} initialised by {type(network).__name__}'s own "
                       f"_init_weights (normal, std {getattr(network.config, 'initializer_range', '?')}; LayerNorm 1 "
                       "and 0), biases 0" + (", the decoder tied to the word embeddings" if tied else ""),)
    return model


def model_type(model_dir: Path) -> str:
    """The `model_type` of the directory's config.json ("" when it names none)."""
    import json

    try:
        return str(json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("model_type", ""))
    except (OSError, ValueError) as err:
        raise ModelError(f"model: cannot read {model_dir / 'config.json'}: {err}") from None


def hash_model_dir(model_dir: Path) -> str:
    """sha256 over the weight files (name, then bytes, in name order), so a run records exactly which base
    weights it started from; hashed once per process while the files are unchanged (`hash_files`)."""
    return hash_files(sorted(model_dir.glob("*.safetensors")), with_names=True)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(parameter_count(p) for p in model.parameters())
    trainable = sum(parameter_count(p) for p in model.parameters() if p.requires_grad)
    return trainable, total


def parameter_count(param: torch.Tensor) -> int:
    """Weights a parameter holds: a 4-bit one (bitsandbytes packs two in a byte, QLoRA's base) by the shape
    its quantization state records, not by its bytes."""
    state = getattr(param, "quant_state", None)
    return math.prod(state.shape) if state is not None and getattr(state, "shape", None) else param.numel()


def _short(err: BaseException, limit: int = 300) -> str:
    """The first line of a library error, cut short (transformers lists every known architecture)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= limit else text[:limit] + " ..."


def _load_advice(model_dir: Path, err: BaseException) -> str:
    if isinstance(err, SafetensorError) or "safetensors" in str(err).lower() or "deserializ" in str(err):
        files = ", ".join(p.name for p in sorted(model_dir.glob("*.safetensors"))) or "the weights file"
        return f"{files} is damaged or not safetensors: re-save the model (save_pretrained) or copy it again"
    if "Unrecognized configuration class" in str(err) or "model_type" in str(err):
        try:
            import json

            kind = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("model_type", "?")
        except (OSError, ValueError):
            kind = "?"
        return (f"config.json says model_type {kind!r}, which is not a text encoder transformers can classify with; "
                "give a text model directory (BERT, RoBERTa, DistilBERT, ...)")
    return "check that the directory holds a complete Hugging Face model (config.json + *.safetensors)"


def _no_code(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k != "use_safetensors"}


@contextlib.contextmanager
def _silence():
    """transformers prints load reports to stdout in some versions; keep the user's terminal clean."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield



