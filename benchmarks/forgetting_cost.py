"""What the forgetting meter costs: the demo's `partial` run on BBC News (MiniLM) with the meter and without it,
each a `tunelab train --demo` process timed wall-clock from start to exit by this script, and the ratio.
The issue's bar: the meter adds less than 10% to a partial run.

    python benchmarks/forgetting_cost.py                                   # the demo's settings
    python benchmarks/forgetting_cost.py --limit 100 --epochs 1 --max-length 32   # a smoke run

Each leg gets its own empty activation cache (`train.cache_dir`), so neither reads what the other computed.
The meter's own clock (`forgetting.seconds` in test_metrics.json: drift, both models' block features on the
reference sample, retention) is printed too; the difference of the two wall times also holds the meter's
copy of the base model and the noise of a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.10  # the meter may add at most this share of the run's wall time


def command(args: argparse.Namespace, out: Path, cache: Path, measure: bool) -> list[str]:
    sets = ["strategy.name=partial", f"train.cache_dir={cache}", f"forgetting.measure={str(measure).lower()}",
            f"forgetting.max_examples={args.max_examples}"]
    sets += [f"data.limit={args.limit}"] if args.limit else []
    sets += [f"train.epochs={args.epochs}"] if args.epochs else []
    sets += [f"data.max_length={args.max_length}"] if args.max_length else []
    sets += [f"train.num_threads={args.threads}"] if args.threads else []
    return [sys.executable, "-m", "tunelab", "train", "--demo", "--out", str(out), *(x for s in sets for x in ("--set", s))]


def leg(args: argparse.Namespace, folder: Path, measure: bool) -> dict[str, Any]:
    name = "meter" if measure else "plain"
    out, cache = folder / name, folder / f"cache-{name}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    started = time.perf_counter()
    done = subprocess.run(command(args, out, cache, measure), env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{name} leg failed ({done.returncode}):\n{done.stderr[-3000:]}")
    test = json.loads((out / "test_metrics.json").read_text())
    return {"leg": name, "wall_s": wall, "meter_s": (test.get("forgetting") or {}).get("seconds"),
            "macro_f1": test.get("macro_f1"), "forgetting": test.get("forgetting")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="data.limit (default: all 2,225 articles)")
    parser.add_argument("--epochs", type=int, default=None, help="train.epochs (default: the demo's 3)")
    parser.add_argument("--max-length", type=int, default=None, help="data.max_length (default: the demo's 128)")
    parser.add_argument("--max-examples", type=int, default=256, help="forgetting.max_examples")
    parser.add_argument("--threads", type=int, default=None, help="train.num_threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="forgetting-cost-") as tmp:
        plain, meter = leg(args, Path(tmp), False), leg(args, Path(tmp), True)
    added = meter["wall_s"] - plain["wall_s"]
    share = added / plain["wall_s"]
    print(f"partial on BBC News: without the meter {plain['wall_s']:.1f} s, with it {meter['wall_s']:.1f} s "
          f"(ratio {meter['wall_s'] / plain['wall_s']:.3f}; the meter's own clock {meter['meter_s']} s, "
          f"{100 * (meter['meter_s'] or 0) / plain['wall_s']:.1f}% of the plain run)")
    print(f"added wall time: {100 * share:+.1f}% (target < {100 * TARGET:.0f}%): {'met' if share < TARGET else 'NOT met'}")
    print(f"macro_f1 {plain['macro_f1']} / {meter['macro_f1']} (equal: the meter changes no training)")
    print(json.dumps(meter["forgetting"]))
    if args.json:
        args.json.write_text(json.dumps({"plain": plain, "meter": meter, "added_share": share}, indent=2))


if __name__ == "__main__":
    main()
