"""Text augmentation with little data: MiniLM `full` on a tenth of the training split, with and without
`data.augment`, over several seeds, on BBC News and on another built-in set; test macro-F1 and accuracy per
leg (mean and spread over the seeds) and the difference against no augmentation.

    python benchmarks/augment.py --json results/augment.json
    python benchmarks/augment.py --datasets trec-questions --seeds 0 --legs none,all   # a quicker look

Every run is a `tunelab train` process of one config (`full`, compare's settings for it: lr 5e-5, layer-wise
decay 0.95; 10 epochs, early stopping on validation macro-F1 with the best epoch restored; 128 tokens) with
`data.train_fraction` 0.1 and the leg's `data.augment`; the split seed is fixed, so every leg and seed trains
on the same tenth and is tested on the same test split, and seeds vary the training only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from common import run_tunelab, write_results

LEGS = {
    "none": {},
    "span_mask": {"span_mask": 0.15},
    "swap": {"swap": 0.1},
    "token_dropout": {"token_dropout": 0.1},
    "all": {"token_dropout": 0.1, "swap": 0.1, "span_mask": 0.15},
}
CONFIG = {"model": "minilm", "task": "classification",
          "strategy": {"name": "full", "layerwise_lr_decay": 0.95}, "optim": {"lr": 5e-5},
          "train": {"epochs": 10, "batch_size": 16}, "early_stopping": {"metric": "macro_f1", "patience": 3},
          "forgetting": {"measure": False}}


def run(dataset: str, leg: str, seed: int, fraction: float, work: Path) -> dict:
    import yaml

    out = work / f"{dataset}-{leg}-s{seed}"
    config = {**CONFIG, "data": {"builtin": dataset, "max_length": 128, "train_fraction": fraction, "split_seed": 0,
                                 "augment": LEGS[leg]},
              "train": {**CONFIG["train"], "seed": seed}, "output": str(out)}
    path = work / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    run_tunelab("train", str(path), "--overwrite")
    metrics = json.loads((out / "test_metrics.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    return {"dataset": dataset, "leg": leg, "seed": seed, "augment": LEGS[leg], "macro_f1": metrics["macro_f1"],
            "accuracy": metrics["accuracy"], "best_epoch": metrics.get("best_epoch"),
            "train_time_s": manifest["train_time_s"]}


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        base = [r["macro_f1"] for r in runs if r["dataset"] == dataset and r["leg"] == "none"]
        for leg in dict.fromkeys(r["leg"] for r in runs if r["dataset"] == dataset):
            mine = [r for r in runs if r["dataset"] == dataset and r["leg"] == leg]
            f1 = [r["macro_f1"] for r in mine]
            rows.append({"dataset": dataset, "leg": leg, "seeds": len(mine), "macro_f1_mean": statistics.fmean(f1),
                         "macro_f1_std": statistics.stdev(f1) if len(f1) > 1 else 0.0,
                         "accuracy_mean": statistics.fmean(r["accuracy"] for r in mine),
                         "points_vs_none": 100 * (statistics.fmean(f1) - statistics.fmean(base)) if base else None,
                         "train_time_s_mean": statistics.fmean(r["train_time_s"] for r in mine)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="bbc-news,trec-questions")
    parser.add_argument("--legs", default="none,all", help=f"comma-separated, of: {', '.join(LEGS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for dataset in args.datasets.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                for leg in args.legs.split(","):
                    runs.append(run(dataset, leg, seed, args.fraction, Path(scratch)))
                    print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    rows = summarise(runs)
    print(f"{'data set':>15} {'leg':>13} {'seeds':>5} {'macro-F1':>15} {'(pts vs none)':>13} {'accuracy':>8} {'train s':>7}")
    for row in rows:
        delta = "" if row["points_vs_none"] is None else f"{row['points_vs_none']:+.1f}"
        print(f"{row['dataset']:>15} {row['leg']:>13} {row['seeds']:>5} {row['macro_f1_mean']:>8.4f} +- "
              f"{row['macro_f1_std']:.3f} {delta:>13} {row['accuracy_mean']:>8.4f} {row['train_time_s_mean']:>7.1f}")
    if args.json:
        write_results(args.json, args, config=CONFIG, runs=runs, summary=rows)


if __name__ == "__main__":
    main()
