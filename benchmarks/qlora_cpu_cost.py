"""What a 4-bit base (QLoRA, strategy.lora.quantize) would cost on this CPU, against the LoRA runs tunelab does here.

Builds the built-in MiniLM with LoRA on q and v (the default section), once on the full-precision base and once
with every Linear of the base in NF4 (bitsandbytes' `Linear4bit`, as `quantize: nf4` builds it), and times a
training step's forward and backward (the base frozen, LoRA and the head training) per batch shape:

- fp32 base vs NF4 computing in fp32, and bf16 autocast on the fp32 base vs NF4 computing in bf16;
- the bytes the base's weights hold in each.

This is the evidence behind the CPU refusal in `strategies/peft/lora.py`: bitsandbytes' CPU path dequantizes
every weight at every call, so a step is slower than on the base it saves memory on, and on a CPU memory for a
model of this size is rarely what binds. Run alone on the cores: `python benchmarks/qlora_cpu_cost.py`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

import torch

from common import write_results
from tunelab.config.schema import HeadConfig, ModelConfig, OptimConfig, StrategyConfig
from tunelab.models.loading import build_task_model
from tunelab.strategies import apply_trainable, compile_strategy


def _model(quantize: str | None, compute: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_task_model(ModelConfig(name="minilm"), HeadConfig(type="native"),
                             problem_type="single_label_classification", label_names=list("abcde"), num_outputs=5)
    lora = {"quantize": quantize, "compute_dtype": compute} if quantize else {}
    plan = compile_strategy(StrategyConfig(name="lora", lora=lora), model, OptimConfig(), 1)
    apply_trainable(model, plan.trainable)
    return model.train()


def _step_ms(model: torch.nn.Module, batch: dict[str, torch.Tensor], autocast: bool, repeats: int) -> float:
    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(**batch).float().logsumexp(-1).mean()
        loss.backward()
        model.zero_grad(set_to_none=True)
    return _best_of(step, repeats)


def _best_of(step: Callable[[], None], repeats: int) -> float:
    step()  # warm-up: allocations, one-time casts
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def _base_bytes(model: torch.nn.Module) -> int:
    """Bytes of the frozen weights (4-bit blocks and their scales included), the head and LoRA left out."""
    state = model.state_dict()
    return sum(t.numel() * t.element_size() for n, t in state.items() if "lora_" not in n and "classifier" not in n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="1x32,8x64,16x128,32x256", help="batch x tokens, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    models = {"fp32": _model(None, "fp32"), "nf4 (fp32 compute)": _model("nf4", "fp32"),
              "nf4 (bf16 compute)": _model("nf4", "bf16")}
    memory = {name: _base_bytes(model) for name, model in models.items()}
    print("base weights: " + ", ".join(f"{name} {b / 2**20:.1f} MiB" for name, b in memory.items()))
    rows = []
    for shape in args.shapes.split(","):
        size, length = (int(v) for v in shape.split("x"))
        batch = {"input_ids": torch.randint(1000, 20000, (size, length)), "attention_mask": torch.ones(size, length, dtype=torch.long)}
        row = {"shape": shape, "fp32": _step_ms(models["fp32"], batch, False, args.repeats),
               "nf4_fp32": _step_ms(models["nf4 (fp32 compute)"], batch, False, args.repeats),
               "bf16_autocast": _step_ms(models["fp32"], batch, True, args.repeats),
               "nf4_bf16": _step_ms(models["nf4 (bf16 compute)"], batch, False, args.repeats)}
        rows.append(row)
        print(f"{shape:>8}: fp32 {row['fp32']:.1f} ms, nf4/fp32 {row['nf4_fp32']:.1f} ms "
              f"({row['nf4_fp32'] / row['fp32']:.2f}x); bf16 autocast {row['bf16_autocast']:.1f} ms, nf4/bf16 "
              f"{row['nf4_bf16']:.1f} ms ({row['nf4_bf16'] / row['bf16_autocast']:.2f}x)")
    if args.json:
        write_results(args.json, args, base_bytes=memory, steps=rows)


if __name__ == "__main__":
    main()
