"""What `tunelab compare` saves: one comparison of head, partial, gradual, lora and full on BBC News against
the same rows as separate `tunelab train` processes and against Hugging Face Trainer (+ peft), in one run.

    python benchmarks/compare_cost.py                       # the demo's settings: all of BBC News, 3 epochs
    python benchmarks/compare_cost.py --limit 100 --max-length 32 --epochs 1 --peer-precision fp32   # a smoke run

Three legs, each timed wall-clock by this script from the start of a subprocess to its exit (imports,
reading and tokenising, model loading, training, evaluation, saving: what a user waits for):

- compare: one `tunelab compare CONFIG --strategies ... --out DIR` process. Its rows share one process, one
  tokenisation, one model load and one activation cache (head, partial and gradual read the same entries).
- separate: for each row, `tunelab train DIR/runs/<row>/config.yaml` (the row's fully resolved config) in
  its own process. A compare row repeats bit for bit as a `tunelab train` of its config, so the test
  metrics of the two legs must be equal; the table flags any row where they are not.
- peer: for each row, Hugging Face Trainer (+ peft for LoRA) in its own process, with the row's settings read
  from its config.yaml: split, lr, epochs, batch size, max length, freeze depth, layer-wise LR decay, head LR
  multiplier, warmup, weight decay, grad clipping, early stopping and best-epoch restore. Trainer has no
  gradual unfreezing: a TrainerCallback unfreezes one more top block every `unfreeze_every` epochs, as
  tunelab's schedule does. Run at the peer's default fp32 and, where the CPU has bf16 units, at bf16=True.

Every process gets a fresh, empty cache root (TUNELAB_CACHE) whose `models/` links to the real model cache,
so only the activation cache is cold. Ratios are against the compare leg measured in this same run.
"""

from __future__ import annotations

import time

WORKER_START = time.perf_counter()  # a peer worker's own clock starts before torch is imported

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Optional  # noqa: E402

from common import load_sibling  # noqa: E402

HERE = Path(__file__).resolve().parent
STRATEGIES = ("head", "partial", "gradual", "lora", "full")
LEGS = ("compare", "separate", "peer")
TARGETS = {"separate": 1.3, "peer": 3.0}  # the issue's: compare at least this many times faster
METRICS = ("accuracy", "macro_f1")


def _vs_hf():
    """benchmarks/vs_hf.py: its peer data encoding and freezing."""
    return load_sibling("vs_hf")


# -- configs and commands ---------------------------------------------------------------------------
def base_config(args: argparse.Namespace) -> dict[str, Any]:
    """The demo's config (MiniLM on BBC News, partial as its own strategy) with this run's budget: compare
    derives every row from it with the strategy's recommended settings."""
    import yaml

    from tunelab.configs import DEMO_CONFIG

    raw = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    raw["head"] = {"type": "native"}  # the peer's rows train AutoModelForSequenceClassification's own head
    raw["data"].update({"limit": args.limit, "max_length": args.max_length})
    raw["train"].update({"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
                         "precision": args.precision, "num_threads": args.threads})
    raw["output"] = "runs/compare-cost"
    return raw


def plan_row_configs(raw: dict[str, Any], strategies: list[str], out: Path) -> dict[str, Any]:
    """Row name -> the RunConfig compare will run for it (compare's own planning, no training), so the
    separate and peer legs have their configs even when the compare leg is not run."""
    from transformers import AutoConfig

    from tunelab.catalog import parse_config
    from tunelab.models.loading import resolve_model_dir
    from tunelab.orchestration.compare import CompareRequest, plan_rows

    base = parse_config(raw)
    blocks = AutoConfig.from_pretrained(resolve_model_dir(base.model.name)).num_hidden_layers
    rows, skipped = plan_rows(raw, base, CompareRequest(out=out, strategies=strategies), blocks)
    for item in skipped:
        print(f"skip {item['strategy']}: {item['reason']}", file=sys.stderr)
    return {row.name: row.config for row in rows}


def tunelab_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tunelab", *args]


def compare_command(config: Path, strategies: list[str], out: Path) -> list[str]:
    return tunelab_command("compare", str(config), "--strategies", ",".join(strategies), "--out", str(out))


def train_command(config: Path, out: Path) -> list[str]:
    return tunelab_command("train", str(config), "--out", str(out))


def peer_command(config: Path, precision: str, threads: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", str(config), "--peer-precision", precision,
            "--threads", str(threads)]


# -- processes --------------------------------------------------------------------------------------
def fresh_cache(root: Path, models: Path) -> Path:
    """An empty cache root whose models/ links to the real model cache: cold activations, no reconversion."""
    root.mkdir(parents=True, exist_ok=False)
    models.mkdir(parents=True, exist_ok=True)
    (root / "models").symlink_to(models, target_is_directory=True)
    return root


def child_env(cache: Path, threads: int) -> dict[str, str]:
    src = str(HERE.parent / "src")
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "TUNELAB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": str(threads), "PYTHONPATH": f"{src}{os.pathsep}{path}" if path else src}


def timed(command: list[str], env: dict[str, str], label: str) -> dict[str, Any]:
    """Run `command`, wall-clock from start to exit; its output kept only to report a failure."""
    print(f"[{label}] {' '.join(command[1:])}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    out = {"process_wall_s": round(wall, 2), "returncode": proc.returncode, "stdout": proc.stdout}
    if proc.returncode != 0:
        out["error"] = f"{label} failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}"
        print(out["error"], file=sys.stderr)
    return out


def read_run(run_dir: Path) -> dict[str, Any]:
    """A run directory's test metrics and in-process times."""
    test = json.loads((run_dir / "test_metrics.json").read_text(encoding="utf-8"))
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    return {"test": {m: test.get(m) for m in (*METRICS, "loss")}, "train_time_s": manifest.get("train_time_s"),
            "wall_time_s": manifest.get("wall_time_s"), "epochs_run": manifest.get("epochs_run")}


# -- the three legs ---------------------------------------------------------------------------------
def run_compare_leg(base_yaml: Path, strategies: list[str], work: Path, models: Path,
                    threads: int) -> dict[str, Any]:
    """One `tunelab compare` process with a cold activation cache; its rows read from its run directories."""
    out = work / "compare"
    proc = timed(compare_command(base_yaml, strategies, out), child_env(fresh_cache(work / "cache-compare", models),
                                                                        threads), "compare")
    leg: dict[str, Any] = {"wall_s": proc["process_wall_s"], "error": proc.get("error"), "rows": {}}
    summary = out / "compare.json"
    if summary.is_file():
        leg["compare_json_wall_s"] = json.loads(summary.read_text(encoding="utf-8")).get("wall_time_s")
    for run_dir in sorted((out / "runs").glob("*")) if (out / "runs").is_dir() else []:
        if (run_dir / "test_metrics.json").is_file():
            leg["rows"][run_dir.name] = read_run(run_dir)
    return leg


def row_config_files(planned: dict[str, Any], work: Path) -> dict[str, Path]:
    """Each row's config.yaml as the compare leg wrote it, else compare's plan of it written here."""
    from tunelab.config.loading import config_to_yaml

    files = {}
    for name, config in planned.items():
        ran = work / "compare" / "runs" / name / "config.yaml"
        if not ran.is_file():
            ran = work / "planned" / f"{name}.yaml"
            ran.parent.mkdir(parents=True, exist_ok=True)
            ran.write_text(config_to_yaml(config), encoding="utf-8")
        files[name] = ran
    return files


def run_separate_leg(configs: dict[str, Path], work: Path, models: Path, threads: int) -> dict[str, Any]:
    """Each row as its own `tunelab train` process, each with its own empty activation cache."""
    leg: dict[str, Any] = {"wall_s": 0.0, "rows": {}}
    for name, config in configs.items():
        out = work / "separate" / name
        proc = timed(train_command(config, out), child_env(fresh_cache(work / f"cache-separate-{name}", models),
                                                           threads), f"separate {name}")
        leg["wall_s"] += proc["process_wall_s"]
        row = read_run(out) if proc["returncode"] == 0 else {"error": proc.get("error")}
        leg["rows"][name] = {**row, "process_wall_s": proc["process_wall_s"]}
    leg["wall_s"] = round(leg["wall_s"], 2)
    return leg


def run_peer_leg(configs: dict[str, Path], precision: str, work: Path, models: Path,
                 threads: int) -> dict[str, Any]:
    """Each row with Hugging Face Trainer (+ peft) in its own process at `precision`."""
    leg: dict[str, Any] = {"wall_s": 0.0, "precision": precision, "rows": {}}
    for name, config in configs.items():
        env = child_env(fresh_cache(work / f"cache-peer-{precision}-{name}", models), threads)
        proc = timed(peer_command(config, precision, threads), env, f"peer {precision} {name}")
        leg["wall_s"] += proc["process_wall_s"]
        lines = [line for line in proc["stdout"].splitlines() if line.startswith("RESULT ")]
        row = json.loads(lines[-1][len("RESULT "):]) if lines else {"error": proc.get("error") or "no result"}
        leg["rows"][name] = {**row, "process_wall_s": proc["process_wall_s"]}
    leg["wall_s"] = round(leg["wall_s"], 2)
    return leg


def peer_precisions(choice: str) -> tuple[list[str], Optional[str]]:
    """The peer precisions to run and why bf16 is left out, if it is (no bf16 units: bf16 would be slower)."""
    if choice != "both":
        return [choice], None
    from tunelab.inference.precision import cpu_has_native_bf16

    if cpu_has_native_bf16():
        return ["fp32", "bf16"], None
    return ["fp32"], "peer bf16 not run: this CPU has no bf16 units (AVX512-BF16/AMX), so bf16 would be emulated"


# -- the peer worker: one row with Hugging Face Trainer (+ peft) --------------------------------------
def scores(logits, labels, num_labels: int) -> dict[str, float]:
    """Accuracy and macro-F1 over every class (an unpredicted class scores 0), as tunelab reports them."""
    import numpy as np

    predicted = np.argmax(logits, -1)
    f1 = []
    for k in range(num_labels):
        tp = float(np.sum((predicted == k) & (labels == k)))
        denominator = float(np.sum(predicted == k) + np.sum(labels == k))
        f1.append(2 * tp / denominator if denominator else 0.0)
    return {"accuracy": float(np.mean(predicted == labels)), "macro_f1": float(np.mean(f1))}


def peer_model(config, num_labels: int, model_dir: Path):
    """The backbone with the row's strategy: head, partial and gradual (its first epoch) freeze as tunelab's
    depth strategies do; lora is peft's with the row's rank, alpha, dropout and target modules."""
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(config.train.seed)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels)
    strategy = config.strategy
    if strategy.name == "lora":
        lora = strategy.lora
        return _vs_hf().peer_strategy(model, "lora", lora={
            "r": lora.rank, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
            "target_modules": list(lora.target_modules), "use_rslora": lora.rslora, "use_dora": lora.dora})
    if strategy.name in ("head", "gradual"):
        return _vs_hf().peer_strategy(model, "head")
    if strategy.name == "partial":
        return _vs_hf().peer_strategy(model, "partial", freeze_blocks=strategy.freeze_blocks or 0)
    if strategy.name != "full":
        raise SystemExit(f"peer: no Trainer equivalent of strategy {strategy.name!r} in this benchmark")
    return model


def lr_multiplier(name: str, blocks: int, strategy) -> float:
    """tunelab's depth LR rule on Hugging Face BERT names: head x head_lr_multiplier, block i x
    decay^(N-i), embeddings x decay^(N+1)."""
    prefix = "bert.encoder.layer."
    if name.startswith(prefix):
        return strategy.layerwise_lr_decay ** (blocks - int(name[len(prefix):].split(".", 1)[0]))
    if name.startswith("bert.embeddings."):
        return strategy.layerwise_lr_decay ** (blocks + 1)
    return strategy.head_lr_multiplier


def peer_optimizer(model, config):
    """AdamW over every parameter that trains now or later (gradual), grouped by depth LR, no decay on
    biases and norms: the standard way to give Trainer discriminative LRs (it schedules the groups)."""
    import torch

    blocks = model.config.num_hidden_layers
    groups: dict[tuple[float, bool], list] = {}
    for name, param in model.named_parameters():
        lr = config.optim.lr * lr_multiplier(name, blocks, config.strategy)
        groups.setdefault((lr, param.ndim <= 1), []).append(param)
    return torch.optim.AdamW([{"params": p, "lr": lr, "weight_decay": 0.0 if no_decay else config.optim.weight_decay}
                              for (lr, no_decay), p in groups.items()], lr=config.optim.lr,
                             betas=tuple(config.optim.betas), eps=config.optim.eps)


def gradual_callback(every: int):
    """Trainer has no gradual unfreezing: unfreeze one more block from the top at the start of every
    `every`-th epoch, then the embeddings, as tunelab's gradual schedule does."""
    from transformers import TrainerCallback

    class GradualUnfreeze(TrainerCallback):
        def on_epoch_begin(self, args, state, control, model=None, **kwargs):
            blocks = model.config.num_hidden_layers
            steps = min(int(round(state.epoch or 0)) // every, blocks + 1)
            open_from = blocks - min(steps, blocks)
            for name, param in model.named_parameters():
                if name.startswith("bert.encoder.layer."):
                    param.requires_grad = param.requires_grad or int(name.split(".")[3]) >= open_from
                elif name.startswith("bert.embeddings."):
                    param.requires_grad = param.requires_grad or steps > blocks

    return GradualUnfreeze()


SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


def peer_arguments(config, precision: str, out: str):
    """TrainingArguments with the row's budget and protocol: evaluation every epoch, and where the row
    restores its best epoch, checkpoints every epoch and load_best_model_at_end on the same metric."""
    from transformers import TrainingArguments

    train, stop, schedule = config.train, config.early_stopping, config.schedule
    if schedule.name not in SCHEDULES:
        raise SystemExit(f"peer: no Trainer schedule for {schedule.name!r}")
    best = stop.restore_best or stop.patience is not None
    return TrainingArguments(
        output_dir=out, num_train_epochs=train.epochs, per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.eval_batch_size or 2 * train.batch_size,
        gradient_accumulation_steps=train.grad_accum_steps, learning_rate=config.optim.lr,
        weight_decay=config.optim.weight_decay, lr_scheduler_type=SCHEDULES[schedule.name],
        warmup_steps=schedule.warmup_ratio if schedule.warmup_ratio is not None else (schedule.warmup_steps or 0),
        max_grad_norm=train.max_grad_norm or 0.0, seed=train.seed, eval_strategy="epoch",
        save_strategy="epoch" if stop.restore_best else "no", save_total_limit=train.keep_checkpoints,
        load_best_model_at_end=stop.restore_best, metric_for_best_model=(stop.metric or "macro_f1") if best else None,
        greater_is_better=stop.mode != "min", logging_strategy="no", report_to="none", use_cpu=True,
        dataloader_num_workers=0, disable_tqdm=True, bf16=precision == "bf16")


@dataclass
class PeerData:
    """What a peer worker trains on: the config's split encoded with the backbone's tokenizer."""

    config: Any
    model_dir: Path
    tokenizer: Any
    index: dict[str, int]
    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    test: list[dict[str, Any]]


def peer_data(config_path: Path, threads: int) -> PeerData:
    """A tunelab config's data as the peer sees it: the same split (tunelab's reader and split seed), token
    ids truncated to the same max length; shared with tune_cost.py, so both benchmarks feed the peer alike."""
    import torch
    import yaml
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from tunelab.catalog import parse_config
    from tunelab.data.sources import load_data
    from tunelab.models.loading import resolve_model_dir
    from tunelab.tasks.registry import get_task

    hf_logging.set_verbosity_error()
    torch.set_num_threads(threads)
    config = parse_config(yaml.safe_load(config_path.read_text(encoding="utf-8")))
    data = load_data(config.data, get_task(config.task), config.split_seed)
    model_dir = resolve_model_dir(config.model.name)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    index = {name: i for i, name in enumerate(data.label_names)}
    train, validation, test = (_vs_hf().encode_records(tokenizer, split, index, config.data.max_length)
                               for split in (data.splits.train, data.splits.validation, data.splits.test))
    return PeerData(config, model_dir, tokenizer, index, train, validation, test)


def run_peer_row(config_path: Path, precision: str, threads: int) -> dict[str, Any]:
    """One compare row with the peer: the row's split (tunelab's reader and split seed), its settings."""
    import numpy as np
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer

    data = peer_data(config_path, threads)
    config, index, tokenizer = data.config, data.index, data.tokenizer
    train, validation, test = data.train, data.validation, data.test
    model = peer_model(config, len(index), data.model_dir)
    callbacks = [gradual_callback(config.strategy.unfreeze_every)] if config.strategy.name == "gradual" else []
    if config.early_stopping.patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping.patience))
    out = tempfile.mkdtemp(prefix="compare-cost-peer-")
    trainer = Trainer(model=model, args=peer_arguments(config, precision, out), train_dataset=train,
                      eval_dataset=validation, data_collator=DataCollatorWithPadding(tokenizer), callbacks=callbacks,
                      compute_metrics=lambda p: scores(p.predictions, p.label_ids, len(index)),
                      optimizers=(None if config.strategy.name == "lora" else peer_optimizer(model, config), None))
    trained = trainer.train()
    predicted = trainer.predict(test)
    trainer.save_model(out)
    wall = time.perf_counter() - WORKER_START
    shutil.rmtree(out, ignore_errors=True)  # saved to be timed; ten model copies would fill /tmp
    return {"test": scores(predicted.predictions, np.asarray(predicted.label_ids), len(index)),
            "train_time_s": round(trained.metrics["train_runtime"], 2), "wall_time_s": round(wall, 2),
            "epochs_run": round(trainer.state.epoch or 0), "precision": precision}


# -- the report -------------------------------------------------------------------------------------
def metric_differences(compare: dict[str, Any], separate: dict[str, Any]) -> dict[str, list[str]]:
    """Row -> the test metrics where the separate run is not bit for bit the compare row."""
    out = {}
    for name, row in separate.get("rows", {}).items():
        ours = compare.get("rows", {}).get(name)
        if ours is None or "test" not in row:
            continue
        out[name] = [f"{m} {ours['test'].get(m)} vs {row['test'].get(m)}" for m in (*METRICS, "loss")
                     if ours["test"].get(m) != row["test"].get(m)]
    return out


def ratios(legs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Each other leg's total wall time over the compare leg's (how many times faster compare is)."""
    base = legs.get("compare", {}).get("wall_s")
    if not base or legs["compare"].get("error"):
        return {}
    return {name: round(leg["wall_s"] / base, 2) for name, leg in legs.items() if name != "compare"}


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "-".rjust(int(spec.split(".")[0] or 0))


def print_report(legs: dict[str, dict[str, Any]], rows: list[str], notes: list[str]) -> None:
    """Per leg: total wall time and its ratio to compare; per row and leg: times and test metrics."""
    found = ratios(legs)
    print(f"{'leg':<10} {'wall s':>8} {'x compare':>9}  target")
    for name, leg in legs.items():
        target = TARGETS.get(name.split(" ")[0])
        ratio = f"{found[name]:8.2f}x" if name in found else "        -"
        print(f"{name:<10} {leg['wall_s']:8.1f} {ratio}  "
              f"{f'>= {target}x' if target else ''}{'  ' + leg['error'][:80] if leg.get('error') else ''}")
    differ = metric_differences(legs.get("compare", {}), legs.get("separate", {}))
    print(f"\n{'row':<8} {'leg':<10} {'train s':>8} {'wall s':>8} {'proc s':>8} {'accuracy':>8} {'macro_f1':>8}  note")
    for row in rows:
        for name, leg in legs.items():
            r = leg.get("rows", {}).get(row, {})
            note = r.get("error", "")[:60] if "error" in r else ""
            if name == "separate" and row in differ:
                note = "DIFFERS from compare: " + "; ".join(differ[row]) if differ[row] else "equal to compare"
            test = r.get("test", {})
            print(f"{row:<8} {name:<10} {_fmt(r.get('train_time_s'), '8.1f')} {_fmt(r.get('wall_time_s'), '8.1f')} "
                  f"{_fmt(r.get('process_wall_s'), '8.1f')} {_fmt(test.get('accuracy'), '8.4f')} "
                  f"{_fmt(test.get('macro_f1'), '8.4f')}  {note}")
    for note in notes:
        print(note)


# -- the driver -------------------------------------------------------------------------------------
def add_leg_options(parser: argparse.ArgumentParser) -> None:
    """The options every leg-timing script here shares (tune_cost.py too): the peer's precision, threads, the
    work folder and the JSON file."""
    parser.add_argument("--peer-precision", choices=["fp32", "bf16", "both"], default="both",
                        help="the peer's: fp32 (Trainer's default), bf16 (bf16=True) or both (bf16 where the CPU has "
                             "bf16 units)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--work", default=None, help="folder for every leg's runs and caches (default: a fresh "
                                                     "temporary one; must not exist)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated rows to compare")
    parser.add_argument("--legs", default=",".join(LEGS), help="comma-separated subset of " + ",".join(LEGS))
    parser.add_argument("--limit", type=int, default=None, help="use at most N BBC News articles (stratified)")
    parser.add_argument("--max-length", type=int, default=128, help="data.max_length (the demo's 128)")
    parser.add_argument("--batch-size", type=int, default=16, help="train.batch_size (the demo's 16)")
    parser.add_argument("--epochs", type=int, default=3,
                        help="the epoch budget of compare's config (the demo's 3; head runs 2x, gradual +1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto", help="tunelab's train.precision")
    add_leg_options(parser)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # a peer row: its config.yaml
    args = parser.parse_args(argv)
    args.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    args.legs = [leg.strip() for leg in args.legs.split(",") if leg.strip()]
    unknown = sorted(set(args.legs) - set(LEGS))
    if unknown:
        parser.error(f"--legs: unknown {unknown}; choose from {', '.join(LEGS)}")
    return args


def run_legs(args: argparse.Namespace, work: Path) -> tuple[dict[str, dict[str, Any]], list[str], list[str]]:
    """The chosen legs in order (compare first: the others run the configs its rows wrote)."""
    import yaml

    from tunelab.paths import model_cache_dir

    models, raw = model_cache_dir(), base_config(args)
    base_yaml = work / "base.yaml"
    base_yaml.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    planned = plan_row_configs(raw, args.strategies, work / "compare")
    legs: dict[str, dict[str, Any]] = {}
    if "compare" in args.legs:
        legs["compare"] = run_compare_leg(base_yaml, args.strategies, work, models, args.threads)
    configs = row_config_files(planned, work)
    if "separate" in args.legs:
        legs["separate"] = run_separate_leg(configs, work, models, args.threads)
    notes: list[str] = []
    if "peer" in args.legs:
        precisions, why = peer_precisions(args.peer_precision)
        notes += [why] if why else []
        for precision in precisions:
            legs[f"peer {precision}"] = run_peer_leg(configs, precision, work, models, args.threads)
    return legs, list(planned), notes


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.worker:
        result = run_peer_row(Path(args.worker), args.peer_precision, args.threads)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="compare-cost-"))
    work.mkdir(parents=True, exist_ok=bool(not args.work))
    legs, rows, notes = run_legs(args, work)
    print_report(legs, rows, notes)
    differ = metric_differences(legs.get("compare", {}), legs.get("separate", {}))
    result = {"benchmark": "compare_cost", "threads": args.threads, "limit": args.limit, "max_length": args.max_length,
              "batch_size": args.batch_size, "epochs": args.epochs, "precision": args.precision,
              "peer_precision": args.peer_precision, "strategies": args.strategies, "work": str(work),
              "ratios": ratios(legs), "targets": TARGETS, "metric_differences": differ, "notes": notes,
              "legs": legs}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"runs and caches: {work}")
    return 1 if any(differ.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
