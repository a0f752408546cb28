"""What several benchmark scripts share: tunelab's own CLI run in a fresh process (offline), stopped with its
error output when it fails; labelled rows written as the CSV a config reads; another script of this folder
loaded as a module; and a run's settings and results written as one JSON file. Scripts run as
`python benchmarks/NAME.py`, so this folder is on their path."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

HERE = Path(__file__).resolve().parent


def run_tunelab(*argv: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "tunelab", *argv], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode:
        sys.exit(f"tunelab {' '.join(argv[:2])} failed:\n{done.stderr[-3000:]}")
    return done


def write_rows(path: Path, rows: Iterable[tuple[str, str]]) -> Path:
    """`text,label` rows as a CSV file (data.train / data.test read it with the default columns)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def load_sibling(name: str) -> ModuleType:
    """benchmarks/NAME.py as a module (this folder is no package), loaded once; registered in sys.modules
    before it runs, because a dataclass in it looks its module up there."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def write_results(path: Path, args: argparse.Namespace, **results: Any) -> None:
    """`--json FILE`: every option of the run (as text) under "settings", then the results, its folder made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, **results}, indent=2))
