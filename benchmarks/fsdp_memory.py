"""The measured peak of a rank's training memory under DDP and under FSDP: MiniLM `full` on BBC News, two
processes (gloo, CPU), tracked tensor by tensor with PyTorch's own memory trackers.

`training_state_mb` in the manifest counts what a rank holds between steps (parameters, gradients, AdamW's
moments). The issue's bar is on the peak: FSDP gathers a unit's whole parameters for its forward and its
backward and has whole gradients before it reduce-scatters them, so its peak is above its steady state.
This script measures it: each rank's first epoch of a real `tunelab train --nproc 2` runs inside
`torch.distributed._tools`' `FSDPMemTracker` (FSDP: sharded and unsharded parameters and gradients, all-gather
and reduce-scatter buffers, optimizer state, activations, temporaries) or `MemTracker` (DDP: parameters,
gradients, optimizer state, activations, temporaries), a TorchDispatchMode that sees every tensor allocated
through the dispatcher; the peak snapshot is written per rank. DDP's gradient buckets are allocated by its C++
reducer, outside the dispatcher, and are not counted here (they would add about the gradients' size again).

    python benchmarks/fsdp_memory.py --json results/fsdp_memory.json
    python benchmarks/fsdp_memory.py --limit 60 --max-length 32      # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import write_results

MIB = 2 ** 20
# the trackers' categories (MemTracker's, then FSDPMemTracker's names) of the two sums followed over time
PARAM_OPT = {"Parameter", "Buffer", "Optstate", "Sharded Param", "Unsharded Param", "All Gather", "OptState"}
STATE = PARAM_OPT | {"Gradient", "Sharded Grad", "Unsharded Grad", "Reduce Scatter"}


def follow_sums(tracker) -> dict[str, int]:
    """The largest parameter + optimizer (and + gradient) bytes at any moment, not only at the total's peak:
    every update of the tracker's current snapshot is followed."""
    highest = {"param_opt": 0, "state": 0}
    update = tracker._update_snap

    def followed(*args, **kwargs):
        update(*args, **kwargs)
        for kinds in tracker._curr_mem_snap.values():
            named = {str(getattr(k, "value", k)): v for k, v in kinds.items()}
            for key, members in (("param_opt", PARAM_OPT), ("state", STATE)):
                highest[key] = max(highest[key], sum(v for k, v in named.items() if k in members))

    tracker._update_snap = followed
    return highest


def worker(argv: list[str]) -> None:
    """One rank of `tunelab train ARGV` with its first epoch tracked; the peak goes to $TUNELAB_MEM_OUT.rank<r>."""
    import torch.distributed as dist
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker
    from torch.distributed._tools.mem_tracker import MemTracker

    import tunelab.training.trainer as trainer
    from tunelab.training.sharded import is_sharded

    original, step = trainer.Trainer._train_epoch, trainer.optimizer_step
    active: list = []

    def stepped(*args, **kwargs):  # the trackers take one iteration at a time: each step starts afresh, peak kept
        result = step(*args, **kwargs)
        for tracker in active:
            tracker.reset_mod_stats()
        return result

    def tracked(self, loop, train) -> None:
        if loop.epoch > 0:
            return original(self, loop, train)
        sharded = is_sharded(loop.model)
        tracker = FSDPMemTracker(loop.model, loop.optimizer) if sharded else MemTracker()
        highest = follow_sums(tracker)
        if not sharded:
            tracker.track_external(loop.model, loop.optimizer)
        active.append(tracker)
        with tracker:
            original(self, loop, train)
        active.clear()
        peak = {str(device): {str(getattr(kind, "value", kind)): count for kind, count in kinds.items()}
                for device, kinds in tracker.get_tracker_snapshot("peak").items()}
        Path(f"{os.environ['TUNELAB_MEM_OUT']}.rank{dist.get_rank()}").write_text(json.dumps({"at_peak": peak,
                                                                                             "highest": highest}))

    trainer.Trainer._train_epoch, trainer.optimizer_step = tracked, stepped
    from tunelab.cli import app

    app(["train", *argv], standalone_mode=True)


def run_leg(mode: str, args: argparse.Namespace, work: Path) -> dict:
    out, mem = work / mode, work / f"mem-{mode}"
    sets = ["strategy={name: full}", "optim.lr=5e-5", f"data.limit={args.limit}", f"data.max_length={args.max_length}",
            "train.epochs=1", "train.num_threads=1", "train.precision=fp32", f"train.distributed={mode}",
            "forgetting.measure=false", "train.device=cpu"]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(args.port),
               str(Path(__file__).resolve()), "--worker", "--", "--demo", "--out", str(out), "--overwrite",
               *[f"--set={s}" for s in sets]]
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TUNELAB_MEM_OUT": str(mem)})
    if done.returncode:
        sys.exit(f"{mode} failed:\n{done.stderr[-3000:]}")
    ranks = []
    for rank in (0, 1):
        seen = json.loads(Path(f"{mem}.rank{rank}").read_text())
        kinds = seen["at_peak"].get("cpu", {})
        ranks.append({"rank": rank, "at_total_peak_mib": {k: round(v / MIB, 1) for k, v in kinds.items()},
                      "param_opt_peak_mib": round(seen["highest"]["param_opt"] / MIB, 1),
                      "state_peak_mib": round(seen["highest"]["state"] / MIB, 1),
                      "total_peak_mib": round(kinds.get("Total", 0) / MIB, 1)})
    manifest = json.loads((out / "manifest.json").read_text())
    return {"leg": mode, "training_state_mb_rank0": manifest.get("training_state_mb"), "ranks": ranks}


def main() -> None:
    if "--worker" in sys.argv:
        return worker(sys.argv[sys.argv.index("--") + 1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=160, help="BBC News articles (stratified)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--port", type=int, default=29577)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        legs = [run_leg(mode, args, Path(scratch)) for mode in ("ddp", "fsdp")]
    ddp = {key: max(r[key] for r in legs[0]["ranks"]) for key in ("param_opt_peak_mib", "state_peak_mib", "total_peak_mib")}
    print(f"{'leg':>5} {'rank':>4} | {'param+opt peak':>14} {'x DDP':>6} | {'+ grads peak':>12} {'x DDP':>6} | "
          f"{'total peak':>10} {'x DDP':>6} | steady state MiB (manifest)")
    for leg in legs:
        for r in leg["ranks"]:
            cells = " | ".join(f"{r[key]:>{w}.1f} {r[key] / ddp[key]:>6.2f}" for key, w in
                               (("param_opt_peak_mib", 14), ("state_peak_mib", 12), ("total_peak_mib", 10)))
            print(f"{leg['leg']:>5} {r['rank']:>4} | {cells} | {leg['training_state_mb_rank0']}")
        print("      at rank 0's total peak, MiB: " + ", ".join(f"{k} {v}" for k, v in
                                                                leg["ranks"][0]["at_total_peak_mib"].items() if v))
    if args.json:
        write_results(args.json, args, legs=legs)


if __name__ == "__main__":
    main()
