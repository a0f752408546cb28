"""What a second process buys on this machine: MiniLM `full` on BBC News, one process against torchrun DDP
and FSDP.

Three `tunelab train` runs of the demo config with `strategy: full`, each in its own process tree and cache
root: 1 process x `--threads` threads, and `--nproc` processes x `--threads` threads each (`tunelab train
--nproc`, gloo on CPU) under DDP and under FSDP (`train.distributed: fsdp`). The same global batch, split,
seed and epochs, so the runs fit the same model (the ranks' gradient is the single process's; the ranks draw
their own dropout masks, DDP's and FSDP's alike); the table gives train throughput (train examples x epochs /
train time), its ratio, wall time, peak RSS of rank 0, the training state rank 0 held (parameters, gradients
and AdamW's moments: `training_state_mb` in the manifest), test accuracy / macro-F1, and the largest weight
difference between the DDP and the FSDP model.

    python benchmarks/ddp_scaling.py --json results/ddp_scaling.json
    python benchmarks/ddp_scaling.py --limit 200 --epochs 1          # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]


def run_leg(nproc: int, mode: str, args: argparse.Namespace, work: Path) -> dict:
    name = f"nproc{nproc}" + (f"-{mode}" if nproc > 1 else "")
    out, cache = work / name, work / f"cache-{name}"
    cache.mkdir(parents=True, exist_ok=True)
    models = Path(os.environ.get("TUNELAB_CACHE", Path.home() / ".cache" / "tunelab")) / "models"
    if models.is_dir() and not (cache / "models").exists():
        (cache / "models").symlink_to(models, target_is_directory=True)
    sets = ["strategy={name: full}", "optim.lr=5e-5", f"data.limit={args.limit}", f"train.epochs={args.epochs}",
            f"train.num_threads={args.threads}", f"train.precision={args.precision}", "early_stopping.patience=null",
            f"train.distributed={mode}", "forgetting.measure=false"]
    command = [sys.executable, "-m", "tunelab", "train", "--demo", "--out", str(out), "--overwrite",
               *[f"--set={s}" for s in sets], *(["--nproc", str(nproc)] if nproc > 1 else [])]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TUNELAB_CACHE": str(cache)}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    metrics = json.loads((out / "test_metrics.json").read_text())
    train_rows = _train_rows(out)
    return {"leg": name, "nproc": nproc, "threads_each": args.threads, "processes_recorded": manifest.get("processes"),
            "distributed": manifest.get("distributed"), "training_state_mb_rank0": manifest.get("training_state_mb"),
            "run": str(out),
            "train_time_s": manifest["train_time_s"], "wall_time_s": round(wall, 2),
            "examples_per_s": round(train_rows * manifest["epochs_run"] / manifest["train_time_s"], 2),
            "peak_rss_mb_rank0": manifest["peak_rss_mb"], "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"]}


def _largest_difference(first: Path, second: Path) -> float:
    """max |w1 - w2| over every tensor of the two runs' saved models."""
    a, b = (load_file(str(run / "model" / "model.safetensors")) for run in (first, second))
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def _train_rows(run: Path) -> int:
    """Training examples of the run: the examples its first epoch logged."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    first = [r["examples"] for r in rows if r.get("kind") == "train" and r.get("epoch") == 0]
    return max(first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=600, help="BBC News articles (stratified)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each process")
    parser.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--work", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        legs = [run_leg(1, "auto", args, work), run_leg(args.nproc, "ddp", args, work),
                run_leg(args.nproc, "fsdp", args, work)]
        difference = _largest_difference(Path(legs[1]["run"]), Path(legs[2]["run"]))
    ratio = legs[1]["examples_per_s"] / legs[0]["examples_per_s"]
    held = legs[2]["training_state_mb_rank0"] / legs[1]["training_state_mb_rank0"]
    print(f"{'leg':>12} {'threads':>7} {'train s':>8} {'wall s':>7} {'ex/s':>7} {'RSS MiB':>8} {'state MiB':>9} "
          f"{'acc':>6} {'F1':>6}")
    for leg in legs:
        print(f"{leg['leg']:>12} {leg['threads_each']:>7} {leg['train_time_s']:>8.1f} {leg['wall_time_s']:>7.1f} "
              f"{leg['examples_per_s']:>7.1f} {leg['peak_rss_mb_rank0']:>8.0f} {leg['training_state_mb_rank0']:>9.1f} "
              f"{leg['accuracy']:>6.4f} {leg['macro_f1']:>6.4f}")
    print(f"throughput {args.nproc} processes (DDP) / 1 process: {ratio:.2f}x; FSDP / DDP: "
          f"{legs[2]['examples_per_s'] / legs[1]['examples_per_s']:.2f}x")
    print(f"training state per rank, FSDP / DDP: {held:.2f}x (target <= 0.6); largest weight difference DDP vs FSDP: "
          f"{difference:.2e} (target <= 1e-5)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"settings": vars(args) | {"work": str(args.work), "json": str(args.json)},
                                         "legs": legs, "throughput_ratio": round(ratio, 3),
                                         "fsdp_state_ratio": round(held, 3),
                                         "ddp_fsdp_max_weight_difference": difference}, indent=2))


if __name__ == "__main__":
    main()
