"""Is recommend's advice right? recommend, then the plan trained, then compare with every applicable strategy,
on real labelled text sets, at the full training split and at 0.1 of it.

    python benchmarks/recommend_vs_compare.py --sets bbc-news,twitter-sentiment --limit 1500   # the development sets
    python benchmarks/recommend_vs_compare.py --sets sms-spam,trec-questions,movie-snippets --limit 1500  # held out

Per set and data fraction, each leg a CLI subprocess timed wall-clock by this script, each with a fresh
cache root (TUNELAB_CACHE; its models/ linked to one shared model cache, so only activations are cold):
- recommend CONFIG (3 candidates: minilm, paraphrase-minilm-l3, minilm-random), writing the plan's config;
- train of the plan, in recommend's cache root (its warmed features reused), and again in a fresh root
  (the train alone): recommend + train after it against the train alone (target <= 1.1x);
- compare CONFIG on minilm with every strategy (once per set, at fractions 1.0 and 0.1);
- head and lora on each other candidate backbone (once per set, fraction 1.0): with compare's head and
  lora rows on minilm, a backbone's measured score is the better of its two, the ground truth of the
  rank correlation between recommend's scores and fine-tuned scores.
Regret = the best compare row's test macro-F1 minus the plan's. Results go to DIR/results.json after
every leg, and a table is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

CANDIDATES = ("minilm", "paraphrase-minilm-l3", "minilm-random")
DEVELOPMENT = ("bbc-news", "twitter-sentiment")  # the rules in strategies/advice.py were set on these only
METRIC = "macro_f1"


def _config(args: argparse.Namespace, name: str, out: Path, fraction: float) -> Path:
    raw = {"model": "minilm", "task": "classification",
           "data": {"builtin": name, "validation_split": 0.1, "test_split": 0.2, "max_length": args.max_length,
                    "limit": args.limit, "train_fraction": fraction},
           "train": {"epochs": args.epochs, "batch_size": 16, "seed": 0},
           "early_stopping": {"metric": METRIC, "patience": 2}, "output": str(out / "plan-warm")}
    path = out / "config.yaml"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _run(cmd: list[str], cache: Path, models: Path, log: Path) -> float:
    """Run a tunelab command in cache root `cache`; its wall seconds. A failure stops the benchmark, naming the log."""
    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / "models").exists():
        (cache / "models").symlink_to(models)
    env = {**os.environ, "TUNELAB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    with log.open("w") as handle:
        rc = subprocess.run([sys.executable, "-m", "tunelab", *cmd], env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - started
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (rc {rc}); see {log}")
    return seconds


def _test_score(run_dir: Path) -> float:
    return float(json.loads((run_dir / "test_metrics.json").read_text())[METRIC])


def _plan_legs(args: argparse.Namespace, name: str, fraction: float, work: Path, models: Path) -> dict[str, Any]:
    """recommend, the plan after it (warm), the plan alone (cold)."""
    out = work / name / f"f{fraction:g}"
    config = _config(args, name, out, fraction)
    rec_seconds = _run(["recommend", str(config), "--models", ",".join(CANDIDATES), "--out", str(out / "recommend"),
                        "--max-examples", str(args.max_examples)], out / "cache-recommend", models, out / "recommend.log")
    plan_config = out / "recommend" / "recommended.yaml"
    after = _run(["train", str(plan_config), "--out", str(out / "plan-warm")], out / "cache-recommend", models,
                 out / "plan-warm.log")
    alone = _run(["train", str(plan_config), "--out", str(out / "plan-cold")], out / "cache-cold", models,
                 out / "plan-cold.log")
    record = json.loads((out / "recommend" / "recommend.json").read_text())
    warm, cold = _test_score(out / "plan-warm"), _test_score(out / "plan-cold")
    return {"fraction": fraction, "recommend_s": rec_seconds, "plan_after_s": after, "plan_alone_s": alone,
            "reuse_ratio": (rec_seconds + after) / alone, "plan": record["plan"], "plan_score": cold,
            "plan_score_warm": warm, "backbones": {b["model"]: {"score": b["score"], "probe": b["depths"][-1]["probe_macro_f1"]}
                                                 for b in record["backbones"]}}


def _compare(args: argparse.Namespace, name: str, out: Path, models: Path, extra: list[str]) -> dict[str, Any]:
    """One compare leg, read back from its leg.json when an earlier run of this script finished it."""
    done = out / "leg.json"
    if done.is_file():
        return json.loads(done.read_text())
    config = _config(args, name, out, 1.0)
    seconds = _run(["compare", str(config), "--out", str(out / "cmp"), "--overwrite", *extra], out / "cache", models,
                   out / "compare.log")
    result = json.loads((out / "cmp" / "compare.json").read_text())
    leg = {"compare_s": seconds, "summary": result["summary"],
           "rows": [{k: r.get(k) for k in ("strategy", "data_fraction", "train_time_s", "wall_time_s", "status")}
                    for r in result["rows"]]}
    done.write_text(json.dumps(leg))
    return leg


def _compare_leg(args: argparse.Namespace, name: str, work: Path, models: Path) -> dict[str, Any]:
    extra = ["--data-fractions", "1.0,0.1"] + (["--strategies", args.strategies] if args.strategies else [])
    return _compare(args, name, work / name / "compare", models, extra)


def _backbone_legs(args: argparse.Namespace, name: str, work: Path, models: Path) -> dict[str, dict[str, float]]:
    """head and lora test scores on each candidate but minilm (whose come from compare), as compare rows: the
    same recommended settings as minilm's."""
    scores: dict[str, dict[str, float]] = {}
    for model in CANDIDATES[1:]:
        leg = _compare(args, name, work / name / "backbones" / model, models,
                       ["--strategies", "head,lora", "--set", f"model.name={model}"])
        scores[model] = {s["strategy"]: s["mean"] for s in leg["summary"]}
    return scores


def _summarise(entry: dict[str, Any]) -> dict[str, Any]:
    """Regret per fraction, and whether the plan is the costliest of the strategies within noise of the best."""
    summary = entry["compare"]["summary"]
    for leg in entry["plans"]:
        group = [s for s in summary if s["data_fraction"] == leg["fraction"]]
        best = max(group, key=lambda s: s["mean"])
        leg["best_strategy"], leg["best_score"] = best["strategy"], best["mean"]
        leg["regret"] = best["mean"] - leg["plan_score"]
        near = [s["strategy"] for s in group if s.get("within_noise_of_best")]
        times = {r["strategy"]: r["train_time_s"] for r in entry["compare"]["rows"]
                 if r["data_fraction"] == leg["fraction"] and r["status"] == "done"}
        leg["within_noise"] = near
        leg["plan_costliest_within_noise"] = bool(near) and leg["plan"]["strategy"] == max(
            near, key=lambda s: times.get(s, 0.0)) and len(near) > 1
    return entry


def _measured(entry: dict[str, Any]) -> dict[str, float]:
    """A backbone's measured score: the better of its head and lora runs at the full training split."""
    full = {s["strategy"]: s["mean"] for s in entry["compare"]["summary"] if s["data_fraction"] == 1.0}
    out = {"minilm": max(full.get("head", 0.0), full.get("lora", 0.0))}
    out.update({m: max(v.values()) for m, v in entry["backbones"].items()})
    return out


def _spearman(x: list[float], y: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def _table(results: dict[str, Any]) -> str:
    lines = [f"{'set':24} {'frac':>4} {'plan':>22} {'plan F1':>7} {'expected':>11} {'best':>13} {'best F1':>7} "
             f"{'regret':>7} {'costliest?':>10} {'rec s':>5} {'cmp s':>5} {'reuse':>6} {'rho':>5}"]
    xs, ys, px = [], [], []
    for name, entry in results.items():
        measured = _measured(entry)
        fulls = next(p for p in entry["plans"] if p["fraction"] == 1.0)["backbones"]
        models = list(measured)
        rho = _spearman([fulls[m]["score"] for m in models], [measured[m] for m in models])
        xs += [fulls[m]["score"] for m in models]
        px += [fulls[m]["probe"] for m in models]
        ys += [measured[m] for m in models]
        for leg in entry["plans"]:
            plan = f"{leg['plan']['model']}/{leg['plan']['strategy']}"
            low, high = leg["plan"]["expected_test_macro_f1"]
            inside = "" if low <= leg["plan_score"] <= high else "!"
            lines.append(f"{name + (' (dev)' if name in DEVELOPMENT else ' (held out)'):24} {leg['fraction']:>4g} "
                         f"{plan:>22} {leg['plan_score']:>7.4f} {inside:1}{low:.2f}-{high:.2f} {leg['best_strategy']:>13} "
                         f"{leg['best_score']:>7.4f} {100 * leg['regret']:>6.2f}p "
                         f"{'yes' if leg['plan_costliest_within_noise'] else 'no':>10} {leg['recommend_s']:>5.1f} "
                         f"{entry['compare']['compare_s']:>5.0f} {leg['reuse_ratio']:>5.2f}x {rho:>5.2f}")
    if len(xs) > 2:
        lines.append(f"pooled Spearman over backbones x sets: probe F1 {_spearman(px, ys):.3f}, "
                     f"LogME {_spearman(xs, ys):.3f} (LogME's scale differs between sets)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="bbc-news,twitter-sentiment,sms-spam,trec-questions,movie-snippets")
    parser.add_argument("--limit", type=int, default=1500, help="at most N examples per set (stratified)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-examples", type=int, default=1000, help="recommend's sample per backbone")
    parser.add_argument("--strategies", default=None, help="compare's (default: every applicable one)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/recommend_vs_compare"))
    args = parser.parse_args()
    models = args.work / "model-cache"
    models.mkdir(parents=True, exist_ok=True)
    results_path = args.work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for name in args.sets.split(","):
        if name in results:
            continue
        entry = {"plans": [_plan_legs(args, name, f, args.work, models) for f in (1.0, 0.1)],
                 "compare": _compare_leg(args, name, args.work, models),
                 "backbones": _backbone_legs(args, name, args.work, models)}
        results[name] = _summarise(entry)
        results_path.write_text(json.dumps(results, indent=1))
        print(f"{name}: done", flush=True)
    print(_table(results))
    print("expected: the plan's expected test macro-F1 (! where the measured one falls outside); costliest?: the plan "
          "is the most expensive of the strategies within noise of the best; reuse: (recommend + train of the plan "
          "after it) / the plan's train alone; rho: Spearman of LogME and the measured score over the backbones")
    print(f"results: {results_path}; settings: limit {args.limit}, max_length {args.max_length}, epochs {args.epochs}")


if __name__ == "__main__":
    main()
