"""`tunelab train`: prepare a config's data and model, then run its one strategy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from rich.console import Console

from tunelab.artifacts.rundir import RunDirectory
from tunelab.config.schema import RunConfig
from tunelab.orchestration.outputs import RunSummary
from tunelab.orchestration.prepare import prepare
from tunelab.orchestration.run_one import run_one
from tunelab.training.resume import check_resumable

__all__ = ["train", "RunSummary"]


def train(config: RunConfig, *, out: Optional[str] = None, overwrite: bool = False, console: Optional[Console] = None,
          resume: bool = False, trust_pickle: bool = False) -> RunSummary:
    """Train as `config` says into `out` (default: config.output). With `resume`, continue the unfinished run
    there from its latest valid checkpoint (see training/resume.py). The output folder, the data and the model
    directory are all checked before anything is written, and every problem among them is reported at once:
    a user should not fix one to learn of the next."""
    started = time.perf_counter()
    console = console or Console(stderr=True)
    run_dir = RunDirectory(Path(out or config.output), overwrite=overwrite)
    prepared = prepare(config, trust_pickle=trust_pickle, console=console,
                       checks=[lambda: _check_output(run_dir, resume)])
    return run_one(prepared, run_dir=run_dir, resume=resume, console=console, started=started)


def _check_output(run_dir: RunDirectory, resume: bool) -> None:
    """The output folder can take this run: a resumable unfinished run there (resume), and nothing that
    would be replaced without --overwrite. Reads only."""
    if resume:
        check_resumable(run_dir)
    run_dir.check_target(resume)
