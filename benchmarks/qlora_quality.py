"""What a 4-bit base does to a LoRA fine-tune's score, measured on the CPU: LoRA on MiniLM / BBC News against the
same run with `strategy.lora.quantize: nf4` (QLoRA), same split and seeds.

A user's CPU run with `quantize` is refused (see qlora_cpu_cost.py for why), but the 4-bit base is the same
bitsandbytes `Linear4bit` on a CPU as on a GPU, and the score it reaches does not depend on the device: this script
runs each QLoRA leg as `tunelab train` in a worker process with the device refusal lifted, so the accuracy effect,
the peak memory and the adapter loaded back onto the full-precision base (what predict and serve do) are measured
here. Speed on a CPU is not the question (qlora_cpu_cost.py). On a GPU machine, `--device cuda` runs the same legs
where QLoRA is meant to run and adds each process's peak GPU memory (`torch.cuda.max_memory_allocated`).

    python benchmarks/qlora_quality.py --seeds 0,1,2 --json results/qlora_quality.json
    python benchmarks/qlora_quality.py --device cuda --seeds 0 --json results/qlora_quality-cuda.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from common import run_tunelab, write_results

LEGS = {"lora": {}, "qlora-nf4": {"quantize": "nf4", "compute_dtype": "bf16"}}


def _config(leg: str, seed: int, args: argparse.Namespace, out: Path) -> dict:
    lora = {"target_types": ["Linear"], "target_modules": [], **LEGS[leg]}  # every Linear, as the QLoRA paper does
    data = {"builtin": "bbc-news", "max_length": args.max_length, **({"limit": args.limit} if args.limit else {})}
    return {"model": "minilm", "task": "classification", "data": data, "strategy": {"name": "lora", "lora": lora},
            "train": {"epochs": args.epochs, "batch_size": 16, "seed": seed,
                      "device": "cuda" if args.device == "cuda" else "auto"},  # cpu at validation is refused
            "output": str(out), "report": False}


def _worker(argv: list[str]) -> None:
    """`tunelab train` with the CPU refusal of a 4-bit base lifted (this benchmark's measurement only); on CUDA it
    also writes the process's peak GPU memory beside the run (`<out>.gpu.json`)."""
    import torch

    import tunelab.orchestration.prepare as prepare
    import tunelab.orchestration.run_one as run_one
    from tunelab.cli.main import main

    prepare.check_quantize_device = run_one.check_quantize_device = lambda *a, **k: None
    sys.argv = ["tunelab", *argv[:-1]]
    try:
        main()
    finally:
        if torch.cuda.is_available():
            Path(argv[-1]).write_text(json.dumps({"gpu_peak_mib": torch.cuda.max_memory_allocated() / 2**20}))


def _reloaded_accuracy(run_dir: Path) -> float:
    """Test accuracy of the saved adapter loaded onto the full-precision base (`tunelab eval` of the test split)."""
    rows = list(csv.DictReader((run_dir / "predictions.csv").open(encoding="utf-8")))
    test = run_dir.parent / f"{run_dir.name}-test.csv"
    with test.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows((r["text"], r["label"]) for r in rows)
    scored = run_dir.parent / f"{run_dir.name}-eval.json"
    run_tunelab("eval", str(run_dir), "--data", str(test), "--output", str(scored))
    return json.loads(scored.read_text())["accuracy"]


def _train(leg: str, seed: int, path: Path) -> None:
    done = subprocess.run([sys.executable, __file__, "--worker", "train", str(path), "--overwrite",
                           str(path.with_suffix(".gpu.json"))],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode:
        sys.exit(f"{leg} seed {seed} failed:\n{done.stderr[-3000:]}")


def run_leg(leg: str, seed: int, args: argparse.Namespace) -> dict:
    out = args.work / f"{leg}-s{seed}"
    path = args.work / f"{leg}-s{seed}.yaml"
    config = yaml.safe_dump(_config(leg, seed, args, out))
    if not ((out / "test_metrics.json").is_file() and path.is_file() and path.read_text() == config):
        path.write_text(config)  # a leg finished with these settings is read back, not run again
        _train(leg, seed, path)
    metrics = json.loads((out / "test_metrics.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    gpu = path.with_suffix(".gpu.json")
    return {"leg": leg, "seed": seed, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
            "reloaded_accuracy": _reloaded_accuracy(out), "train_time_s": manifest.get("train_time_s"),
            "peak_rss_mb": manifest.get("peak_rss_mb"), "trainable_params": manifest.get("trainable_params"),
            "device": manifest.get("device"), **(json.loads(gpu.read_text()) if gpu.is_file() else {})}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return _worker(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--limit", type=int, default=None, help="at most N articles (stratified)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda on a GPU machine: the same legs, without any refusal to lift, and peak GPU memory")
    parser.add_argument("--work", type=Path, default=Path("qlora-quality"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for leg in LEGS:
            rows.append(run_leg(leg, seed, args))
            r = rows[-1]
            print(f"{leg:>10} seed {seed}: test accuracy {r['accuracy']:.4f} (loaded onto the full-precision base "
                  f"{r['reloaded_accuracy']:.4f}), macro-F1 {r['macro_f1']:.4f}, train {r['train_time_s']} s, "
                  f"peak RSS {r['peak_rss_mb']} MiB", flush=True)
            if args.json:  # after every leg: a long run that is stopped keeps what it measured
                write_results(args.json, args, runs=rows)
    for leg in LEGS:
        mine = [r for r in rows if r["leg"] == leg]
        print(f"{leg:>10} mean test accuracy {sum(r['accuracy'] for r in mine) / len(mine):.4f}, "
              f"loaded onto fp base {sum(r['reloaded_accuracy'] for r in mine) / len(mine):.4f}")
    if args.json:
        write_results(args.json, args, runs=rows)


if __name__ == "__main__":
    main()
