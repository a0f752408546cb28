"""Merging against its inputs on real data: `tunelab merge` of MiniLM runs on BBC News by each method (linear,
task arithmetic, TIES) and as a greedy soup, beside the best single run and `tunelab predict --ensemble` of the
same runs, all on one test split.

The runs are one `tunelab compare --demo` (MiniLM, BBC News, `data.limit` articles, max_length 128) of the
strategies given (default `full` and `lora`) and seeds, so every row holds out the same validation and test
articles. Each strategy's rows are merged by each method; the greedy soup reads the whole compare folder (rows
of both strategies, ranked by validation). Test figures come from each merge's merge.json (the merge and each
run, scored on the test split once, after the choice on validation); the ensemble's from predict's output on
the first row's predictions.csv articles, scored with scikit-learn (benchmarks/ensemble.py's helpers).

    python benchmarks/merge.py --json benchmarks/results/merge-bbc-2026-12-07-cpu.json
    python benchmarks/merge.py --compare /tmp/cmp          # reuse a finished comparison
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import run_tunelab, write_results
from ensemble import score, test_file

METHODS = ("linear", "task_arithmetic", "ties")


def overrides(args: argparse.Namespace) -> list[str]:
    """The compare's `--set` values over the demo config (MiniLM, BBC News)."""
    return [f"data.limit={args.limit}", f"data.max_length={args.max_length}", "forgetting.measure=false",
            f"train.num_threads={args.threads}"]


def compare(args: argparse.Namespace, work: Path) -> Path:
    out = work / "cmp"
    run_tunelab("compare", "--demo", "--strategies", args.strategies, "--seeds", args.seeds, "--out", str(out),
                *[f"--set={item}" for item in overrides(args)])
    return out


def merged(sources: list[str], method: str, out: Path) -> dict:
    """One `tunelab merge`, timed as a process (prepare, load, search, test, write) and by its own record."""
    started = time.perf_counter()
    run_tunelab("merge", *sources, "--method", method, "--out", str(out), "--overwrite")
    record = json.loads((out / "merge.json").read_text())
    chosen = {k: v for k, v in record["chosen"].items() if k not in ("validation_loss", "seconds")}
    if "runs" in chosen:
        chosen["runs"] = [Path(r).name for r in chosen["runs"]]
    return {"method": method, "accuracy": record["test"]["accuracy"], "macro_f1": record["test"]["macro_f1"],
            "chosen": chosen, "validation": record["chosen"]["validation"], "seconds": record["seconds"],
            "process_s": round(time.perf_counter() - started, 1), "skipped": record["skipped"],
            "runs": [{"run": Path(r["run"]).name, "validation_macro_f1": r["validation"]["macro_f1"],
                      "accuracy": r["test"]["accuracy"], "macro_f1": r["test"]["macro_f1"]} for r in record["runs"]],
            "best_on_validation": Path(record["best_single_run_on_validation"]).name,
            "searched": [{k: v for k, v in p.items() if k != "seconds"} for p in record.get("grid", [])]
            or [{**s, "run": Path(s["run"]).name} for s in record["steps"]]}


def ensemble(rows: list[Path], test: Path, gold: list[str], work: Path) -> dict:
    out = work / f"ensemble-{rows[0].name}.jsonl"
    run_tunelab("predict", "--ensemble", *map(str, rows), "--input", str(test), "--output", str(out))
    return {"method": "predict --ensemble", **score(out, gold)}


def strategy_group(cmp: Path, strategy: str, args: argparse.Namespace, work: Path) -> dict:
    rows = sorted((cmp / "runs").glob(f"{strategy}-s*"))
    results = [merged(list(map(str, rows)), method, work / f"{strategy}-{method}") for method in METHODS]
    test, gold = test_file(rows[0], work)
    runs = results[0]["runs"]
    best = next(r for r in runs if r["run"] == results[0]["best_on_validation"])
    return {"strategy": strategy, "runs": runs, "best_on_validation": best, "merges": results,
            "ensemble": ensemble(rows, test, gold, work), "test_examples": len(gold)}


def show(groups: list[dict], soup: dict) -> None:
    print(f"{'':>38} {'test accuracy':>13} {'macro-F1':>8}  chosen on validation")
    for group in groups:
        for run in group["runs"]:
            print(f"{run['run']:>38} {run['accuracy']:>13.4f} {run['macro_f1']:>8.4f}  (validation macro-F1 "
                  f"{run['validation_macro_f1']:.4f})")
        for row in group["merges"]:
            print(f"{group['strategy'] + ' ' + row['method']:>38} {row['accuracy']:>13.4f} {row['macro_f1']:>8.4f}  "
                  f"{row['chosen']}  ({row['seconds']['load_s'] + row['seconds']['search_s']:.0f} s load + search)")
        row = group["ensemble"]
        print(f"{group['strategy'] + ' ensemble':>38} {row['accuracy']:>13.4f} {row['macro_f1']:>8.4f}")
    print(f"{'greedy soup (all rows)':>38} {soup['accuracy']:>13.4f} {soup['macro_f1']:>8.4f}  {soup['chosen']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", type=Path, default=None, help="a finished compare folder to reuse")
    parser.add_argument("--strategies", default="full,lora")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--limit", type=int, default=800)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (1: the cores are shared)")
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        started = time.perf_counter()
        cmp = args.compare or compare(args, work)
        compare_s = time.perf_counter() - started
        groups = [strategy_group(cmp, strategy, args, work) for strategy in args.strategies.split(",")]
        soup = merged([str(cmp)], "greedy_soup", work / "soup")
    show(groups, soup)
    if args.json:
        write_results(args.json, args, compare_s=round(compare_s, 1) if args.compare is None else None, groups=groups,
                      greedy_soup=soup)


if __name__ == "__main__":
    main()
