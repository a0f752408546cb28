"""The files of a run directory that the run itself writes (config, labels, test metrics, predictions,
manifest, the report's inputs and the report), and the summary a run returns. Each is written atomically into
the staging folder."""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from tunelab.atomic import atomic_write_json, atomic_write_text
from tunelab.artifacts.manifest import build_manifest
from tunelab.config.loading import config_to_yaml
from tunelab.config.schema import RunConfig
from tunelab.inference.tables import prediction_rows, predictions_csv
from tunelab.orchestration.report_inputs import write_misclassified, write_profile
from tunelab.tasks.base import Predictions
from tunelab.training.cache import ActivationCache
from tunelab.training.trainer import FitResult

__all__ = ["RunSummary", "peak_rss_mb", "reset_peak_rss", "write_run_start", "write_test_outputs", "write_manifest",
           "write_report_files", "write_report_html"]


@dataclass
class RunSummary:
    run_dir: Path
    test_metrics: dict[str, Any]
    trainable_params: int
    total_params: int
    wall_time_s: float
    train_time_s: float
    peak_rss_mb: float
    epochs_run: int
    stopped_early: str


def peak_rss_mb() -> float:
    """The process's peak resident memory since it started or since `reset_peak_rss` (Linux's VmHWM, which
    the kernel lets a process reset; ru_maxrss elsewhere, which it does not)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def reset_peak_rss() -> None:
    """Start the peak-memory count again (each row of a comparison reports its own peak, not the largest
    row's so far). Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0); the earlier row's
    garbage is collected and the allocator's free pages handed back first, so the count starts from what the
    process really holds (the prepared data and base models)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def write_run_start(staging: Path, config: RunConfig, label_names: list[str]) -> None:
    """What a run directory holds from its first moment: the resolved config and the label map."""
    atomic_write_text(staging / "config.yaml", config_to_yaml(config))
    atomic_write_json(staging / "labels.json", {"task": config.task, "labels": label_names})


def write_test_outputs(staging: Path, prepared: Any, metrics: dict[str, Any], predictions: Predictions) -> None:
    """`test_metrics.json` and `predictions.csv` (one row per encoded test example, with its gold label: a task that
    cuts a document into chunks, causal_lm, lists the chunks)."""
    atomic_write_json(staging / "test_metrics.json", metrics)
    rows = prediction_rows(prepared.encoded["test"].records, predictions, prepared.label_names, prepared.task,
                           with_labels=True)
    atomic_write_text(staging / "predictions.csv", predictions_csv(rows, prepared.task))
    _unless_it_fails(lambda: write_misclassified(staging, prepared, predictions), "misclassified.npz", None)


def write_manifest(staging: Path, prepared: Any, config: RunConfig, summary: RunSummary, fit: FitResult,
                   resumed_from: Optional[str], cache: Optional[ActivationCache],
                   guard: Optional[dict[str, Any]] = None, distill: Optional[dict[str, Any]] = None,
                   preference: Optional[dict[str, Any]] = None, more: Optional[dict[str, Any]] = None) -> None:
    """Versions, data and base-model hashes, seed, git state, and what this run did (`more`: a multi-task run's
    tasks and mixing)."""
    manifest = build_manifest(
        seed=config.train.seed, data_hashes=prepared.data_hashes,
        base_model=str(prepared.model_dir), base_model_hash=prepared.base_model_hash,
        extra={"strategy": config.strategy.name, "trainable_params": summary.trainable_params,
               "total_params": summary.total_params, "epochs_run": fit.epochs_run, "best_epoch": fit.best_epoch,
               "best_metric": fit.best_metric, "train_time_s": round(fit.wall_time_s, 2),
               "peak_rss_mb": round(summary.peak_rss_mb, 1),
               "wall_time_s": round(summary.wall_time_s, 2), "history": fit.history,
               "device": prepared.device.type, "precision": config.train.precision, "resumed_from": resumed_from,
               "processes": prepared.dist.world_size,  # torchrun's world (1: a single process)
               "distributed": ("fsdp" if prepared.dist.sharded else "ddp") if prepared.dist.active else None,
               "training_state_mb": fit.state_mb,  # rank 0's parameters + gradients + optimizer moments
               "activation_cache": None if cache is None else cache.stats.as_dict(), "guard": guard,
               "distill": distill, **({"preference": preference} if preference is not None else {}),
               "unknown_token_rate": {name: None if rate is None else round(rate, 4)
                                      for name, rate in prepared.unknown_token_rates.items()}, **(more or {})},
    )
    atomic_write_json(staging / "manifest.json", manifest)


def write_report_files(staging: Path, prepared: Any, parameters: dict[str, Any], base_texts: list[str],
                       console: Any, html: bool = True) -> None:
    """`profile.json` (report_inputs.py), then `report.html` from the staged files unless `html` is False (a
    search's trial: its plots cost more than a head trial's training). A failure here prints one warning line
    and never fails the finished run: `tunelab report RUN_DIR` writes the report again."""
    _unless_it_fails(lambda: write_profile(staging, prepared, parameters, base_texts), "profile.json", console)
    if html:
        write_report_html(staging, console)


def write_report_html(run_dir: Path, console: Any) -> None:
    """`report.html` from the run's files; a failure is one warning line (the run is complete without it)."""
    def report() -> None:
        from tunelab.report import write_run_report  # matplotlib: only when a report is drawn

        write_run_report(run_dir)
    _unless_it_fails(report, "report.html", console)


def _unless_it_fails(write: Callable[[], None], what: str, console: Any) -> None:
    try:
        write()
    except Exception as err:  # noqa: BLE001 - the run is done; its report is a nicety that can be rebuilt
        line = f"warning: {what} not written ({type(err).__name__}: {err}); the run itself is complete"
        if console is None:
            import sys

            print(line, file=sys.stderr)
        else:
            from rich.markup import escape

            console.print(f"[yellow]{escape(line)}[/]")
