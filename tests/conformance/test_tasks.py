"""Every task in the registry, through the Task protocol only: config rules, reading a file of its format,
encode + collate, one train step, predict + metrics, score columns, display, generation (or its refusal),
and save -> load giving identical outputs. The names come from `TASKS` itself, so a newly registered task
is checked without editing this file; `ParityTask` below shows that a new task is one class plus one
registry line (the `registry` fixture) and passes the same checks. Tiny random models, 8 examples, fp32."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from tests.conftest import FILLER, NEGATIVE, POSITIVE, write_csv
from tests.unit.tasks.test_instruction import make_tiny_llama, qa_rows, write_jsonl
from tunelab.artifacts.model_io import load_run, save_task_model
from tunelab.catalog import parse_config
from tunelab.config.loading import config_to_yaml
from tunelab.config.schema import RunConfig
from tunelab.data.encoding import Batch, EncodedSplit, iterate_batches
from tunelab.data.images import load_digits_records
from tunelab.data.labels import build_label_map
from tunelab.data.records import LabelKind, Record
from tunelab.errors import ConfigError, TunelabError
from tunelab.models.task_model import TaskModel
from tunelab.tasks.base import SequenceTask, Task
from tunelab.tasks.classification import ClassificationTask
from tunelab.tasks.registry import TASKS, task_names
from tunelab.inference.precision import autocast_for
from tunelab.inference.predict import predict_logits
from tunelab.training.device import seed_everything
from tunelab.training.step import train_step

CPU = torch.device("cpu")
N_EXAMPLES, BATCH = 8, 4


class ParityTask(SequenceTask):
    """A toy task: is a text's word count even or odd? Only what makes it a task is written here; targets,
    loss, predictions and metrics are classification's, reading, encoding and the model SequenceTask's."""

    name = "parity"
    metric_names = ("accuracy", "macro_f1")
    hf_problem_type = "single_label_classification"
    default_metric = "accuracy"
    label_kind = "class"
    targets = ClassificationTask.targets
    loss_fn = ClassificationTask.loss_fn
    predict = ClassificationTask.predict
    metrics = ClassificationTask.metrics


# collected once: every registered task, plus the toy the `registry` fixture registers
NAMES = list(dict.fromkeys([*TASKS, ParityTask.name]))


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, Task]:
    """The registry with the toy task added by its one line (undone after the test)."""
    monkeypatch.setitem(TASKS, ParityTask.name, ParityTask())
    return TASKS


# -- tiny random models, one per family ------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def model_fixture(task: Task) -> str:
    """Images -> the image backbone, a causal LM's text (generated or continued) -> a decoder LM, anything else on
    text -> a BERT."""
    causal = task.generative or task.peft_task_type == "CAUSAL_LM"
    return "tiny_vision_dir" if task.takes_images else "tiny_llama" if causal else "tiny_bert"


# -- examples, one file per label kind (in the format that kind's reader takes) ----------------------------

def _class_file(folder: Path) -> Path:
    """CSV; the label is the parity of the word count (meaningful for the toy, arbitrary for classification)."""
    rows = [{"text": " ".join(FILLER[:2 + i % 4]), "label": "even" if i % 2 == 0 else "odd"}
            for i in range(N_EXAMPLES)]
    return write_csv(folder / "class.csv", rows)


def _classes_file(folder: Path) -> Path:
    sets = ["pos", "neg", "pos|neg"]
    rows = [{"text": f"the film was {POSITIVE[i % 4]} {NEGATIVE[i % 4]}", "label": sets[i % 3]}
            for i in range(N_EXAMPLES)]
    return write_csv(folder / "classes.csv", rows)


def _number_file(folder: Path) -> Path:
    rows = [{"text": " ".join(["good"] * (i % 4) + ["the", "movie"]), "label": str(i % 4 + 0.5)}
            for i in range(N_EXAMPLES)]
    return write_csv(folder / "number.csv", rows)


def _tags_file(folder: Path) -> Path:
    """CoNLL: word and tag per line, a blank line between sentences."""
    tag_of = {"good": "B-POS", "bad": "B-NEG", "movie": "B-OBJ", "film": "B-OBJ"}
    rng = random.Random(0)
    sentences = [rng.sample(["the", "a", "was", "very", *tag_of], 5) for _ in range(N_EXAMPLES)]
    text = "\n\n".join("\n".join(f"{w}\t{tag_of.get(w, 'O')}" for w in s) for s in sentences)
    (folder / "tags.conll").write_text(text + "\n", encoding="utf-8")
    return folder / "tags.conll"


def _text_file(folder: Path) -> Path:
    return write_jsonl(folder / "text.jsonl", qa_rows(N_EXAMPLES))


def _pair_file(folder: Path) -> Path:
    """Preference pairs: a prompt, the chosen reply and the rejected one."""
    rows = [{"prompt": row["prompt"], "chosen": row["response"], "rejected": "a long story about cats"}
            for row in qa_rows(N_EXAMPLES)]
    return write_jsonl(folder / "pairs.jsonl", rows)


def _plain_text_file(folder: Path) -> Path:
    """Unlabelled text, one document per line (continued pre-training), in words both tiny vocabularies know."""
    rng = random.Random(0)
    lines = [" ".join(rng.sample(["the", "a", "is", "story", "and"] * 2, 3 + i % 5)) for i in range(N_EXAMPLES)]
    (folder / "plain.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "plain.txt"


def _image_file(folder: Path) -> Path:
    """An .npz of the first scikit-learn digits (8x8 grey, in [0, 1])."""
    digits = load_digits_records()[:N_EXAMPLES]
    np.savez(folder / "digits.npz", images=np.stack([r.image for r in digits]),
             labels=np.array([r.label for r in digits]))
    return folder / "digits.npz"


EXAMPLE_FILES: dict[str, Callable[[Path], Path]] = {"class": _class_file, "classes": _classes_file,
                                                    "number": _number_file, "tags": _tags_file, "text": _text_file,
                                                    "pair": _pair_file, "none": _plain_text_file, "image": _image_file}
LABEL_TYPES: dict[LabelKind, type] = {"class": str, "classes": tuple, "number": float, "tags": tuple, "text": str,
                                      "pair": tuple, "none": str}


def example_file(task: Task, folder: Path) -> Path:
    return EXAMPLE_FILES["image" if task.takes_images else task.label_kind](folder)


def config_for(task: Task, model_dir: Path, data: Path) -> RunConfig:
    """A valid config for `task`, fp32 on the CPU, seed 0, short generation."""
    return parse_config({"model": str(model_dir), "task": task.name, "head": {"type": "native"},
                         "data": {"train": str(data), "max_length": 32}, "strategy": {"name": "full"},
                         "train": {"precision": "fp32", "device": "cpu", "seed": 0, "batch_size": BATCH},
                         "generation": {"max_new_tokens": 3}})


# -- the checks --------------------------------------------------------------------------------------------

def check_config_rules(task: Task, config: RunConfig) -> None:
    """A valid config breaks no rule; a metric the task does not compute is named."""
    assert task.check_config(config) == []
    wrong = config.model_copy(update={"early_stopping": config.early_stopping.model_copy(update={"metric": "nope"})})
    problems = task.check_config(wrong)
    assert isinstance(problems, list) and any("early_stopping.metric" in line for line in problems)
    assert task.default_metric in (*task.metric_names, "loss")


def check_read(task: Task, config: RunConfig) -> list[Record]:
    """The task's reader gives labels of the type its `label_kind` promises."""
    records = task.read(config.data.train, config.data)
    assert len(records) == N_EXAMPLES
    for record in records:
        assert isinstance(record.label, LABEL_TYPES[task.label_kind]), record
        if task.label_kind in ("classes", "tags", "pair"):
            assert all(isinstance(name, str) for name in record.label)
        if task.label_kind == "tags":
            assert record.words is not None and len(record.label) == len(record.words)
        if task.label_kind in ("class", "text", "tags"):
            assert record.label
    return records


def pad_of(tokenizer: Any) -> int:
    """As a run pads: the preprocessor's pad id (image preprocessors carry an unused 0)."""
    return tokenizer.pad_token_id or 0


def check_encode(task: Task, records: list[Record], tokenizer: Any, config: RunConfig,
                 label_names: list[str]) -> tuple[EncodedSplit, list[Batch]]:
    """Encoding keeps every example, and collated batches cover the split once, with targets."""
    split = task.encode(records, tokenizer, config.data.max_length, label_names, train=True)
    assert len(split) == len(records)
    batches = list(iterate_batches(split, BATCH, pad_id=pad_of(tokenizer), shuffle=False))
    assert sorted(i for b in batches for i in b.indices.tolist()) == list(range(len(records)))
    assert all(b.targets is not None and len(b.targets) == len(b) for b in batches)
    return split, batches


def check_train_step(task: Task, model: TaskModel, config: RunConfig, split: EncodedSplit, batch: Batch,
                     label_names: list[str]) -> torch.nn.Module:
    """One step with the task's loss: finite, and AdamW moves at least one trainable parameter."""
    loss_fn = task.loss_fn(config.loss, split, label_names)
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    model.train()
    loss = train_step(model, batch, loss_fn, scale=1.0, autocast=autocast_for(CPU, config.train.precision))
    assert math.isfinite(loss)
    optimizer.step()
    assert any(not torch.equal(old, p) for old, p in zip(before, params)), "no trainable parameter moved"
    return loss_fn


def check_predict(task: Task, model: TaskModel, split: EncodedSplit, loss_fn: torch.nn.Module,
                  config: RunConfig, label_names: list[str], pad_id: int) -> dict[str, Any]:
    """One prediction per record, consistent score columns, a str for every value shown; the metrics."""
    batches = iterate_batches(split, BATCH, pad_id=pad_id, shuffle=False)
    outputs, loss = predict_logits(model, batches, len(split), CPU, config.train.precision, loss_fn=loss_fn,
                                   reduce=task.reduce_outputs)
    assert math.isfinite(loss)
    predictions = task.predict(outputs, label_names, split)
    assert len(predictions.values) == len(split.records)
    columns = task.score_columns(label_names)
    if predictions.scores is None:
        assert columns == []
    else:
        assert len(predictions.scores) == len(split.records)
        assert columns == [] or len(columns) == predictions.scores.shape[1]
    assert all(isinstance(task.show(v), str) for v in [*predictions.values, *(r.label for r in split.records)])
    return task.metrics(split, predictions, label_names)


def check_generation(task: Task, model: TaskModel, split: EncodedSplit, tokenizer: Any,
                     config: RunConfig) -> dict[str, Any]:
    """Generative tasks write one text per record and score them; the others refuse clearly."""
    def generate() -> tuple[list[str], list[bool]]:
        return task.generate(model, split, tokenizer, config.generation, device=CPU, batch_size=BATCH)

    if not task.generative:
        with pytest.raises(TunelabError):
            generate()
        return {}
    texts, stopped = generate()
    assert len(texts) == len(stopped) == len(split.records) and all(isinstance(t, str) for t in texts)
    scores = task.generation_metrics(split.records, texts, stopped)
    assert isinstance(scores, dict)
    return scores


def forward(model: TaskModel, batch: Batch) -> torch.Tensor:
    args, kwargs = batch.model_inputs()
    with torch.no_grad():
        return model.eval()(*args, **kwargs)


def check_round_trip(task: Task, model: TaskModel, tokenizer: Any, config: RunConfig, batch: Batch,
                     label_names: list[str], run_dir: Path) -> None:
    """A run directory as a run writes it loads back to a model with the same outputs."""
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(config_to_yaml(config), encoding="utf-8")
    (run_dir / "labels.json").write_text(json.dumps({"task": config.task, "labels": label_names}), encoding="utf-8")
    save_task_model(model, tokenizer, run_dir / "model", config)
    loaded = load_run(run_dir)
    assert loaded.config.task == task.name and loaded.label_names == label_names
    expected = forward(model, batch)
    if not (task.generative or task.saves_backbone):  # a language model's width is its vocabulary
        assert expected.shape[-1] == task.num_outputs(label_names)
    torch.testing.assert_close(forward(loaded.model, batch), expected)


def check_task(task: Task, model_dir: Path, folder: Path) -> None:
    """Every promise of the Task protocol, in the order a run uses them."""
    config = config_for(task, model_dir, example_file(task, folder))
    check_config_rules(task, config)
    records = check_read(task, config)
    label_names = build_label_map(records, task.label_kind)
    tokenizer = task.load_preprocessor(model_dir, config)
    split, batches = check_encode(task, records, tokenizer, config, label_names)
    seed_everything(config.train.seed)
    model = task.build_model(config.model, config.head, label_names, model_dir)
    loss_fn = check_train_step(task, model, config, split, batches[0], label_names)
    metrics = check_predict(task, model, split, loss_fn, config, label_names, pad_of(tokenizer))
    metrics |= check_generation(task, model, split, tokenizer, config)
    assert set(task.metric_names) <= set(metrics), f"missing metrics: {set(task.metric_names) - set(metrics)}"
    assert task.default_metric in metrics
    check_round_trip(task, model, tokenizer, config, batches[0], label_names, folder / "run")


@pytest.mark.parametrize("name", NAMES)
def test_task_conforms(name: str, registry: dict[str, Task], request: pytest.FixtureRequest, tmp_path: Path) -> None:
    task = registry[name]
    check_task(task, request.getfixturevalue(model_fixture(task)), tmp_path)


def test_a_new_task_is_one_class_and_one_registry_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalog knows the toy once registered (its default metric and rules apply), and not before."""
    raw = {"task": ParityTask.name, "data": {"train": "x.csv"}}
    with pytest.raises(ConfigError) as refused:
        parse_config(raw)
    assert "unknown task 'parity'" in str(refused.value) and all(name in str(refused.value) for name in TASKS)
    monkeypatch.setitem(TASKS, ParityTask.name, ParityTask())
    config = parse_config(raw)
    assert config.task == "parity" and config.early_stopping.metric == "accuracy" and "parity" in task_names()
    with pytest.raises(ConfigError, match="not computed for task parity"):
        parse_config({**raw, "early_stopping": {"metric": "rouge_l"}})
