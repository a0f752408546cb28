"""Multi-task fine-tuning against single-task runs: one backbone and a head per task, trained on two data sets of
different label spaces in one run, against each set's own run with the same budget.

Per strategy and seed: one `tunelab train` per data set (`task:` + `data:`) and one multi-task run of both
(`tasks:`) per mixing. Every leg has the same backbone (MiniLM), head (`linear` over MiniLM's declared pooling: the
multi-task run's, so the single runs differ only in training alone), learning rate, epochs, batch size and early
stopping on validation macro-F1 (the multi-task run: the mean over its tasks); each data set is `data.limit`
examples with one fixed split (`split_seed` 0), so every leg scores the same test examples. Reported per leg: test
accuracy and macro-F1 per task, train time, epochs and best epoch, trainable parameters, and the size of `model/`
(the multi-task run: one backbone and both heads; the single runs: a backbone each).

    python benchmarks/multitask.py --json benchmarks/results/multitask-2026-12-07-cpu.json   # 600 + 600, 3 epochs, full
    python benchmarks/multitask.py --datasets bbc-news,sms-spam --limits 800,800 --strategies full,lora --seeds 0,1
    python benchmarks/multitask.py --limits 800,200 --mixings proportional,temperature   # unequal sizes
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml
from common import run_tunelab, write_results

MODEL = "minilm"
# the budget of every leg; a strategy's own settings replace `strategy` and `optim`
CONFIG = {"model": MODEL, "head": {"type": "linear"}, "schedule": {"name": "linear", "warmup_ratio": 0.1},
          "train": {"batch_size": 16}, "early_stopping": {"metric": "macro_f1"}, "forgetting": {"measure": False}}
STRATEGIES = {"full": ({"name": "full", "layerwise_lr_decay": 0.95}, 1.0e-4),
              "lora": ({"name": "lora", "lora": {"rank": 8, "alpha": 16, "target_modules": ["query", "value"],
                                                  "lr": 1.0e-3}}, 1.0e-4)}


def data_section(dataset: str, limit: int, args: argparse.Namespace) -> dict:
    return {"builtin": dataset, "limit": limit, "max_length": args.max_length, "split_seed": 0,
            "validation_split": 0.1, "test_split": 0.2}


def leg_config(strategy: str, seed: int, args: argparse.Namespace, datasets: list[tuple[str, int]],
               mixing: str | None = None) -> dict:
    """One data set: its single-task config; several (`mixing` given): the multi-task config of all of them."""
    section, lr = STRATEGIES[strategy]
    config = {**CONFIG, "strategy": section, "optim": {"lr": lr},
              "train": {**CONFIG["train"], "epochs": args.epochs, "seed": seed}}
    if mixing is None:
        (dataset, limit), = datasets
        return {**config, "task": "classification", "data": data_section(dataset, limit, args)}
    return {**config, "mixing": {"name": mixing, "temperature": args.temperature},
            "tasks": [{"name": dataset, "data": data_section(dataset, limit, args)} for dataset, limit in datasets]}


def train(name: str, config: dict, work: Path, reuse: bool) -> tuple[Path, float]:
    """The run and the seconds its process took (None when --reuse read an earlier run)."""
    path, out = work / f"{name}.yaml", work / name
    if reuse and (out / "manifest.json").is_file():
        return out, None
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    started = time.perf_counter()
    run_tunelab("train", str(path), "--out", str(out), "--overwrite")
    return out, round(time.perf_counter() - started, 1)


def describe(leg: str, run: Path, process_s: float | None) -> dict:
    manifest = json.loads((run / "manifest.json").read_text())
    test = json.loads((run / "test_metrics.json").read_text())
    sections = test.get("tasks")
    if sections is None:  # a single-task run: its one data set
        sections = {yaml.safe_load((run / "config.yaml").read_text())["data"]["builtin"]: test}
    return {"leg": leg, "tasks": {name: {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4)}
                                  for name, m in sections.items()},
            "train_time_s": manifest["train_time_s"], "process_s": process_s, "epochs_run": manifest["epochs_run"],
            "best_epoch": manifest["best_epoch"], "trainable_params": manifest["trainable_params"],
            "model_mb": round(sum(p.stat().st_size for p in (run / "model").rglob("*") if p.is_file()) / 2**20, 2),
            "mixing": manifest.get("tasks")}


def run_legs(strategy: str, seed: int, args: argparse.Namespace, work: Path) -> dict:
    datasets = list(zip(args.datasets.split(","), map(int, args.limits.split(","))))
    rows = []
    for dataset, limit in datasets:
        run, seconds = train(f"{strategy}-s{seed}-{dataset}-{limit}", leg_config(strategy, seed, args, [(dataset, limit)]),
                             work, args.reuse)
        rows.append(describe(f"{dataset} alone", run, seconds))
    for mixing in args.mixings.split(","):
        name = f"{strategy}-s{seed}-multi-{mixing}-" + "-".join(f"{d}{n}" for d, n in datasets)
        run, seconds = train(name, leg_config(strategy, seed, args, datasets, mixing), work, args.reuse)
        rows.append(describe(f"multi-task ({mixing})", run, seconds))
    return {"strategy": strategy, "seed": seed, "rows": rows}


def print_table(result: dict) -> None:
    names = list(result["rows"][-1]["tasks"])
    print(f"\n{result['strategy']}, seed {result['seed']}")
    print(f"{'':>28} " + " ".join(f"{n + ' m-F1':>22}" for n in names) + f" {'train s':>8} {'model MB':>9} {'epochs':>7}")
    for row in result["rows"]:
        cells = " ".join(f"{row['tasks'][n]['macro_f1']:>22.4f}" if n in row["tasks"] else f"{'':>22}" for n in names)
        print(f"{row['leg']:>28} {cells} {row['train_time_s']:>8.0f} {row['model_mb']:>9.1f} "
              f"{row['best_epoch'] + 1 if row['best_epoch'] is not None else '-':>4}/{row['epochs_run']}")
    singles = [r for r in result["rows"] if r["leg"].endswith(" alone")]
    alone_s, alone_mb = sum(r["train_time_s"] for r in singles), sum(r["model_mb"] for r in singles)
    print(f"{'single runs together':>28} {'':>{23 * len(names) - 1}} {alone_s:>8.0f} {alone_mb:>9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="bbc-news,trec-questions", help="two (or more) built-in data sets")
    parser.add_argument("--limits", default="600,600", help="data.limit of each data set, in order")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--strategies", default="full", help=f"any of {', '.join(STRATEGIES)}")
    parser.add_argument("--seeds", default="0", help="training seeds (the split stays split_seed 0)")
    parser.add_argument("--mixings", default="proportional", help="proportional and / or temperature")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--work", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--reuse", action="store_true", help="runs already in --work are read, not trained")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        for strategy in args.strategies.split(","):
            for seed in map(int, args.seeds.split(",")):
                results.append(run_legs(strategy, seed, args, work))
                print_table(results[-1])
    if args.json:
        write_results(args.json, args, config=CONFIG, strategies=STRATEGIES, results=results)


if __name__ == "__main__":
    main()
