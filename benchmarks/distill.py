"""Knowledge distillation: smaller students against their teacher, each trained on the labels alone and distilled.

Per data set (`data.limit` examples of a built-in set, one fixed split): the teacher is MiniLM (all-MiniLM-L6-v2,
6 blocks) fine-tuned `full`; the students are MiniLM cut to its first 3 blocks (`model.num_blocks: 3`) and
paraphrase-MiniLM-L3 (3 blocks of its own), each trained on the labels alone and with `strategy.distill` (the
teacher's logits, T and alpha below), same epochs and learning rate. Every leg is a `tunelab train` process.
Reported per leg: parameters, saved model size, test accuracy / macro-F1, train time, and inference speed
(examples/s over the test split through `load_predictor`, in this process, `--threads` torch threads, the runs
timed in turn, the best of `--repeats` rounds); for the distilled legs, the teacher-logit pass (computed by the first, read from the
cache by the second).

    python benchmarks/distill.py --json results/distill.json
    python benchmarks/distill.py --datasets bbc-news --limit 1000 --max-length 128
    python benchmarks/distill.py --teacher RUN --students minilm-cut3 --lr 2e-4     # students of an earlier teacher
    python benchmarks/distill.py --teacher RUN --speed-only --max-length 128        # the architectures' speed alone
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import yaml
from common import run_tunelab, write_results

TEACHER = "minilm"
STUDENTS = {"minilm-cut3": {"name": "minilm", "num_blocks": 3}, "paraphrase-minilm-l3": "paraphrase-minilm-l3"}
# one budget for every leg: MiniLM full's compare settings (strategies/recommended.py; --lr replaces the rate),
# early stopping on validation
CONFIG = {"task": "classification", "strategy": {"name": "full", "layerwise_lr_decay": 0.95},
          "optim": {"lr": 5.0e-5}, "schedule": {"name": "linear", "warmup_ratio": 0.1},
          "train": {"batch_size": 16, "seed": 0}, "forgetting": {"measure": False}}


def leg_config(dataset: str, model: object, args: argparse.Namespace, teacher: Path | None, lr: float | None = None) -> dict:
    """A leg's config: the teacher's (`lr` given) or a student's (`args.lr`), distilled when `teacher` is given."""
    strategy = dict(CONFIG["strategy"])
    if teacher is not None:
        strategy["distill"] = {"teacher": str(teacher), "temperature": args.temperature, "alpha": args.alpha}
    return {**CONFIG, "model": model, "strategy": strategy,
            "train": {**CONFIG["train"], "epochs": args.epochs, "seed": getattr(args, "seed", 0)},
            "optim": {"lr": lr or args.lr},
            "data": {"builtin": dataset, "limit": args.limit, "max_length": args.max_length, "split_seed": 0,
                     "validation_split": 0.1, "test_split": 0.2}}


def train(name: str, config: dict, work: Path, reuse: bool = False) -> Path:
    path, out = work / f"{name}.yaml", work / name
    if reuse and (out / "manifest.json").is_file():  # --reuse: a run of an earlier call, timed again
        return out
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    run_tunelab("train", str(path), "--out", str(out), "--overwrite")
    return out


def test_records(run: Path) -> list:
    """The test split as the run scored it (its predictions.csv: text and gold label)."""
    from tunelab.data.records import Record

    with (run / "predictions.csv").open(newline="", encoding="utf-8") as handle:
        return [Record(text=r["text"], label=r["label"], where=r["where"]) for r in csv.DictReader(handle)]


def round_robin(predictors: dict[str, object], records: list, args: argparse.Namespace) -> dict[str, float]:
    """Examples per second of each predictor's `predict` over the test split, `args.threads` torch threads: one
    warm-up pass each, then `args.repeats` rounds taking each in turn (so a busy moment on a shared machine hits
    them alike), the best round of each."""
    import torch

    torch.set_num_threads(args.threads)
    best = {}
    for name, predictor in predictors.items():
        predictor.predict(records[:32])
        best[name] = float("inf")
    for _ in range(args.repeats):
        for name, predictor in predictors.items():
            started = time.perf_counter()
            predictor.predict(records)
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: round(len(records) / seconds, 1) for name, seconds in best.items()}


def describe(leg: str, run: Path, speed: float) -> dict:
    manifest = json.loads((run / "manifest.json").read_text())
    test = json.loads((run / "test_metrics.json").read_text())
    distill = manifest.get("distill") or {}
    return {"leg": leg, "parameters": manifest["total_params"],
            "model_mb": round(sum(p.stat().st_size for p in (run / "model").rglob("*") if p.is_file()) / 2**20, 1),
            "accuracy": round(test["accuracy"], 4), "macro_f1": round(test["macro_f1"], 4),
            "train_time_s": manifest["train_time_s"], "epochs_run": manifest["epochs_run"],
            "validation_macro_f1": [round(h["macro_f1"], 4) for h in manifest["history"] if "macro_f1" in h],
            "examples_per_s": speed, "teacher_logits": distill.get("teacher_logits"),
            "distill_s": distill.get("distill_s")}


def architecture_speeds(teacher: Path, args: argparse.Namespace) -> dict:
    """`--speed-only`: the teacher's and the students' architectures (pre-trained weights, a fresh native head:
    the weights do not change the time) timed round robin on the teacher run's test split, at `--max-length`."""
    from tunelab.catalog import parse_config
    from tunelab.models.loading import resolve_model_dir
    from tunelab.serving.predictor import Predictor
    from tunelab.tasks.registry import get_task

    records = test_records(teacher)
    labels = json.loads((teacher / "labels.json").read_text())["labels"]
    predictors = {}
    for name, model in {"teacher (MiniLM, 6 blocks)": TEACHER, **STUDENTS}.items():
        config = parse_config({**leg_config("bbc-news", model, args, None), "head": {"type": "native"},
                               "train": {"precision": "fp32"}})
        task = get_task(config.task)
        built = task.build_model(config.model, config.head, labels).eval()
        tokenizer = task.load_preprocessor(resolve_model_dir(config.model.name), config)
        predictors[name] = Predictor(config=config, task=task, model=built, tokenizer=tokenizer, label_names=labels,
                                     source=teacher, backend="pytorch")
    speeds = round_robin(predictors, records, args)
    return {"test_examples": len(records), "max_length": args.max_length, "examples_per_s": speeds,
            "parameters": {name: sum(p.numel() for p in pred.model.parameters()) for name, pred in predictors.items()}}


def run_dataset(dataset: str, args: argparse.Namespace, work: Path) -> dict:
    teacher = args.teacher or train(f"{dataset}-teacher", leg_config(dataset, TEACHER, args, None, args.teacher_lr), work,
                                    args.reuse)
    runs = {"teacher (MiniLM, 6 blocks)": teacher}
    for student in args.students.split(","):
        model = STUDENTS[student]
        runs[f"{student}, labels"] = train(f"{dataset}-{student}-labels", leg_config(dataset, model, args, None), work,
                                           args.reuse)
        runs[f"{student}, distilled"] = train(f"{dataset}-{student}-distilled",
                                              leg_config(dataset, model, args, teacher), work, args.reuse)
    records = test_records(teacher)
    from tunelab.serving.predictor import load_predictor

    speeds = round_robin({leg: load_predictor(run) for leg, run in runs.items()}, records, args)
    rows = [describe(leg, run, speeds[leg]) for leg, run in runs.items()]
    return {"dataset": dataset, "test_examples": len(records), "rows": rows}


def print_table(result: dict) -> None:
    print(f"\n{result['dataset']}: {result['test_examples']} test examples")
    print(f"{'':>34} {'params':>7} {'MB':>5} {'ex/s':>6} {'acc':>6} {'m-F1':>6} {'train s':>7}  teacher logits")
    teacher = result["rows"][0]
    for row in result["rows"]:
        logits = row["teacher_logits"]
        note = "" if logits is None else (f"{logits['computed']} computed, {logits['seconds']} s" if logits["computed"]
                                          else f"{logits['reused']} reused, {logits['seconds']} s")
        print(f"{row['leg']:>34} {row['parameters'] / 1e6:>6.1f}M {row['model_mb']:>5.0f} {row['examples_per_s']:>6.0f} "
              f"{row['accuracy']:>6.3f} {row['macro_f1']:>6.3f} {row['train_time_s']:>7.0f}  {note}")
    for row in result["rows"][1:]:
        print(f"  {row['leg']}: {row['examples_per_s'] / teacher['examples_per_s']:.2f}x the teacher's speed, "
              f"{100 * (row['macro_f1'] - teacher['macro_f1']):+.1f} macro-F1 points against it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="bbc-news", help="built-in data sets, comma-separated")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="the training seed (the split stays split_seed 0)")
    parser.add_argument("--lr", type=float, default=5.0e-5, help="every student's learning rate")
    parser.add_argument("--teacher-lr", type=float, default=None, help="the teacher's (default: --lr)")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--students", default=",".join(STUDENTS), help=f"any of {', '.join(STUDENTS)}")
    parser.add_argument("--teacher", type=Path, default=None, help="an earlier teacher run of this data set and "
                                                                     "split (its logits may be cached): not trained again")
    parser.add_argument("--work", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--reuse", action="store_true", help="runs already in --work are read and timed, not trained")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the inference timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--speed-only", action="store_true", help="time the architectures on --teacher's test split")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.speed_only:
        speeds = architecture_speeds(args.teacher, args)
        print(json.dumps(speeds, indent=2))
        if args.json:
            write_results(args.json, args, **speeds)
        return
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        for dataset in args.datasets.split(","):
            results.append(run_dataset(dataset, args, work))
            print_table(results[-1])
    if args.json:
        write_results(args.json, args, config=CONFIG, results=results)


if __name__ == "__main__":
    main()
