"""An ensemble of runs against its members: `tunelab predict --ensemble` over runs of several strategies (or
seeds) on BBC News, each scored on the same test split.

Every member is a `tunelab train --demo` process (MiniLM, BBC News) with its strategy's own settings from
compare's table (`strategies/recommended.py`), `data.limit` articles, the split seed fixed so every member
holds out the same validation and test articles. The test split is taken from the first member's
predictions.csv (text and gold label), predicted by `tunelab predict --ensemble MEMBERS...`, and scored with
scikit-learn beside each member's own test_metrics.json.

    python benchmarks/ensemble.py --json results/ensemble.json
    python benchmarks/ensemble.py --members partial:0,partial:1,partial:2      # seeds of one strategy
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

from common import run_tunelab, write_results


def member(strategy: str, seed: int, args: argparse.Namespace, work: Path) -> dict:
    from tunelab.strategies.recommended import recommended_settings

    out = work / f"{strategy}-s{seed}"
    sets = {"strategy": f"{{name: {strategy}}}", "train.epochs": 3, "train.seed": seed, "data.split_seed": 0,
            "data.limit": args.limit, "forgetting.measure": "false",
            **recommended_settings(strategy, num_blocks=6, epochs=3)}  # its own lr, epochs and depth last
    run_tunelab("train", "--demo", "--out", str(out), "--overwrite", *[f"--set={k}={v}" for k, v in sets.items()])
    metrics = json.loads((out / "test_metrics.json").read_text())
    return {"member": out.name, "run": str(out), "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}


def test_file(run: Path, work: Path) -> tuple[Path, list[str]]:
    """The run's test split as text + label, in its predictions.csv order."""
    with (run / "predictions.csv").open(newline="", encoding="utf-8") as handle:
        rows = [(r["text"], r["label"]) for r in csv.DictReader(handle)]
    path = work / "test.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        writer.writerows([text] for text, _ in rows)
    return path, [label for _, label in rows]


def score(predictions: Path, gold: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    predicted = [json.loads(line)["prediction"] for line in predictions.read_text().splitlines()]
    return {"accuracy": accuracy_score(gold, predicted), "macro_f1": f1_score(gold, predicted, average="macro")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", default="head:0,partial:0,lora:0", help="strategy:seed, comma-separated")
    parser.add_argument("--limit", type=int, default=800)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        members = [member(spec.split(":")[0], int(spec.split(":")[1]), args, work) for spec in args.members.split(",")]
        test, gold = test_file(Path(members[0]["run"]), work)
        out = work / "ensemble.jsonl"
        run_tunelab("predict", "--ensemble", *[m["run"] for m in members], "--input", str(test), "--output", str(out))
        ensemble = {"member": "ensemble (mean of probabilities)", **score(out, gold)}
    best = max(members, key=lambda m: m["macro_f1"])
    print(f"{'':>34} {'test accuracy':>13} {'macro-F1':>8}   ({len(gold)} test articles)")
    for row in [*members, ensemble]:
        print(f"{row['member']:>34} {row['accuracy']:>13.4f} {row['macro_f1']:>8.4f}")
    print(f"ensemble vs best member: {100 * (ensemble['macro_f1'] - best['macro_f1']):+.1f} macro-F1 points")
    if args.json:
        write_results(args.json, args, members=members, ensemble=ensemble, test_examples=len(gold))


if __name__ == "__main__":
    main()
