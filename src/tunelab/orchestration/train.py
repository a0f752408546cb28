"""`tunelab train`: prepare a config's data and model, then run its one strategy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from rich.console import Console

from tunelab.artifacts.rundir import RunDirectory
from tunelab.config.schema import RunConfig
from tunelab.orchestration.outputs import RunSummary
from tunelab.orchestration.multitask import prepare_multitask
from tunelab.orchestration.prepare import prepare
from tunelab.orchestration.run_one import check_run_dir, run_one
from tunelab.training.distributed import is_main_process

__all__ = ["train", "RunSummary"]


def train(config: RunConfig, *, out: Optional[str] = None, overwrite: bool = False, console: Optional[Console] = None,
          resume: bool = False, trust_pickle: bool = False) -> RunSummary:
    """Train as `config` says into `out` (default: config.output). With `resume`, continue the unfinished run
    there from its latest valid checkpoint (see training/resume.py). The output folder, the data and the model
    directory are all checked before anything is written, and every problem among them is reported at once:
    a user should not fix one to learn of the next."""
    started = time.perf_counter()
    console = console or Console(stderr=True)
    if not is_main_process():  # under torchrun rank 0 speaks for the run
        console = Console(stderr=True, quiet=True)
    run_dir = RunDirectory(Path(out or config.output), overwrite=overwrite)
    prepare_run = prepare if config.tasks is None else prepare_multitask  # tasks: each prepared, one run
    prepared = prepare_run(config, trust_pickle=trust_pickle, console=console,
                           checks=[lambda: check_run_dir(run_dir, resume)])
    return run_one(prepared, run_dir=run_dir, resume=resume, console=console, started=started)
