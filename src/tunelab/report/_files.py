"""Reading what a report is built from: a run directory's files (every one but manifest.json optional, so a
report of an old or partial run still shows what there is) and a compare directory's compare.json."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from tunelab.errors import TunelabError

__all__ = ["ReportError", "RunFiles", "read_run", "directory_kind", "read_json", "validation_curve"]


class ReportError(TunelabError):
    """A folder is not a run or compare directory, or a file the report needs cannot be read."""


@dataclass
class RunFiles:
    folder: Path
    manifest: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    config_text: str = ""
    labels: dict[str, Any] = field(default_factory=dict)
    train: list[dict[str, Any]] = field(default_factory=list)        # metrics.jsonl "train" lines
    validation: list[dict[str, Any]] = field(default_factory=list)   # metrics.jsonl "validation" lines
    test: dict[str, Any] = field(default_factory=dict)
    predictions: list[dict[str, str]] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)
    misclassified: Optional[dict[str, Any]] = None

    @property
    def task(self) -> str:
        return str(self.config.get("task") or self.labels.get("task") or self.profile.get("task") or "")

    @property
    def metric(self) -> str:
        """The run's headline metric: what early stopping watched."""
        return str((self.config.get("early_stopping") or {}).get("metric") or "loss")


def directory_kind(folder: Path) -> Literal["run", "compare", "tune", "continual"]:
    """`compare` when the folder has compare.json, `run` when it has manifest.json; otherwise a ReportError
    that names the folder and what is missing."""
    if not folder.is_dir():
        raise ReportError(f"report: {folder} is not a folder; give a run directory (with manifest.json) or a "
                          "compare directory (with compare.json)")
    if (folder / "compare.json").is_file():
        return "compare"
    if (folder / "tune.json").is_file():
        return "tune"
    if (folder / "continual.json").is_file():
        return "continual"
    if (folder / "manifest.json").is_file():
        return "run"
    hint = " (an unfinished run: it has no manifest.json until it ends)" if (folder / "config.yaml").is_file() else ""
    raise ReportError(f"report: {folder} has neither compare.json (a compare directory), tune.json (a search) nor manifest.json (a run "
                      f"directory){hint}; give the folder `tunelab train` or `tunelab compare` wrote")


def read_result(folder: Path, name: str, list_key: str, command: str, what: str) -> dict[str, Any]:
    """`folder/name` (compare.json, tune.json) as a mapping holding a list under `list_key`, or a ReportError
    naming the folder, the file and the command that writes it."""
    path = Path(folder) / name
    if not path.is_file():
        raise ReportError(f"report: {folder} has no {name}; give the folder `{command}` wrote")
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get(list_key), list):
        raise ReportError(f"report: {path} has no list of {list_key}; the file is not {what}")
    return data


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"report: cannot read {path} ({err}); the file is damaged, run again to rewrite it") from None


def _optional_json(path: Path) -> Any:
    return read_json(path) if path.is_file() else None


def _metrics_lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    lines = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                raise ReportError(f"report: {path}:line {number} is not JSON; the file is damaged") from None
    return lines


def _config(folder: Path) -> tuple[dict[str, Any], str]:
    path = folder / "config.yaml"
    if not path.is_file():
        return {}, ""
    import yaml

    text = path.read_text(encoding="utf-8")
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ReportError(f"report: cannot read {path} ({err})") from None
    return (loaded if isinstance(loaded, dict) else {}), text


def _predictions(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _misclassified(path: Path) -> Optional[dict[str, Any]]:
    if not path.is_file():
        return None
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def read_run(folder: Path) -> RunFiles:
    """Every report input of a run directory (which must hold manifest.json)."""
    manifest = read_json(folder / "manifest.json")
    config, text = _config(folder)
    lines = _metrics_lines(folder / "metrics.jsonl")
    return RunFiles(folder=folder, manifest=manifest, config=config, config_text=text,
                    labels=_optional_json(folder / "labels.json") or {},
                    train=[m for m in lines if m.get("kind") == "train"],
                    validation=[m for m in lines if m.get("kind") == "validation"],
                    test=_optional_json(folder / "test_metrics.json") or {},
                    predictions=_predictions(folder / "predictions.csv"),
                    profile=_optional_json(folder / "profile.json") or {},
                    misclassified=_misclassified(folder / "misclassified.npz"))


def validation_curve(folder: Path, metric: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of `metric` in a run's validation lines (1-based epochs); empty when there are none."""
    epochs, values = [], []
    for line in _metrics_lines(folder / "metrics.jsonl"):
        if line.get("kind") == "validation" and isinstance(line.get(metric), (int, float)):
            epochs.append(int(line["epoch"]) + 1)
            values.append(float(line[metric]))
    return epochs, values
