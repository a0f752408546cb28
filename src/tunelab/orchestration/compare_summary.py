"""What a comparison concludes from its rows: mean ± std per strategy and data fraction, which strategies
are within noise of the best (a paired bootstrap over test examples, or a paired t-test over seeds where
the metric cannot be resampled), a one-line verdict, and the files and table that show them."""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from tunelab.atomic import atomic_write_json, atomic_write_text
from tunelab.config.schema import RunConfig
from tunelab.evaluation.bootstrap import BOOTSTRAP_METRICS, paired_bootstrap
from tunelab.tasks.registry import get_task
from tunelab.training.callbacks.early_stopping import metric_mode

__all__ = ["CompareResult", "summarize", "write_compare_outputs", "compare_metric", "NOISE_P", "POINT"]

NOISE_P = 0.05   # within noise: the best beats it in fewer than 95% of the paired resamples
POINT = 0.005    # "within 0.5 point" on a metric in [0, 1]
BOOTSTRAP_TEST = ("paired bootstrap over test examples (2000 resamples, mean over seeds; within noise: the "
                  "best scores higher in fewer than 95% of them)")
SEEDS_TEST = "paired t-test over seeds (one-sided, p >= 0.05 is within noise)"


@dataclass
class CompareResult:
    out: Path
    metric: str
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    verdict: Optional[dict[str, str]]
    skipped: list[dict[str, str]]
    noise_test: str
    wall_time_s: float

    @property
    def all_failed(self) -> bool:
        return not any(r["status"] == "done" for r in self.rows)

    def as_dict(self, config: RunConfig) -> dict[str, Any]:
        return {"metric": self.metric, "mode": _mode(self.metric, config), "config": config.model_dump(mode="json"),
                "rows": self.rows, "skipped": self.skipped, "summary": self.summary, "verdict": self.verdict,
                "noise_test": self.noise_test, "wall_time_s": round(self.wall_time_s, 2)}


def compare_metric(config: RunConfig, rows: list[dict[str, Any]]) -> str:
    """The task's selection metric where the test split reports it (macro_f1, mse), else the first of the
    task's metrics it reports (rouge_l for instruction tuning, whose selection metric is the loss)."""
    tests = [r["test"] for r in rows if r["status"] == "done"]
    wanted = [config.early_stopping.metric or "", *get_task(config.task).metric_names]
    for name in wanted:
        if tests and all(isinstance(t.get(name), (int, float)) for t in tests):
            return name
    return wanted[0]


def _mode(metric: str, config: RunConfig) -> str:
    mode = config.early_stopping.mode if metric == config.early_stopping.metric else "auto"
    return metric_mode(metric, mode)


def summarize(out: Path, config: RunConfig, rows: list[dict[str, Any]], skipped: list[dict[str, str]],
              wall_time_s: float) -> CompareResult:
    metric = compare_metric(config, rows)
    higher = _mode(metric, config) == "max"
    summary, tests = [], set()
    for fraction in sorted({r["data_fraction"] for r in rows}):
        group = _group(rows, fraction, metric)
        if not group:
            continue
        best = max(group, key=lambda s: s["mean"] if higher else -s["mean"])
        for item in group:
            test, within = _within_noise(out, config, metric, rows, best, item)
            item["within_noise_of_best"] = within
            tests.add(test)
        summary += sorted(group, key=lambda s: -s["mean"] if higher else s["mean"])
    noise = "; ".join(sorted(t for t in tests if t)) or "none (one seed and a metric the bootstrap cannot resample)"
    return CompareResult(out, metric, rows, summary, _verdict(summary, metric, higher), skipped, noise, wall_time_s)


def _group(rows: list[dict[str, Any]], fraction: float, metric: str) -> list[dict[str, Any]]:
    """One summary entry per strategy at this data fraction, over its finished seeds."""
    out = []
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        done = [r for r in rows if r["strategy"] == strategy and r["data_fraction"] == fraction
                and r["status"] == "done" and isinstance(r["test"].get(metric), (int, float))]
        if not done:
            continue
        values = [float(r["test"][metric]) for r in done]
        out.append({"strategy": strategy, "data_fraction": fraction, "mean": statistics.fmean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values),
                    "seeds": [r["seed"] for r in done], "runs": [r["name"] for r in done],
                    "train_time_s": statistics.fmean(r["train_time_s"] for r in done),
                    "trainable_params": done[0]["trainable_params"], "total_params": done[0]["total_params"],
                    "model_bytes": done[0]["model_bytes"],
                    "peak_rss_mb": max((r["peak_rss_mb"] or 0.0) for r in done)})
    return out


def _within_noise(out: Path, config: RunConfig, metric: str, rows: list[dict[str, Any]], best: dict[str, Any],
                  item: dict[str, Any]) -> tuple[str, Optional[bool]]:
    """Whether `item` cannot be told apart from `best`: the test used and its answer (None: no test fits)."""
    if item is best:
        return "", True
    seeds = [s for s in best["seeds"] if s in item["seeds"]]
    truth_and_preds = _predictions(out, config, metric, best, item, seeds)
    if truth_and_preds is not None:
        truth, a, b = truth_and_preds
        return BOOTSTRAP_TEST, paired_bootstrap(metric, truth, a, b) >= NOISE_P
    if len(seeds) >= 2:
        from scipy.stats import ttest_rel

        value = lambda s, seed: next(r["test"][metric] for r in rows if r["name"] == s["runs"][s["seeds"].index(seed)])  # noqa: E731
        a, b = [value(best, s) for s in seeds], [value(item, s) for s in seeds]
        if np.allclose(a, b):
            return SEEDS_TEST, True
        alternative = "greater" if _mode(metric, config) == "max" else "less"
        return SEEDS_TEST, bool(ttest_rel(a, b, alternative=alternative).pvalue >= NOISE_P)
    return "", None


def _predictions(out: Path, config: RunConfig, metric: str, best: dict[str, Any], item: dict[str, Any],
                 seeds: list[int]) -> Optional[tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]]:
    """Gold values and the two strategies' test predictions per shared seed, from predictions.csv, where the
    metric is one the bootstrap resamples (single-label classification, regression)."""
    kind = get_task(config.task).label_kind
    if metric not in BOOTSTRAP_METRICS or kind not in ("class", "number") or not seeds:
        return None
    try:
        tables = {s["strategy"]: [_read_predictions(out / "runs" / s["runs"][s["seeds"].index(seed)])
                                  for seed in seeds] for s in (best, item)}
    except (OSError, KeyError, ValueError):
        return None
    gold = tables[best["strategy"]][0][0]
    if any(len(t[0]) != len(gold) or t[0] != gold for ts in tables.values() for t in ts):
        return None  # not the same test set: nothing to pair
    encode = (lambda v: np.asarray(v, dtype=np.float64)) if kind == "number" else _class_encoder(gold, tables)
    return (encode(gold), [encode(t[1]) for t in tables[best["strategy"]]],
            [encode(t[1]) for t in tables[item["strategy"]]])


def _class_encoder(gold: list[str], tables: dict[str, list[tuple[list[str], list[str]]]]) -> Any:
    names = sorted(set(gold).union(*(t[1] for ts in tables.values() for t in ts)))
    index = {name: i for i, name in enumerate(names)}
    return lambda values: np.asarray([index[v] for v in values], dtype=np.int64)


def _read_predictions(run_dir: Path) -> tuple[list[str], list[str]]:
    with (run_dir / "predictions.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r["label"] for r in rows], [r["prediction"] for r in rows]


def _verdict(summary: list[dict[str, Any]], metric: str, higher: bool) -> Optional[dict[str, str]]:
    """The cheapest strategy (by train time) within 0.5 point or within noise of the best, at the largest
    data fraction, and what it saves against the best."""
    if not summary:
        return None
    top = max(s["data_fraction"] for s in summary)
    group = [s for s in summary if s["data_fraction"] == top]
    best = max(group, key=lambda s: s["mean"] if higher else -s["mean"])
    close = [s for s in group if s["within_noise_of_best"] or (0 <= best["mean"] <= 1 and abs(best["mean"] - s["mean"]) <= POINT)]
    pick = min(close, key=lambda s: (s["train_time_s"], s["trainable_params"]))
    if pick is best:
        reason = (f"{best['strategy']} scores best ({metric} {best['mean']:.4f}) and nothing cheaper comes within "
                  "0.5 point or within noise of it")
    else:
        how = "within noise" if pick["within_noise_of_best"] else "within 0.5 point"
        reason = (f"{pick['strategy']} is {how} of the best, {best['strategy']} ({metric} {pick['mean']:.4f} vs "
                  f"{best['mean']:.4f}), and {_savings(pick, best)}")
    return {"strategy": pick["strategy"], "best": best["strategy"], "reason": reason}


def _savings(pick: dict[str, Any], best: dict[str, Any]) -> str:
    time_x = best["train_time_s"] / max(pick["train_time_s"], 1e-9)
    params = pick["trainable_params"] / max(best["trainable_params"], 1)
    size = pick["model_bytes"] / max(best["model_bytes"], 1)
    return (f"trains {time_x:.1f}x faster ({pick['train_time_s']:.1f} s vs {best['train_time_s']:.1f} s), with "
            f"{_share(params)} its trainable parameters and {_share(size)} its bytes on disk "
            f"({pick['model_bytes'] / 2**20:.1f} vs {best['model_bytes'] / 2**20:.1f} MiB)")


def _share(ratio: float) -> str:
    """A fraction as a percentage, a multiple as a multiple ("5635.8%" read as a typo: a head run saves the
    whole model, a LoRA run only its adapter)."""
    return f"{100 * ratio:.2f}% of" if ratio <= 1 else f"{ratio:.1f}x"


def write_compare_outputs(result: CompareResult, config: RunConfig) -> None:
    """compare.json and compare.csv, rewritten after every row."""
    atomic_write_json(result.out / "compare.json", result.as_dict(config))
    atomic_write_text(result.out / "compare.csv", compare_csv(result))


def compare_csv(result: CompareResult) -> str:
    scalars = sorted({k for r in result.rows for k, v in r.get("test", {}).items() if isinstance(v, (int, float))})
    fields = ["name", "strategy", "seed", "data_fraction", "status", result.metric, "best_validation",
              "trainable_params", "total_params", "train_time_s", "wall_time_s", "peak_rss_mb", "model_bytes",
              "epochs_run", "run_dir", "error"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(fields + [f"test_{k}" for k in scalars if k != result.metric])
    for row in result.rows:
        test = row.get("test", {})
        values = [test.get(result.metric) if f == result.metric else row.get(f) for f in fields]
        writer.writerow(values + [test.get(k) for k in scalars if k != result.metric])
    return buffer.getvalue()


def load_result(out: Path) -> dict[str, Any]:
    return json.loads((out / "compare.json").read_text(encoding="utf-8"))


def compare_table(result: CompareResult) -> Any:
    """The terminal table: one line per strategy and fraction, best first, `≈` on those within noise."""
    from rich.table import Table

    table = Table(title=f"test {result.metric}, {result.out.name}")
    for column in ("strategy", "frac", result.metric, "±", "n", "≈", "train s", "trainable", "MiB", "peak MiB"):
        table.add_column(column, justify="left" if column == "strategy" else "right", no_wrap=True)
    for s in result.summary:
        mark = {True: "≈", False: "", None: "?"}[s["within_noise_of_best"]]
        table.add_row(s["strategy"], f"{s['data_fraction']:g}", f"{s['mean']:.4f}", f"{s['std']:.4f}", str(s["n"]),
                      mark, f"{s['train_time_s']:.1f}", f"{s['trainable_params']:,}",
                      f"{s['model_bytes'] / 2**20:.1f}", f"{s['peak_rss_mb']:.0f}")
    for row in result.rows:
        if row["status"] != "done":
            table.add_row(row["name"], f"{row['data_fraction']:g}", "failed", *[""] * 7)
    for item in result.skipped:
        table.add_row(item["strategy"], "", "skipped", *[""] * 7)
    return table
