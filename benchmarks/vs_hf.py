"""tunelab against Hugging Face Trainer (+ peft for LoRA), same model, data, epochs, batch size, max length,
learning rate, schedule and seed, in one run.

    python benchmarks/vs_hf.py                                  # the full benchmark (long on a small CPU)
    python benchmarks/vs_hf.py --limit 400 --max-length 128 --epochs-scale 0.4 --strategies head,partial

Every (tool, strategy) run is its own subprocess, so its peak RSS is its own. Wall time is what a
user waits for: from the start of the worker process, before torch or either library is imported,
to just after the fine-tuned model is saved: imports, reading and tokenising, loading the model,
training with an evaluation on the validation split after every epoch, predicting the test split,
saving. (Each tool imports part of its stack lazily while it runs, so timing after "the imports"
would not be the same cut for both.) tunelab runs with a fresh activation cache (cold: building it is
part of its wall time); with --warm a second tunelab run reuses it, as an HPO trial or a strategy
comparison would.

Precision: each tool runs its own default unless told. The peer's standard practice is fp32 (Trainer's
default; `--peer-precision bf16` sets `bf16=True`); tunelab's default `train.precision: auto` is bf16
autocast on a CPU with bf16 units (AVX512-BF16/AMX) and fp32 elsewhere (`--precision fp32` forces it).
The table says what each ran. `--peer-precision both` runs the peer twice per strategy: at its default
(fp32) and at its best settings (bf16=True, with `--peer-group-by-length` also Trainer's length-grouped
sampler), and prints a ratio against each.

CUDA (`--device cuda`): both tools on the GPU (the peer with SDPA attention), each worker's peak GPU memory
(torch.cuda.max_memory_allocated) and training tokens/s beside the CPU figures, the GEMM peaks measured on the
GPU (8192^3, TF32 off for fp32).

GFLOP/s: the matmul FLOPs each tool actually has to do (forward 2 x weights + attention per token,
backward twice that where gradients flow, counted over real tokens, not padding), divided by its
wall time, next to the fp32 and bf16 GEMM peaks this script measures on the machine.
"""

from __future__ import annotations

import time

WORKER_START = time.perf_counter()  # before anything heavy is imported: the workers' clock starts here

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
STRATEGIES = ("head", "partial", "lora", "full")
EPOCHS = {"head": 5, "partial": 3, "lora": 3, "full": 3}
LR = {"head": 2e-3, "partial": 1e-4, "lora": 5e-4, "full": 5e-5}
FREEZE_BLOCKS = 4  # partial: embeddings + 4 of MiniLM's 6 blocks frozen
LORA_RANK, LORA_ALPHA, LORA_DROPOUT, LORA_TARGETS = 8, 16, 0.1, ["query", "value"]


@dataclass
class Setting:
    strategy: str
    epochs: int
    limit: Optional[int]
    max_length: int
    batch_size: int
    lr: float
    seed: int
    threads: int
    cache_dir: str
    precision: str = "auto"       # tunelab's train.precision
    peer_precision: str = "fp32"  # the peer's: Trainer's default fp32, or bf16=True
    peer_checkpoints: bool = False
    device: str = "cpu"           # cpu or cuda, both tools
    peer_group_by_length: bool = False  # the peer's length-grouped sampler (its bf16 leg only)


# -- shared by both workers ----------------------------------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_gpu_mb(device: str) -> Optional[float]:
    """The worker's peak CUDA allocation (its own process: nothing else shares the count)."""
    if device != "cuda":
        return None
    import torch

    return torch.cuda.max_memory_allocated() / 2 ** 20


def load_splits(s: Setting):
    """The same stratified train/validation/test split for both tools (tunelab's reader, seeded)."""
    from tunelab.config.schema import DataConfig
    from tunelab.data.sources import load_data
    from tunelab.tasks.registry import get_task

    data = load_data(DataConfig(builtin="bbc-news", limit=s.limit, max_length=s.max_length), get_task("classification"),
                     s.seed)
    return data.splits, data.label_names


def minilm_dir() -> Path:
    from tunelab.models.loading import resolve_model_dir

    return resolve_model_dir("minilm")


# -- the peer: Hugging Face Trainer, standard practice ---------------------------------------------
def run_peer(s: Setting) -> dict[str, Any]:
    import numpy as np
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.set_num_threads(s.threads)
    splits, labels = load_splits(s)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    index = {name: i for i, name in enumerate(labels)}
    train, validation, test = (encode_records(tokenizer, split, index, s.max_length)
                               for split in (splits.train, splits.validation, splits.test))
    torch.manual_seed(s.seed)
    extra = {"attn_implementation": "sdpa"} if s.device == "cuda" else {}
    model = AutoModelForSequenceClassification.from_pretrained(minilm_dir(), num_labels=len(labels), **extra)
    model = peer_strategy(model, s.strategy)
    out, sampler = tempfile.mkdtemp(prefix="hf-bench-"), _peer_sampler(s)
    args = TrainingArguments(
        output_dir=out, num_train_epochs=s.epochs, per_device_train_batch_size=s.batch_size,
        per_device_eval_batch_size=2 * s.batch_size, learning_rate=s.lr, weight_decay=0.01, warmup_steps=0.1,
        lr_scheduler_type="linear", max_grad_norm=1.0, seed=s.seed, eval_strategy="epoch",
        # tunelab always checkpoints at epoch end (resumable runs); the peer only with --peer-checkpoints
        save_strategy="epoch" if s.peer_checkpoints else "no", save_total_limit=2,
        logging_strategy="no", report_to="none", use_cpu=s.device == "cpu", dataloader_num_workers=0,
        disable_tqdm=True, bf16=s.peer_precision == "bf16", **sampler)
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=validation,
                      data_collator=DataCollatorWithPadding(tokenizer))
    train_s = trainer.train().metrics["train_runtime"]  # the training loop alone, evaluations included
    predicted = trainer.predict(test)
    accuracy = float((np.argmax(predicted.predictions, -1) == predicted.label_ids).mean())
    trainer.save_model(out)
    wall = time.perf_counter() - WORKER_START
    tokens = {**_token_counts(splits, tokenizer, s.max_length), "train_examples": len(train)}
    return {"wall_s": wall, "accuracy": accuracy, "peak_rss_mb": peak_rss_mb(), "train_examples": len(train),
            "tokens": tokens, "precision": s.peer_precision, "peak_gpu_mb": peak_gpu_mb(s.device), "train_s": train_s,
            "group_by_length": bool(sampler)}


def _peer_sampler(s: Setting) -> dict[str, Any]:
    """Trainer's length-grouped sampler where asked for, under the name this transformers version uses."""
    if not (s.peer_group_by_length and s.peer_precision == "bf16"):
        return {}
    from transformers import TrainingArguments

    fields = TrainingArguments.__dataclass_fields__
    if "train_sampling_strategy" in fields:
        return {"train_sampling_strategy": "group_by_length"}
    return {"group_by_length": True}


def encode_records(tokenizer, records, index: dict[str, int], max_length: int) -> list[dict[str, Any]]:
    """The peer's dataset: token ids truncated to max_length, label ids in `index` order (shared with
    compare_cost.py, so both benchmarks feed the peer alike)."""
    enc = tokenizer([r.text for r in records], truncation=True, max_length=max_length)
    return [{"input_ids": ids, "attention_mask": m, "labels": index[r.label]}
            for ids, m, r in zip(enc["input_ids"], enc["attention_mask"], records)]


def peer_strategy(model, strategy: str, freeze_blocks: int = FREEZE_BLOCKS, lora: Optional[dict[str, Any]] = None):
    """Freeze the peer's BERT as the strategy says (head: all but pooler + classifier; partial: embeddings
    and blocks [0, freeze_blocks)), or wrap it with peft LoRA (`lora`: r, lora_alpha, lora_dropout,
    target_modules; default this benchmark's)."""
    if strategy == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        lora = lora or {"r": LORA_RANK, "lora_alpha": LORA_ALPHA, "lora_dropout": LORA_DROPOUT,
                        "target_modules": LORA_TARGETS}
        return get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, **lora))
    for name, param in model.named_parameters():
        if strategy == "head":
            param.requires_grad = not name.startswith("bert.") or name.startswith("bert.pooler.")
        elif strategy == "partial":
            frozen = name.startswith("bert.embeddings.") or any(
                name.startswith(f"bert.encoder.layer.{i}.") for i in range(freeze_blocks))
            param.requires_grad = not frozen
    return model


def _token_counts(splits, tokenizer, max_length: int) -> dict[str, int]:
    count = lambda records: sum(len(x) for x in tokenizer([r.text for r in records], truncation=True,  # noqa: E731
                                                           max_length=max_length)["input_ids"])
    return {"train": count(splits.train), "validation": count(splits.validation), "test": count(splits.test)}


# -- tunelab --------------------------------------------------------------------------------------
def tunelab_config(s: Setting) -> dict[str, Any]:
    strategy: dict[str, Any] = {"name": s.strategy}
    if s.strategy == "partial":
        strategy["freeze_blocks"] = FREEZE_BLOCKS
    if s.strategy == "lora":
        strategy["lora"] = {"rank": LORA_RANK, "alpha": LORA_ALPHA, "dropout": LORA_DROPOUT, "target_modules": LORA_TARGETS}
    return {
        "model": "minilm", "task": "classification",
        "data": {"builtin": "bbc-news", "limit": s.limit, "max_length": s.max_length},
        "head": {"type": "native"}, "strategy": strategy,
        "optim": {"lr": s.lr, "weight_decay": 0.01}, "schedule": {"name": "linear", "warmup_ratio": 0.1},
        "train": {"epochs": s.epochs, "batch_size": s.batch_size, "seed": s.seed, "num_threads": s.threads,
                  "cache_dir": s.cache_dir, "precision": s.precision, "device": s.device},
        "early_stopping": {"restore_best": False},  # same protocol as the peer: the last epoch's model
    }


def run_tunelab(s: Setting) -> dict[str, Any]:
    from rich.console import Console

    from tunelab.catalog import parse_config
    from tunelab.strategies.registry import strategy_names
    from tunelab.orchestration.train import train

    if s.strategy not in strategy_names():
        return {"skipped": f"tunelab has no '{s.strategy}' strategy registered yet (strategies: {', '.join(strategy_names())})"}
    import yaml

    config = parse_config(tunelab_config(s))
    out = Path(tempfile.mkdtemp(prefix="tunelab-bench-")) / "run"
    summary = train(config, out=str(out), console=Console(stderr=True, quiet=True))
    wall = time.perf_counter() - WORKER_START
    manifest = json.loads((out / "manifest.json").read_text())
    ran = yaml.safe_load((out / "config.yaml").read_text())["train"]["precision"]  # `auto` resolved
    return {"wall_s": wall, "accuracy": float(summary.test_metrics["accuracy"]), "peak_rss_mb": peak_rss_mb(),
            "cache": manifest.get("activation_cache"), "precision": ran, "peak_gpu_mb": peak_gpu_mb(s.device),
            "train_s": manifest.get("train_time_s")}


# -- FLOPs and the machine's GEMM peak -------------------------------------------------------------
def gemm_peak_gflops(threads: int, n: int = 2048, repeat: int = 5, dtype: str = "fp32", device: str = "cpu") -> float:
    import torch

    torch.set_num_threads(threads)
    kind = torch.bfloat16 if dtype == "bf16" else torch.float32
    n = 8192 if device == "cuda" else n
    a, b = torch.randn(n, n, dtype=kind, device=device), torch.randn(n, n, dtype=kind, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    torch.mm(a, b)
    sync()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def model_flops(tool: str, strategy: str, epochs: int, tokens: dict[str, int], cache_cold: bool = True) -> float:
    """Matmul FLOPs of a run over real tokens (MiniLM: 6 blocks, width 384, FFN 1536, mean length L)."""
    blocks, h, ffn = 6, 384, 1536
    mean_len = tokens["train"] / max(1, tokens.get("train_examples", 1))
    per_block = 2 * (4 * h * h + 2 * h * ffn) + 4 * h * mean_len  # forward FLOPs per token per block
    frozen = {"head": blocks, "partial": FREEZE_BLOCKS}.get(strategy, 0)
    grads_from = {"head": blocks, "partial": FREEZE_BLOCKS}.get(strategy, 0)  # lowest block gradients reach
    train_fwd = blocks * per_block
    train_bwd = (blocks - grads_from) * per_block * (2 if strategy != "lora" else 1)
    evaluated = tokens["validation"] * epochs + tokens["test"]
    if tool == "tunelab" and frozen:
        once = (frozen * per_block) * (tokens["train"] + tokens["validation"] + tokens["test"]) if cache_cold else 0.0
        per_epoch = ((blocks - frozen) * per_block + train_bwd) * tokens["train"]
        return once + per_epoch * epochs + (blocks - frozen) * per_block * evaluated
    return (train_fwd + train_bwd) * tokens["train"] * epochs + blocks * per_block * evaluated


def machine_flags(device: str) -> dict[str, Any]:
    """What decides the peaks: the CPU's vector and matrix units (AVX512-BF16, AMX), or the GPU's name."""
    import torch

    flags: dict[str, Any] = {"cpu_capability": torch.backends.cpu.get_cpu_capability()}
    for name, probe in (("avx512_bf16", "_is_avx512_bf16_supported"), ("amx", "_is_amx_tile_supported")):
        check = getattr(torch.cpu, probe, None)
        flags[name] = bool(check()) if check is not None else None
    if device == "cuda":
        flags["gpu"] = torch.cuda.get_device_name(0)
    return flags


# -- the driver -----------------------------------------------------------------------------------
def spawn(tool: str, s: Setting) -> dict[str, Any]:
    """One run in a fresh interpreter: its peak RSS and timings are its own."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(s.threads)}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", tool, "--setting",
                           json.dumps(s.__dict__)], capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"error": f"{tool} run failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}"}
    return json.loads(lines[-1][len("RESULT "):])


def row_for(strategy: str, args: argparse.Namespace, cache_dir: str) -> dict[str, Any]:
    """One strategy: each peer leg (fp32, bf16 or both), then tunelab cold (and warm with --warm)."""
    epochs = max(1, round(EPOCHS[strategy] * args.epochs_scale))
    legs = ["fp32", "bf16"] if args.peer_precision == "both" else [args.peer_precision]
    base = Setting(strategy=strategy, epochs=epochs, limit=args.limit, max_length=args.max_length,
                   batch_size=args.batch_size, lr=LR[strategy], seed=args.seed, threads=args.threads,
                   cache_dir=cache_dir, precision=args.precision, peer_checkpoints=args.peer_checkpoints,
                   device=args.device, peer_group_by_length=args.peer_group_by_length)
    peers = {}
    for leg in legs:
        print(f"[{strategy}] Hugging Face Trainer{' + peft' if strategy == 'lora' else ''} ({leg}) ...",
              file=sys.stderr, flush=True)
        peers[leg] = spawn("peer", Setting(**{**base.__dict__, "peer_precision": leg}))
    print(f"[{strategy}] tunelab ...", file=sys.stderr, flush=True)
    ours = spawn("tunelab", base)
    cached = bool((ours.get("cache") or {}).get("built_entries"))
    warm = spawn("tunelab", base) if args.warm and cached else {}  # a second run, as an HPO trial would be
    row: dict[str, Any] = {"strategy": strategy, "epochs": epochs, "peers": peers, "tunelab": ours,
                           "tunelab_warm": warm}
    for leg, peer in peers.items():
        _add_rates(row, leg, peer, ours, warm)
    print("ROW " + json.dumps(row), file=sys.stderr, flush=True)  # a long run that is cut short keeps its rows
    return row


def _add_rates(row: dict[str, Any], leg: str, peer: dict[str, Any], ours: dict[str, Any], warm: dict[str, Any]) -> None:
    """Throughput, GFLOP/s and tunelab's ratios against this peer leg (under `vs_<leg>` in each run)."""
    if "wall_s" not in peer:
        return
    n, tokens = peer["train_examples"] * row["epochs"], peer["tokens"]["train"] * row["epochs"]
    peer["examples_per_s"], peer["train_tokens_per_s"] = n / peer["wall_s"], tokens / peer["wall_s"]
    peer["gflops"] = model_flops("peer", row["strategy"], row["epochs"], peer["tokens"]) / peer["wall_s"] / 1e9
    for run, cold in ((ours, True), (warm, False)):
        if "wall_s" not in run:
            continue
        run["examples_per_s"], run["train_tokens_per_s"] = n / run["wall_s"], tokens / run["wall_s"]
        run["gflops"] = model_flops("tunelab", row["strategy"], row["epochs"], peer["tokens"], cold) / run["wall_s"] / 1e9
        run[f"vs_{leg}"] = {"ratio": peer["wall_s"] / run["wall_s"],
                            "rss_ratio": run["peak_rss_mb"] / peer["peak_rss_mb"],
                            "gpu_ratio": (run["peak_gpu_mb"] / peer["peak_gpu_mb"]) if peer.get("peak_gpu_mb") else None,
                            "accuracy_gap_points": 100 * (run["accuracy"] - peer["accuracy"])}


def print_table(rows: list[dict[str, Any]], peak: float, peak_bf16: float, device: str = "cpu") -> None:
    mem = "GPU" if device == "cuda" else "RSS"
    head = (f"{'strategy':<8} {'ep':>2} {'peer':>4} | {'HF s':>7} {'ours s':>7} {'ratio':>6} {'warm':>6} | "
            f"{'HF tok/s':>8} {'ours tok/s':>10} | {'HF ' + mem:>7} {'ours ' + mem:>8} | {'HF acc':>6} {'ours acc':>8} | "
            f"{'HF GF/s':>8} {'ours GF/s':>9}")
    print(head)
    print("-" * len(head))
    for row in rows:
        o, w = row["tunelab"], row["tunelab_warm"]
        for leg, p in row["peers"].items():
            if "wall_s" not in p or "wall_s" not in o:
                print(f"{row['strategy']:<8} {row['epochs']:>2} {leg:>4} | "
                      + (o.get("skipped") or o.get("error") or p.get("error", "")))
                continue
            r, rw = o[f"vs_{leg}"], w.get(f"vs_{leg}", {})
            warm = f"{rw['ratio']:5.1f}x" if "ratio" in rw else "     -"
            pm, om = ((p["peak_gpu_mb"], o["peak_gpu_mb"]) if device == "cuda" else (p["peak_rss_mb"], o["peak_rss_mb"]))
            print(f"{row['strategy']:<8} {row['epochs']:>2} {leg:>4} | {p['wall_s']:7.1f} {o['wall_s']:7.1f} "
                  f"{r['ratio']:5.2f}x {warm} | {p['train_tokens_per_s']:8.0f} {o['train_tokens_per_s']:10.0f} | "
                  f"{pm:6.0f}M {om:7.0f}M | {p['accuracy']:6.3f} {o['accuracy']:8.3f} | {p['gflops']:8.1f} {o['gflops']:9.1f}")
    flags = machine_flags(device)
    print(f"tunelab precision: {rows[0]['tunelab'].get('precision', '?') if rows else '?'}; "
          f"GEMM peak measured here ({device}): fp32 {peak:.1f}, bf16 {peak_bf16:.1f} GFLOP/s ({os.cpu_count()} CPUs visible)")
    print("machine: " + ", ".join(f"{k} {v}" for k, v in flags.items()))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated subset of " + ",".join(STRATEGIES))
    parser.add_argument("--limit", type=int, default=None, help="use at most N BBC News articles (stratified)")
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="multiply the epochs (5 head, 3 others)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="tunelab's train.precision (default: its own default, auto)")
    parser.add_argument("--peer-precision", choices=["fp32", "bf16", "both"], default="fp32",
                        help="the peer's precision (default fp32, Trainer's default; bf16: bf16=True; both: each, "
                             "a ratio against each)")
    parser.add_argument("--peer-group-by-length", action="store_true",
                        help="the peer's bf16 leg also uses Trainer's length-grouped sampler (its best settings)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where both tools run")
    parser.add_argument("--peer-checkpoints", action="store_true",
                        help="the peer also saves a checkpoint every epoch, as tunelab always does")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--cache-dir", default=None, help="tunelab activation cache (default: a fresh temporary folder)")
    parser.add_argument("--warm", action="store_true", help="also time a second tunelab run that reuses the cache")
    parser.add_argument("--worker", choices=["peer", "tunelab"], help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        setting = Setting(**json.loads(args.setting))
        result = run_peer(setting) if args.worker == "peer" else run_tunelab(setting)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        parser.error(f"--strategies: unknown {unknown}; choose from {', '.join(STRATEGIES)}")
    peak = gemm_peak_gflops(args.threads, device=args.device)
    peak_bf16 = gemm_peak_gflops(args.threads, dtype="bf16", device=args.device)
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="tunelab-bench-cache-")
    rows = [row_for(strategy, args, cache_dir) for strategy in strategies]
    print_table(rows, peak, peak_bf16, args.device)
    print(json.dumps({"benchmark": "vs_hf", "gemm_peak_gflops": round(peak, 1),
                      "gemm_peak_gflops_bf16": round(peak_bf16, 1), "threads": args.threads,
                      "limit": args.limit, "max_length": args.max_length, "batch_size": args.batch_size,
                      "epochs_scale": args.epochs_scale, "precision": args.precision,
                      "peer_precision": args.peer_precision, "device": args.device,
                      "machine": machine_flags(args.device),
                      "peer_group_by_length": args.peer_group_by_length,
                      "peer_checkpoints": args.peer_checkpoints, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
