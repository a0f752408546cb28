"""Run `tunelab train ...` in this process and SIGKILL it at a chosen point: the crash half of the resume tests.

usage: python kill_run.py SPEC CLI-ARGS...
  SPEC = step:N   SIGKILL right after the N-th optimizer update of this process (before its checkpoint, if any)
  SPEC = write:N  SIGKILL in the middle of the N-th checkpoint file write (half the bytes on disk, no manifest)
  SPEC = term:N   send itself SIGTERM right after the N-th optimizer update (graceful stop)
  SPEC = none     run normally
  SPEC = rankR@SPEC  arm SPEC only in the torchrun worker of rank R (the others run normally)
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def arm(spec: str) -> None:
    target, at, rest = spec.partition("@")
    if at:
        if os.environ.get("RANK", "0") != target.removeprefix("rank"):
            return
        spec = rest
    import tunelab.training.checkpoint as checkpoint
    import tunelab.training.trainer as trainer

    kind, _, n = spec.partition(":")
    calls = {"n": 0}
    if kind in ("step", "term"):
        update = trainer.optimizer_step

        def killing_update(*args, **kwargs):
            update(*args, **kwargs)
            calls["n"] += 1
            if calls["n"] == int(n):
                die() if kind == "step" else os.kill(os.getpid(), signal.SIGTERM)
        trainer.optimizer_step = killing_update
    elif kind == "write":
        write_tensors = checkpoint._write_tensors_synced

        def due() -> bool:
            calls["n"] += 1
            return calls["n"] == int(n)

        def killing_write(path: Path, data: bytes) -> None:
            if due():
                with path.open("wb") as handle:
                    handle.write(data[: len(data) // 2])
                die()
            with path.open("wb") as handle:
                handle.write(data)

        def killing_tensors(path: Path, tensors: dict) -> dict:
            written = write_tensors(path, tensors)
            if due():
                with path.open("rb+") as handle:
                    handle.truncate(written["bytes"] // 2)
                die()
            return written
        checkpoint._write_synced = killing_write
        checkpoint._write_tensors_synced = killing_tensors


if __name__ == "__main__":
    arm(sys.argv[1])
    from tunelab.cli.main import main

    sys.argv = ["tunelab", *sys.argv[2:]]
    main()
