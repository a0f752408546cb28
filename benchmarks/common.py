"""What several benchmark scripts share: tunelab's own CLI run in a fresh process (offline), stopped with its
error output when it fails. Scripts run as `python benchmarks/NAME.py`, so this folder is on their path."""

from __future__ import annotations

import os
import subprocess
import sys


def run_tunelab(*argv: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "tunelab", *argv], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode:
        sys.exit(f"tunelab {' '.join(argv[:2])} failed:\n{done.stderr[-3000:]}")
    return done
