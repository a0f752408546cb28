"""A teacher run's logits for a student's training examples: computed once, kept under the cache root.

The teacher predicts the records' own text (or images) through its run's predictor, so it may have another
tokenizer, backbone, `max_length` or precision than the student. An entry is one safetensors file
`$TUNELAB_CACHE/teacher_logits/<key>.safetensors` (`(N, C)` fp32 logits in the teacher's label order), written
atomically; the key hashes the teacher's model files, its resolved config (output folder aside), the precision it
predicts in here and the examples' inputs in order, so later runs, compare rows and tune trials on the same
training split read it back, and a retrained teacher or other data never meets a stale entry.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import yaml

from tunelab.errors import ConfigError
from tunelab.hashing import hash_files
from tunelab.paths import teacher_logits_dir
from tunelab.serving.cached_tensors import read_cached, write_cached

__all__ = ["TeacherLogits", "check_teacher", "teacher_logits"]

FORMAT_VERSION = 1
_KEY = "strategy.distill.teacher"


@dataclass
class TeacherLogits:
    logits: torch.Tensor    # (N, C) in the student's label order
    computed: int           # examples the teacher predicted in this call (0: read from the cache)
    reused: int             # examples read back from the cache
    seconds: float
    key: str
    file: Path


def check_teacher(teacher: str | Path, task: str, label_names: Optional[list[str]] = None) -> list[str]:
    """The teacher's labels, once the folder is a finished run of `task` (and, given the student's `label_names`,
    of the same label set); otherwise a ConfigError that says what differs and what to do."""
    path = Path(teacher).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{_KEY}: {teacher} does not exist; give the folder of a finished run (tunelab train "
                          "--out FOLDER) of this task and label set")
    missing = [name for name in ("config.yaml", "labels.json", "model") if not (path / name).exists()]
    if missing:
        raise ConfigError(f"{_KEY}: {teacher} is not a finished tunelab run (no {', '.join(missing)}); give the folder "
                          "a `tunelab train` wrote (an unfinished run finishes with --resume)")
    saved = json.loads((path / "labels.json").read_text(encoding="utf-8"))
    teacher_task, labels = saved.get("task"), list(saved.get("labels", []))
    if teacher_task != task:
        raise ConfigError(f"{_KEY}: {teacher} is a {teacher_task} run and this run is {task}; the teacher must be a "
                          f"run of the same task")
    if label_names is not None and set(labels) != set(label_names):
        only_teacher = sorted(set(labels) - set(label_names))
        only_data = sorted(set(label_names) - set(labels))
        raise ConfigError(f"{_KEY}: {teacher} was trained on labels {labels}, this data has {list(label_names)} "
                          f"(only the teacher's: {only_teacher or 'none'}; only this data's: {only_data or 'none'}); "
                          "distil from a teacher of the same label set")
    return labels


def teacher_logits(teacher: str | Path, records: list[Any], task: str, label_names: list[str]) -> TeacherLogits:
    """The teacher's `(N, C)` logits for `records`, columns in `label_names`' order: read from the cache, else
    predicted once and stored."""
    started = time.perf_counter()
    path = Path(teacher).expanduser()
    labels = check_teacher(path, task, label_names)
    key = _entry_key(path, records)
    file = teacher_logits_dir() / f"{key}.safetensors"
    logits = read_cached(file, "logits", (len(records), len(labels)))
    computed = 0
    if logits is None:
        from tunelab.serving.predictor import load_predictor

        logits = load_predictor(path).logits(records).float().contiguous()  # (N, C), the teacher's label order
        write_cached(file, "logits", logits, {"format_version": str(FORMAT_VERSION), "teacher": str(path.resolve()),
                                              "labels": json.dumps(labels)})
        computed = len(records)
    order = torch.tensor([labels.index(name) for name in label_names], dtype=torch.long)
    return TeacherLogits(logits=logits[:, order], computed=computed, reused=len(records) - computed,
                         seconds=time.perf_counter() - started, key=key, file=file)


def _entry_key(teacher: Path, records: list[Any]) -> str:
    """sha256 of what the logits depend on: the teacher's model files, its config, the precision it runs in on
    this machine, and the inputs (text, or the image source for image records) in order."""
    from tunelab.catalog import parse_config
    from tunelab.inference.precision import resolve_precision

    files = sorted(p for p in (teacher / "model").rglob("*") if p.is_file() and p.name != "README.md")
    raw = yaml.safe_load((teacher / "config.yaml").read_text(encoding="utf-8"))
    config = parse_config(raw, source=str(teacher / "config.yaml"))
    described = {k: v for k, v in config.model_dump(mode="json").items() if k != "output"}
    precision, _ = resolve_precision(torch.device("cpu"), config.train.precision)
    digest = hashlib.sha256(json.dumps({"format": FORMAT_VERSION, "model": hash_files(files, with_names=True),
                                        "config": described, "precision": precision}, sort_keys=True).encode())
    for record in records:
        text = record.text.encode("utf-8")
        digest.update(len(text).to_bytes(8, "little") + text)
    return digest.hexdigest()
