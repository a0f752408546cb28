"""The load and fault check of a real `tunelab serve` process, shared by the unit test (tiny model) and the e2e
test (MiniLM): concurrent clients with 10% malformed requests, a client killed mid-request, SIGTERM with
requests in flight. The load generator and the server process are benchmarks/serve_load.py's."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

import httpx

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_load.py"


def load_bench():
    if "serve_load" not in sys.modules:
        spec = importlib.util.spec_from_file_location("serve_load", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["serve_load"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["serve_load"]


def expected_outputs(run_dir: Path, texts: list[str]) -> dict[str, dict[str, Any]]:
    """What `tunelab predict` gives for each text, through serving/predict.py, computed once."""
    from tunelab.artifacts.model_io import load_run
    from tunelab.serving.backend import text_records
    from tunelab.serving.outputs import prediction_outputs
    from tunelab.serving.predict import predict_records

    run = load_run(run_dir)
    records = text_records(texts, run.config.task, "expected")
    outputs = prediction_outputs(run.config.task, predict_records(run, records), records, run.label_names)
    return dict(zip(texts, outputs))


def _same(got: dict[str, Any], want: dict[str, Any]) -> bool:
    """Same label; probabilities equal to 1e-4 (a batch pads to another width than the reference)."""
    if got.get("label") != want.get("label") or set(got.get("scores", {})) != set(want.get("scores", {})):
        return False
    return all(abs(got["scores"][k] - v) <= 1e-4 for k, v in want.get("scores", {}).items())


def unexpected(done: list, expected: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    for d in done:
        if d.status != d.call.expect:
            problems.append(f"{d.call.kind}: expected {d.call.expect}, got {d.status} {d.error or d.answer}")
        elif d.status == 200:
            outputs = d.answer["outputs"]
            wrong = [t for t, o in zip(d.call.texts, outputs) if not _same(o, expected[t])]
            if len(outputs) != len(d.call.texts) or wrong:
                problems.append(f"{d.call.texts}: {outputs} differs from tunelab predict's {[expected[t] for t in wrong]}")
        elif set(d.answer or {}) != {"error", "error_type"}:
            problems.append(f"{d.call.kind}: error body {d.answer}")
    return problems


def kill_clients_mid_request(port: int, body: bytes) -> None:
    """Two clients that vanish (TCP reset): one half-way through its body, one before its answer."""
    head = (f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    for payload in (head + body[: len(body) // 2], head + body):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(payload)
        time.sleep(0.05)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def _inputs_seen(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith('tunelab_inputs_total{route="/v1/predict"}'):
            return float(line.split()[-1])
    return 0.0


async def _sigterm_in_flight(server: Any, texts: list[str], n: int, size: int) -> tuple[list[Any], int, list[str]]:
    """`n` requests of `size` texts in flight (the server has read them all), then SIGTERM; then new requests.
    Returns the in-flight outcomes, how many finished after the signal, and what the later requests got."""
    body = {"inputs": [texts[i % len(texts)] for i in range(size)]}
    before = await asyncio.to_thread(_inputs_seen, server.url)
    finished: list[float] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        async def one() -> Any:
            answer = await client.post("/v1/predict", json=body)
            finished.append(time.perf_counter())
            return answer
        tasks = [asyncio.ensure_future(one()) for _ in range(n)]
        deadline = time.monotonic() + 30
        while await asyncio.to_thread(_inputs_seen, server.url) < before + size * n and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        signalled = time.perf_counter()
        server.terminate()
        later = []
        for pause in (0.0, 0.3, 1.0):
            await asyncio.sleep(pause)
            later.append(await _later_request(server.url, body))
        results = await asyncio.gather(*tasks, return_exceptions=True)
    return results, sum(t > signalled for t in finished), later


async def _later_request(url: str, body: dict) -> str:
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as fresh:
            return str((await fresh.post("/v1/predict", json=body)).status_code)
    except httpx.TransportError as err:
        return type(err).__name__


def check_server(run_dir: Path, log: Path, *, requests: int, clients: int, server_args: tuple[str, ...] = (),
                 in_flight: tuple[int, int] = (24, 64)) -> None:
    """`in_flight`: (requests, texts each) in flight at SIGTERM; the server must finish them within its
    --graceful-timeout (30 s unless `server_args` say otherwise)."""
    bench = load_bench()
    texts = sorted(set(bench.run_texts(run_dir)))
    expected = expected_outputs(run_dir, texts)
    calls = bench.make_workload(texts, requests, malformed=0.1)
    server = bench.ServerProcess(run_dir, *server_args, log=log).start()
    try:
        done, wall = bench.run_load(server.url, calls, clients)
        print("\n" + bench.show(f"{clients} clients", bench.summary(done, wall)))
        problems = unexpected(done, expected)
        assert not problems, f"{len(problems)} unexpected answers:\n" + "\n".join(problems[:20])
        assert sum(d.call.expect != 200 for d in done) == round(requests * 0.1)

        kill_clients_mid_request(server.port, json.dumps({"inputs": texts[:64]}).encode())
        after = httpx.post(f"{server.url}/v1/predict", json={"inputs": texts[:3]}, timeout=30)
        assert after.status_code == 200 and all(_same(o, expected[t]) for t, o in zip(texts, after.json()["outputs"]))

        results, after_signal, later = asyncio.run(_sigterm_in_flight(server, texts, *in_flight))
        print(f"SIGTERM: {len(results)} in flight, {after_signal} finished after the signal; later requests: {later}")
        outcomes = [getattr(r, "status_code", repr(r)) for r in results]
        assert outcomes == [200] * len(results), f"in flight at SIGTERM: {outcomes}\n{log.read_text()[-3000:]}"
        assert after_signal > 0, "every request finished before the signal: nothing was in flight to check"
        assert all(status in ("503", "ConnectError") for status in later), later
        assert server.process.wait(60) in (0, -signal.SIGTERM), log.read_text()
    finally:
        server.stop()
