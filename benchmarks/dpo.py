"""Preference tuning (DPO) of SmolLM2-135M-Instruct with LoRA on pairs made from a real set: BBC News articles with
"Which section ...? Answer with one word.", chosen = the true section, rejected = a wrong one (built-in
bbc-section-pairs, configs/smollm2-preference.yaml).

One `tunelab train` process in a fresh cache root (the dequantised model linked in), so the reference pass is
computed and timed. Reported on the held-out test pairs: before (the reference, i.e. the base model: the share of
pairs whose log-prob is higher for the chosen section, and the mean log-prob margin; its implicit rewards are 0 by
definition) and after (the same figures for the tuned model, and DPO's own: preference accuracy on implicit
rewards, mean reward margin, chosen / rejected rewards); the validation figures per epoch; the cost: the reference
pass per split and the training time.

    python benchmarks/dpo.py --json benchmarks/results/dpo-2026-12-07-cpu.json
    python benchmarks/dpo.py --limit 60 --epochs 1           # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import run_tunelab

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "smollm2-preference.yaml"
BEFORE_AFTER = (("log-prob accuracy", "base_logprob_accuracy", "logprob_accuracy"),
                ("log-prob margin", "base_logprob_margin", "logprob_margin"))
DPO = ("preference_accuracy", "reward_margin", "reward_chosen", "reward_rejected", "loss")


def leg_config(args: argparse.Namespace) -> dict:
    """configs/smollm2-preference.yaml with this call's data size, length, epochs, learning rate and beta."""
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    config["data"].update(limit=args.limit, max_length=args.max_length, split_seed=0)
    config["strategy"]["lora"]["lr"] = args.lr
    config["preference"] = {"beta": args.beta}
    config["train"].update(epochs=args.epochs, batch_size=args.batch_size)
    return config


def fresh_cache(work: Path) -> Path:
    """A cache root of its own (the reference is computed, not read back), the converted models linked in."""
    root = work / "cache"
    root.mkdir(parents=True, exist_ok=True)
    models = Path(os.environ.get("TUNELAB_CACHE", Path.home() / ".cache" / "tunelab")) / "models"
    if models.is_dir() and not (root / "models").exists():
        (root / "models").symlink_to(models, target_is_directory=True)
    return root


def run(args: argparse.Namespace, work: Path) -> dict:
    config, out = leg_config(args), work / "run"
    path = work / "dpo.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    os.environ["TUNELAB_CACHE"] = str(fresh_cache(work))
    started, cpu = time.perf_counter(), _children_cpu()
    run_tunelab("train", str(path), "--out", str(out), "--overwrite")
    wall, cpu = time.perf_counter() - started, _children_cpu() - cpu
    test = json.loads((out / "test_metrics.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    reference = manifest["preference"]["reference"]
    return {"config": config, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "train_time_s": manifest["train_time_s"],
            "reference_s": {name: r["seconds"] for name, r in reference.items()},
            "pairs": {name: r["pairs"] for name, r in reference.items()},
            "test": {k: v for k, v in test.items() if k != "forgetting"},
            "validation_history": manifest["history"], "precision": manifest["precision"],
            "peak_rss_mb": manifest["peak_rss_mb"]}


def _children_cpu() -> float:
    """CPU seconds (user + system, every core) of the finished child processes: the run's cost on a shared machine,
    where wall time depends on what else runs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def table(result: dict) -> str:
    test = result["test"]
    lines = [f"test pairs: {result['pairs'].get('test', 0)}  (train {result['pairs']['train']}, validation "
             f"{result['pairs'].get('validation', 0)})", f"{'':<22}{'before':>10}{'after':>10}"]
    lines += [f"{label:<22}{test[before]:>10.4f}{test[after]:>10.4f}" for label, before, after in BEFORE_AFTER]
    lines += [f"{'preference accuracy':<22}{'- (ties)':>10}{test['preference_accuracy']:>10.4f}",  # rewards all 0
              f"{'reward margin':<22}{0.0:>10.4f}{test['reward_margin']:>10.4f}",
              f"{'reward chosen / rej.':<22}{'0 / 0':>10}  {test['reward_chosen']:.3f} / {test['reward_rejected']:.3f}",
              f"reference pass: {sum(result['reference_s'].values()):.1f} s "
              f"({', '.join(f'{k} {v:.1f} s' for k, v in result['reference_s'].items())}); "
              f"train {result['train_time_s']:.1f} s; wall {result['wall_s']:.1f} s, CPU {result.get('cpu_s', 0):.0f} s"]
    for epoch in result["validation_history"]:
        lines.append(f"epoch {epoch['epoch'] + 1}: validation loss {epoch['loss']:.4f}, preference accuracy "
                     f"{epoch['preference_accuracy']:.4f}, reward margin {epoch['reward_margin']:.4f}, log-prob "
                     f"accuracy {epoch['logprob_accuracy']:.4f} (base {epoch['base_logprob_accuracy']:.4f})")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=400, help="pairs drawn from bbc-section-pairs (seeded)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3, help="LoRA's learning rate")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--work", type=Path, default=None, help="keep the run here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="dpo-"))
    work.mkdir(parents=True, exist_ok=True)
    result = run(args, work)
    print(table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"benchmark": "dpo", "model": "smollm2 (SmolLM2-135M-Instruct)",
                                         "data": "bbc-section-pairs", **result}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
