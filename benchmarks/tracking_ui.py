"""What a tracked tunelab run looks like in TensorBoard and in the MLflow UI: screenshots from headless Chromium.

    python benchmarks/tracking_ui.py --out results/tracking-ui                  # trains a small compare first
    python benchmarks/tracking_ui.py --work DIR --out results/tracking-ui       # reuses DIR's compare
    python benchmarks/tracking_ui.py --mlflow /path/to/venv-with-mlflow/bin/mlflow

Runs `tunelab compare` of head and LoRA on BBC News (200 articles, 3 epochs, max_length 64) with
`tracking: {tensorboard: true, mlflow: {tracking_uri: file:DIR/mlruns}}`, then serves the event files with
`tensorboard` and the MLflow file store with `mlflow ui` (the full `mlflow` package; `tunelab[tracking]` brings
only `mlflow-skinny`, which has no UI), both on 127.0.0.1, and opens in Chromium (the Debian package, headless):
TensorBoard's scalars dashboard (the curves of both rows), the MLflow experiment's runs (the compare's parent
run with its rows nested) and one row's overview (its tags and metrics). MLflow's metric-chart tab is left out:
headless Chromium saves its charts as loading spinners. Each page is saved as a PNG and its rendered text (`--dump-dom`) is checked for what must be
on it (the run names, the metric names; TensorBoard draws in shadow roots that `--dump-dom` leaves out, so its
data API is checked for the tags instead), so a blank or error page fails the script instead of being saved.
Not a timing benchmark: nothing here is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CONFIG = """model: minilm
task: classification
data: {builtin: bbc-news, limit: 200, max_length: 64, validation_split: 0.15, test_split: 0.2}
train: {epochs: 3, batch_size: 16, seed: 0}
tracking:
  tensorboard: true
  mlflow: {tracking_uri: "file:MLRUNS", experiment: bbc-tracking}
output: runs/unused
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tracked_compare(work: Path) -> Path:
    """A compare of head and LoRA with both trackers on (skipped when `work` already holds one)."""
    out = work / "cmp"
    if (out / "compare.json").is_file():
        return out
    work.mkdir(parents=True, exist_ok=True)
    config = work / "tracked.yaml"
    config.write_text(CONFIG.replace("MLRUNS", str((work / "mlruns").resolve())))
    subprocess.run([sys.executable, "-m", "tunelab", "compare", str(config), "--strategies", "head,lora",
                    "--out", str(out)], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return out


@contextmanager
def served(command: list[str], url: str, log: Path, timeout: float = 120.0) -> Iterator[str]:
    """`command` running until its `url` answers 200; stopped on exit."""
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"}
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=5) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{command[0]} did not answer at {url}; its log: {log}")
                time.sleep(0.5)
            yield url
        finally:
            process.terminate()
            process.wait(30)


def chromium(url: str, png: Path, must_show: list[str], budget_ms: int = 20_000) -> str:
    """Screenshot of `url` and its rendered text; fails naming what the page does not show."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("no chromium on PATH: apt-get install -y chromium")
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              "--window-size=1600,1000", f"--virtual-time-budget={budget_ms}"]
    subprocess.run([*common, f"--screenshot={png}", url], check=True, capture_output=True, timeout=180)
    dom = subprocess.run([*common, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=180).stdout
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))
    missing = [word for word in must_show if word not in text]
    if missing:
        raise SystemExit(f"{url} rendered without {missing} (screenshot kept: {png})")
    return text


def mlflow_ids(mlruns: Path) -> tuple[str, str, list[tuple[str, str]]]:
    """(experiment id, parent run id, [(row run id, row name)]) of the compare, read with MlflowClient."""
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"file:{mlruns}")
    experiment = client.get_experiment_by_name("bbc-tracking")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    rows = [(r.info.run_id, r.info.run_name) for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return experiment.experiment_id, parent.info.run_id, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/tracking-ui"), help="Folder of the tracked compare.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tracking-ui"), help="Folder for the PNGs.")
    parser.add_argument("--mlflow", default=shutil.which("mlflow") or "mlflow", help="The full mlflow's CLI.")
    parser.add_argument("--tensorboard", default=str(Path(sys.executable).with_name("tensorboard")))
    args = parser.parse_args(argv)
    cmp, mlruns = tracked_compare(args.work), (args.work / "mlruns").resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    experiment, parent, rows = mlflow_ids(mlruns)
    tb_port, ml_port = free_port(), free_port()
    tb = [args.tensorboard, "--logdir", str(cmp / "runs"), "--host", "127.0.0.1", "--port", str(tb_port)]
    ml = [args.mlflow, "ui", "--backend-store-uri", f"file:{mlruns}", "--host", "127.0.0.1", "--port", str(ml_port)]
    seen = {}
    with served(tb, f"http://127.0.0.1:{tb_port}/", args.out / "tensorboard.log") as url:
        # the scalars dashboard draws in shadow roots, which --dump-dom leaves out: its data API is checked
        tags = json.load(urllib.request.urlopen(f"{url}data/plugin/scalars/tags", timeout=30))
        missing = [(run, tag) for run in ("head/tensorboard", "lora/tensorboard")
                   for tag in ("train/loss", "validation/macro_f1", "test/accuracy") if tag not in tags.get(run, {})]
        if missing:
            raise SystemExit(f"tensorboard serves no {missing}; it has {sorted(tags)}")
        seen["tensorboard-scalars"] = chromium(f"{url}#scalars&_smoothingWeight=0&tagFilter=train%2Floss%7Cvalidation%2F",
                                               args.out / "tensorboard-scalars.png", ["TensorBoard"])
    with served(ml, f"http://127.0.0.1:{ml_port}/", args.out / "mlflow.log") as url:
        seen["mlflow-experiment"] = chromium(f"{url}#/experiments/{experiment}/runs", args.out / "mlflow-experiment.png",
                                             ["bbc-tracking", "Training runs", f"{1 + len(rows)} matching runs"])
        row_id, row_name = rows[0]
        seen["mlflow-row"] = chromium(f"{url}#/experiments/{experiment}/runs/{row_id}", args.out / "mlflow-row.png",
                                      [row_name, "test/accuracy", "validation/macro_f1", "strategy"])
    (args.out / "pages.json").write_text(json.dumps({k: v[:4000] for k, v in seen.items()}, indent=1))
    print(f"screenshots in {args.out}: " + ", ".join(f"{k}.png" for k in seen) + f" (parent run {parent}, rows {rows})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
