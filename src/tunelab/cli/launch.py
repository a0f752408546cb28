"""`tunelab train --nproc N`: torchrun's own elastic launcher starts N local processes of `tunelab train`, so
a user need not learn torchrun's flags for one machine (several machines: run torchrun itself, README)."""

from __future__ import annotations

import socket
import sys
import uuid
from pathlib import Path
from typing import Optional

from tunelab.errors import TunelabError

__all__ = ["launch_local", "train_argv", "check_port_free"]


def launch_local(nproc: int, argv: list[str], port: Optional[int] = None) -> None:
    """Run `python -m tunelab train ARGV` in `nproc` processes under the elastic agent (a fresh rendezvous on
    localhost: `port`, or a free one; no restarts); a rank that fails takes the others down and is named in
    the error."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if port is not None:
        check_port_free(port)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint=f"localhost:{port or 0}", max_restarts=0,
                          monitor_interval=0.2)
    try:
        elastic_launch(config, sys.executable)("-m", "tunelab", "train", *argv)
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        raise TunelabError(f"train --nproc {nproc}: rank {rank} stopped with exit code {failure.exitcode} (the other "
                           f"ranks were stopped with it); its own message is printed above") from None


def check_port_free(port: int) -> None:
    """Refuse a rendezvous port something on this machine already listens on, before any process starts
    (torchrun's own failure is a C++ socket error, EADDRINUSE, from deep inside its store)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("localhost", port))
        except OSError as err:
            raise TunelabError(f"--port {port}: the port is in use on this machine ({err.strerror}: another run or "
                               "service listens there); give another port, or leave --port out to take a free one") \
                from None


def train_argv(config: Optional[Path], set_: list[str], out: Optional[str], demo: bool, overwrite: bool,
                resume: Optional[str], trust_pickle: bool) -> list[str]:
    """`tunelab train`'s arguments again, without --nproc, for each launched process."""
    argv = [str(config)] if config is not None else []
    argv += [f"--set={item}" for item in set_] + ([f"--out={out}"] if out is not None else [])
    argv += [flag for flag, on in (("--demo", demo), ("--overwrite", overwrite), ("--trust-pickle", trust_pickle)) if on]
    return argv + ([f"--resume={resume}"] if resume is not None else [])
