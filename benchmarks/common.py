"""What several benchmark scripts share: tunelab's own CLI run in a fresh process (offline), stopped with its
error output when it fails, and labelled rows written as the CSV a config reads. Scripts run as
`python benchmarks/NAME.py`, so this folder is on their path."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterable


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
