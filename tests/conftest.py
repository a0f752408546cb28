"""Shared fixtures: a tiny randomly initialised BERT built in the test (no files shipped) and small data."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path
from typing import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _cache_root(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Runs in tests write their activation cache to a temporary folder, never to ~/.cache. The models
    converted once (smollm2 dequantised from GGUF takes ~20 s) stay in the user's cache, shared between
    sessions, through a link."""
    from tunelab.paths import model_cache_dir

    models = model_cache_dir()
    models.mkdir(parents=True, exist_ok=True)
    root = tmp_path_factory.mktemp("cache")
    (root / "models").symlink_to(models, target_is_directory=True)
    os.environ["TUNELAB_CACHE"] = str(root)


@pytest.fixture(scope="session", autouse=True)
def _fp32_on_every_cpu() -> Iterator[None]:
    """`train.precision: auto` means bf16 on CPUs with bf16 units: in this process tests that compare numbers
    at fp32 tolerance see the same precision on every machine (session-wide, so module fixtures too). Tests
    of the bf16 choice patch it back; tests that train in a subprocess write `precision: fp32`."""
    from tunelab.inference import precision

    patch = pytest.MonkeyPatch()
    patch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    yield
    patch.undo()


WORDS = ["good", "great", "fine", "nice", "bad", "awful", "poor", "sad", "the", "a", "movie", "film", "was", "is",
         "very", "really", "plot", "acting", "story", "and"]
POSITIVE, NEGATIVE = WORDS[:4], WORDS[4:8]
FILLER = WORDS[8:]


def make_tiny_bert(path: Path, *, layers: int = 2, hidden: int = 32) -> Path:
    """A 2-block BERT with a word-level vocabulary, saved as a Hugging Face directory (safetensors)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    import inspect

    if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters:  # transformers >= 5
        tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    else:
        tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=64)
    torch.manual_seed(0)
    BertForMaskedLM(config).bert.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def sentiment_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.sample(FILLER, 4) + rng.sample(POSITIVE if label == "pos" else NEGATIVE, 2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


REPO = Path(__file__).resolve().parents[1]


def load_benchmark(name: str):
    """benchmarks/<name>.py as a module (benchmarks/ is no package), registered in sys.modules, where its
    dataclasses look their module up."""
    import importlib.util
    import sys

    if str(REPO / "benchmarks") not in sys.path:  # as when run as a script: its folder's modules (common.py) import
        sys.path.append(str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def train_via_cli(config: Path | dict, *args: str, folder: Path | None = None) -> None:
    """`tunelab train` through the CLI, asserting it succeeds: on a config file (a shipped one under
    `REPO / "configs"`), or on a raw mapping written to `folder/c.yaml`."""
    import yaml
    from typer.testing import CliRunner

    from tunelab.cli import app

    if isinstance(config, dict):
        assert folder is not None, "a raw config needs a folder to be written to"
        path = folder / "c.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        config = path
    result = CliRunner().invoke(app, ["train", str(config), *args])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def sentiment_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "train.csv", sentiment_rows(120))


@pytest.fixture
def tiny_config(tiny_bert: Path, sentiment_csv: Path, tmp_path: Path) -> dict:
    """A raw config mapping for a fast run on the tiny model."""
    return {
        "model": str(tiny_bert),
        "task": "classification",
        "data": {"train": str(sentiment_csv), "max_length": 16, "validation_split": 0.2, "test_split": 0.2},
        "strategy": {"name": "full"},
        "optim": {"lr": 3e-3},
        "train": {"epochs": 2, "batch_size": 8, "seed": 0},
        "output": str(tmp_path / "run"),
        "report": False,  # ~1 s of plots a run: the tests of report.html ask for it
    }


@pytest.fixture
def build_tiny(tiny_bert: Path):
    """Factory: a fresh TaskModel on the tiny BERT (native head unless `head` is given), 2 labels."""
    from tunelab.config.schema import HeadConfig, ModelConfig
    from tunelab.models import build_task_model

    def build(head: str = "native"):
        import torch

        torch.manual_seed(0)
        return build_task_model(ModelConfig(name=str(tiny_bert)), HeadConfig(type=head), problem_type="single_label_classification",
                                label_names=["neg", "pos"], num_outputs=2)
    return build


@pytest.fixture
def adapter_run(tiny_bert: Path, sentiment_csv: Path, build_tiny, tmp_path: Path):
    """Factory: a run directory with a saved PEFT adapter whose declared parameters (and head) were moved
    away from their initial values, without paying for training."""
    def make(strategy: dict, *, head: str = "native", name: str = "run", labels: tuple[str, ...] = ("neg", "pos"), seed: int = 1,
             with_model: bool = False):
        import json

        import torch
        from transformers import AutoTokenizer

        from tunelab.artifacts.model_io import save_task_model
        from tunelab.catalog import parse_config
        from tunelab.config.loading import config_to_yaml
        from tunelab.strategies import compile_strategy

        config = parse_config({"model": str(tiny_bert), "data": {"train": str(sentiment_csv)}, "strategy": strategy,
                               "head": {"type": head}})
        model = build_tiny(head)
        plan = compile_strategy(config.strategy, model, config.optim, 1)
        torch.manual_seed(seed)
        with torch.no_grad():
            for pname, param in model.named_parameters():
                if pname in plan.trainable:
                    param.add_(0.1 * torch.randn_like(param))
        run_dir = tmp_path / name
        run_dir.mkdir()
        (run_dir / "config.yaml").write_text(config_to_yaml(config))
        (run_dir / "labels.json").write_text(json.dumps({"task": "classification", "labels": list(labels)}))
        save_task_model(model, AutoTokenizer.from_pretrained(tiny_bert), run_dir / "model", config)
        return (run_dir, model) if with_model else run_dir
    return make


def _build_training(raw: dict):
    """Config mapping -> (config, task, data, model, encoded splits, loss_fn), as `run_training` builds them."""
    from tunelab.catalog import parse_config
    from tunelab.data.sources import load_data
    from tunelab.models import build_task_model, load_tokenizer
    from tunelab.tasks import get_task
    from tunelab.inference.predict import encode_split
    from tunelab.training.device import seed_everything

    config = parse_config(raw)
    task = get_task(config.task)
    data = load_data(config.data, task, config.train.seed)
    tokenizer = load_tokenizer(Path(config.model.name))
    seed_everything(0)
    model = build_task_model(config.model, config.head, problem_type=task.hf_problem_type, label_names=data.label_names,
                             num_outputs=task.num_outputs(data.label_names))
    enc = {k: encode_split(getattr(data.splits, k), tokenizer, config.data.max_length, task, data.label_names)
           for k in ("train", "validation", "test")}
    return config, task, data, model, enc, task.loss_fn(config.loss, enc["train"], data.label_names)


@pytest.fixture
def build_training():
    return _build_training


@pytest.fixture(scope="session")
def tiny_vision_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EfficientNet-Lite0 with random weights at 16x16 pixels: the image tasks' tiny model."""
    pytest.importorskip("efficientnet_lite_pytorch")
    import torch

    from tunelab.models.vision import EfficientNetBackbone, ImagePreprocessor

    path = tmp_path_factory.mktemp("tiny-vision")
    torch.manual_seed(0)
    EfficientNetBackbone(image_size=16).save_pretrained(path)
    ImagePreprocessor(image_size=16).save_pretrained(path)
    return path


def without_dropout(model):
    """Dropout off everywhere, for tests that compare two trainings step for step."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model
