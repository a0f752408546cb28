"""`tunelab serve` under load, with micro-batching and without: requests/s, p50 and p99 latency, and the ratio.

    python benchmarks/serve_load.py                       # trains a short MiniLM demo run first (~1-2 min)
    python benchmarks/serve_load.py --run runs/demo --requests 2000 --clients 64 [--threads 1]

Each configuration starts a real server (`python -m tunelab serve`, a subprocess on 127.0.0.1 and a free port),
then `--clients` concurrent HTTP clients (httpx, one asyncio loop) send `--requests` requests in all: single texts
and batches of 2-8 texts drawn from the run's own predictions.csv, plus `--malformed` of malformed ones (each
with the 4xx it must get). Throughput counts every request; latency percentiles are over the well-formed ones.
The peer is the same server with `--max-batch 1` (one request per forward pass). Target: batching >= 3x the
throughput. The client shares the machine's cores with the server: figures from a busy machine are not the
server's own.

Also a library for the tests (tests/serve_harness.py): `ServerProcess`, `make_workload`, `run_load`, `summary`.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`python -m tunelab serve RUN_DIR ARGS` on 127.0.0.1 and a free port; `start()` waits for /health 200."""

    def __init__(self, run_dir: Path, *args: str, log: Optional[Path] = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "tunelab", "serve", str(run_dir), "--port", str(self.port), *args]
        self.log = log or Path(tempfile.mkstemp(prefix="tunelab-serve-", suffix=".log")[1])
        self.process: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 120.0) -> "ServerProcess":
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server was not ready within {timeout:.0f} s:\n{self.log.read_text()}")

    def terminate(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> Optional[int]:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@dataclass
class Call:
    path: str
    expect: int                         # the status it must get
    body: bytes                         # sent as is (malformed ones are not always JSON)
    texts: Optional[list[str]] = None   # the inputs of a well-formed predict call
    kind: str = "ok"


@dataclass
class Done:
    call: Call
    status: Optional[int]
    answer: Any
    seconds: float
    error: Optional[str] = None


def malformed_calls(max_chars: int = 20_000, max_inputs: int = 64) -> list[Call]:
    """One of each kind of bad request, with the code it must get."""
    def body(obj: Any) -> bytes:
        return json.dumps(obj).encode()
    return [Call("/v1/predict", 422, b"this is not json", kind="not-json"),
            Call("/v1/predict", 422, body({"inputs": [1, 2]}), kind="wrong-type"),
            Call("/v1/predict", 422, body({"inputs": []}), kind="empty-list"),
            Call("/v1/predict", 422, body({"inputs": ["  "]}), kind="empty-text"),
            Call("/v1/predict", 422, body({"text": "no inputs key"}), kind="missing-key"),
            Call("/v1/predict", 413, body({"inputs": ["word " * (max_chars // 5 + 1)]}), kind="text-too-long"),
            Call("/v1/predict", 413, body({"inputs": ["a text"] * (max_inputs + 1)}), kind="too-many-inputs"),
            Call("/v1/predict", 404, body({"inputs": ["a text"], "adapter": "no-such-adapter"}), kind="unknown-adapter")]


def make_workload(texts: list[str], n: int, malformed: float = 0.1, seed: int = 0, multi: float = 0.5) -> list[Call]:
    """`n` calls: a share `malformed` of bad ones (every kind in turn), the rest single texts (as a string or a
    one-item list) and, a share `multi` of them, batches of 2-8 texts; shuffled with `seed`."""
    rng = random.Random(seed)
    bad = malformed_calls()
    calls = [bad[i % len(bad)] for i in range(round(n * malformed))]
    while len(calls) < n:
        chosen = rng.sample(texts, 1 if rng.random() >= multi else min(len(texts), rng.randint(2, 8)))
        inputs: Any = chosen[0] if len(chosen) == 1 and rng.random() < 0.5 else chosen
        calls.append(Call("/v1/predict", 200, json.dumps({"inputs": inputs}).encode(), texts=chosen))
    rng.shuffle(calls)
    return calls


async def _one(client: httpx.AsyncClient, call: Call) -> Done:
    started = time.perf_counter()
    try:
        response = await client.post(call.path, content=call.body, headers={"content-type": "application/json"})
        answer = response.json() if response.headers.get("content-type", "").startswith("application/json") else None
        return Done(call, response.status_code, answer, time.perf_counter() - started)
    except (httpx.HTTPError, ValueError) as err:
        return Done(call, None, None, time.perf_counter() - started, f"{type(err).__name__}: {err}")


async def _run_load(url: str, calls: list[Call], clients: int, timeout: float) -> tuple[list[Done], float]:
    queue = list(reversed(calls))
    done: list[Done] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        async def worker() -> None:
            while queue:
                done.append(await _one(client, queue.pop()))
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return done, time.perf_counter() - started


def run_load(url: str, calls: list[Call], clients: int = 64, timeout: float = 120.0) -> tuple[list[Done], float]:
    """Every call answered (or failed), and the wall time, from `clients` concurrent clients."""
    return asyncio.run(_run_load(url, calls, clients, timeout))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def summary(done: list[Done], wall: float) -> dict[str, float]:
    ok = [d.seconds for d in done if d.call.expect == 200 and d.status == 200]
    inputs = sum(len(d.call.texts or ()) for d in done if d.status == 200)
    return {"requests": len(done), "wall_s": wall, "requests_per_s": len(done) / wall, "inputs_per_s": inputs / wall,
            "p50_ms": 1000 * percentile(ok, 50), "p99_ms": 1000 * percentile(ok, 99)}


def show(name: str, s: dict[str, float]) -> str:
    return (f"{name:<12} {s['requests']:>6.0f} requests in {s['wall_s']:6.2f} s: {s['requests_per_s']:7.1f} req/s, "
            f"{s['inputs_per_s']:7.1f} texts/s, p50 {s['p50_ms']:7.1f} ms, p99 {s['p99_ms']:7.1f} ms")


def run_texts(run_dir: Path) -> list[str]:
    """The texts of the run's own test predictions (predictions.csv), cut to 1,000 characters."""
    with (run_dir / "predictions.csv").open(encoding="utf-8", newline="") as handle:
        return [row["text"][:1000] for row in csv.DictReader(handle) if row["text"].strip()]


@dataclass
class Measured:
    stats: dict[str, float]
    unexpected: list[Done] = field(default_factory=list)


def measure(run_dir: Path, calls: list[Call], clients: int, *server_args: str) -> Measured:
    with ServerProcess(run_dir, *server_args) as server:
        run_load(server.url, calls[: max(clients, len(calls) // 20)], clients)  # warm-up
        done, wall = run_load(server.url, calls, clients)
    return Measured(summary(done, wall), [d for d in done if d.status != d.call.expect])


def demo_run(folder: Path) -> Path:
    out = folder / "demo"
    subprocess.run([sys.executable, "-m", "tunelab", "train", "--demo", "--out", str(out), "--set", "data.limit=300",
                    "--set", "train.epochs=1"], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return out


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="A run directory (default: train a short MiniLM demo run).")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--malformed", type=float, default=0.1)
    parser.add_argument("--multi", type=float, default=0.5, help="Share of well-formed requests that carry 2-8 "
                        "texts (0: single texts only, where the server without batching runs one text a forward).")
    parser.add_argument("--threads", type=int, help="The server's torch threads (default: one per core).")
    args = parser.parse_args(argv)
    extra = ["--threads", str(args.threads)] if args.threads else []
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run or demo_run(Path(tmp))
        calls = make_workload(run_texts(run_dir), args.requests, args.malformed, multi=args.multi)
        results = {"batching": measure(run_dir, calls, args.clients, *extra),
                   "max-batch 1": measure(run_dir, calls, args.clients, "--max-batch", "1", *extra)}
    for name, result in results.items():
        print(show(name, result.stats) + f", {len(result.unexpected)} unexpected answers")
    ratio = results["batching"].stats["requests_per_s"] / results["max-batch 1"].stats["requests_per_s"]
    print(f"throughput ratio (batching / max-batch 1): {ratio:.2f}x (target >= 3x)")
    return 0 if not any(r.unexpected for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
