"""Serving latency and throughput of one run as PyTorch, ONNX fp32 and ONNX int8, on this CPU.

    python benchmarks/serve_latency.py                    # trains MiniLM on BBC News (400 articles, 3 epochs) first
    python benchmarks/serve_latency.py --run RUN_DIR      # an existing text-classification run
    python benchmarks/serve_latency.py --limit 60 --requests 20 --max-length 64   # a smoke run

Each backend is loaded with `load_predictor` (what `tunelab predict` and the server use) and timed on the
same inputs: single-request latency (p50 / p95 over N requests of one text, after warm-up) and batch
throughput (examples/s at batch 32 over the test split), with each backend's accuracy and macro-F1 on the
run's test split. The run is trained and exported through the CLI in subprocesses (`tunelab train --demo`,
`tunelab export`), so the figures are those a user gets. Numbers depend on the machine: measure on a quiet
one and record the command with the table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

BACKENDS = {"pytorch": None, "onnx-fp32": ["--format", "onnx"], "onnx-int8": ["--format", "onnx", "--quantize", "int8"]}


def train_command(out: Path, limit: int, epochs: int, max_length: int) -> list[str]:
    """`tunelab train --demo` (MiniLM on BBC News) with a reduced data set and fp32 (the exports are fp32)."""
    return [sys.executable, "-m", "tunelab", "train", "--demo", "--out", str(out), "--overwrite",
            "--set", f"data.limit={limit}", "--set", f"train.epochs={epochs}", "--set", f"data.max_length={max_length}",
            "--set", "train.precision=fp32"]


def export_command(run: Path, out: Path, flags: list[str]) -> list[str]:
    return [sys.executable, "-m", "tunelab", "export", str(run), *flags, "--out", str(out)]


def _run(command: list[str], check: bool = True) -> bool:
    print("$", " ".join(command), flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(command, check=check, env=env).returncode == 0


def prepare(args: argparse.Namespace, work: Path) -> dict[str, Path | None]:
    """The run (trained unless --run) and its exports: {backend: directory, or None where export refused it}.

    An export whose parity check fails (int8 on a run whose decisions sit close to the boundary) is a result,
    not a crash: its row says so and the other backends are still measured."""
    run = Path(args.run) if args.run else work / "run"
    if not args.run:
        _run(train_command(run, args.limit, args.epochs, args.max_length))
    dirs: dict[str, Path | None] = {"pytorch": run}
    for name, flags in BACKENDS.items():
        if flags is not None:
            folder = work / name
            done = (folder / "export.json").is_file() or _run(export_command(run, folder, flags), check=False)
            dirs[name] = folder if done else None
    return dirs


def latency_ms(call: Callable[[], Any], requests: int, warmup: int = 3) -> tuple[float, float]:
    """(p50, p95) wall time of `call` in milliseconds over `requests` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - start))
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]


def measure(path: Path, records: list, requests: int, threads: int) -> dict[str, float]:
    from tunelab.serving.predictor import load_predictor

    predictor = load_predictor(path, threads=threads)
    train = predictor.config.train.model_copy(update={"eval_batch_size": 32})  # throughput at batch 32, every backend
    predictor.config = predictor.config.model_copy(update={"train": train})
    one = records[:1]
    p50, p95 = latency_ms(lambda: predictor.predict(one), requests)
    split = predictor.encode(records, with_targets=True)
    predictor.predict_split(split)  # warm-up at batch 32
    start = time.perf_counter()
    predictions = predictor.predict_split(split)
    seconds = time.perf_counter() - start
    scores = predictor.task.metrics(split, predictions, predictor.label_names)
    return {"p50_ms": p50, "p95_ms": p95, "examples_per_s": len(records) / seconds,
            "accuracy": float(scores["accuracy"]), "macro_f1": float(scores["macro_f1"])}


def test_records(run: Path) -> list:
    """The run's test split, re-read with its own config (as export's parity check does)."""
    from tunelab.artifacts.model_io import load_run
    from tunelab.data.sources import load_data
    from tunelab.tasks.registry import get_task

    loaded = load_run(run)
    return load_data(loaded.config.data, get_task(loaded.config.task), loaded.config.train.seed).splits.test


def table(rows: dict[str, dict[str, float] | None]) -> str:
    head = "| backend | p50 ms | p95 ms | examples/s @32 | accuracy | macro-F1 | speed-up vs PyTorch (throughput) |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    base = rows.get("pytorch", {}).get("examples_per_s")
    for name, r in rows.items():
        if r is None:
            lines.append(f"| {name} | refused by export's parity check (see its message above) | | | | | |")
            continue
        ratio = f"{r['examples_per_s'] / base:.2f}x" if base else "-"
        lines.append(f"| {name} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['examples_per_s']:.1f} | "
                     f"{r['accuracy']:.4f} | {r['macro_f1']:.4f} | {ratio} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="An existing text-classification run directory (default: train one).")
    parser.add_argument("--work", default="runs/serve-latency", help="Folder for the run and its exports.")
    parser.add_argument("--limit", type=int, default=400, help="data.limit of the trained run.")
    parser.add_argument("--epochs", type=int, default=3, help="train.epochs of the trained run (3: a run whose "
                        "decisions have the margins int8 needs; 1 epoch on 400 articles leaves them within 0.03)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--requests", type=int, default=200, help="Single requests timed per backend.")
    parser.add_argument("--threads", type=int, default=0, help="torch and onnxruntime threads (0: their default).")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    work = Path(args.work)
    dirs = prepare(args, work)
    records = test_records(dirs["pytorch"])
    rows = {name: measure(path, records, args.requests, args.threads) if path else None for name, path in dirs.items()}
    print(f"\n{len(records)} test examples, {args.requests} single requests, CPU threads: "
          f"{args.threads or os.cpu_count()}\n")
    print(table(rows))


if __name__ == "__main__":
    main()
