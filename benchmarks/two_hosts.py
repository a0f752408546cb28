"""DDP across two hosts, on one machine: two network namespaces joined by a veth pair stand in for two machines
(each its own network stack, address and interface; no loopback between them), and one torchrun agent runs in each:

    host0 (10.77.0.1, veth tl-v0) <-- veth --> host1 (10.77.0.2, veth tl-v1)
    torchrun --nnodes 2 --node-rank R --nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint 10.77.0.1:PORT
             --local-addr 10.77.0.R+1 -m tunelab train CONFIG      (GLOO_SOCKET_IFNAME names the veth, as the README says for two machines)

The hosts share this machine's hostname (a network namespace has its own addresses, not its own name), so
torchrun cannot tell which of them the rendezvous endpoint is, nor which address the other host reaches it at:
`--rdzv-conf is_host=True|False` and `--local-addr ADDRESS` say so, as on two machines whose hostnames do not
resolve to the addresses they share.

The same run with `tunelab train --nproc 2` on one host is the reference: the script prints the largest weight
difference between the two models and both test metrics. What it cannot stand in for: separate filesystems (both
hosts see this one, as a shared filesystem would) and a real network's latency. Needs root and iproute2
(`ip netns`); the namespaces are removed at the end.

    python benchmarks/two_hosts.py --json results/two_hosts.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

from common import write_results

HOSTS = (("tl-h0", "tl-v0", "10.77.0.1"), ("tl-h1", "tl-v1", "10.77.0.2"))


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, text=True)


def make_hosts() -> None:
    remove_hosts()
    for namespace, _, _ in HOSTS:
        _ip("netns", "add", namespace)
    _ip("link", "add", HOSTS[0][1], "type", "veth", "peer", "name", HOSTS[1][1])
    for namespace, device, address in HOSTS:
        _ip("link", "set", device, "netns", namespace)
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", device)
        _ip("-n", namespace, "link", "set", device, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")


def remove_hosts() -> None:
    for namespace, _, _ in HOSTS:
        subprocess.run(["ip", "netns", "delete", namespace], capture_output=True)


def _settings(args: argparse.Namespace) -> list[str]:
    sets = ["strategy={name: full}", "optim.lr=5e-5", f"data.limit={args.limit}", f"train.epochs={args.epochs}",
            "train.num_threads=1", "train.precision=fp32", "early_stopping.patience=null", "forgetting.measure=false"]
    return [f"--set={s}" for s in sets]


def run_two_hosts(args: argparse.Namespace, out: Path) -> float:
    """One torchrun agent per namespace, rank 0's host holding the rendezvous; both must exit 0."""
    agents = []
    started = time.perf_counter()
    for rank, (namespace, device, address) in enumerate(HOSTS):
        command = ["ip", "netns", "exec", namespace, sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
                   "--node-rank", str(rank), "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                   "--rdzv-endpoint", f"{HOSTS[0][2]}:{args.port}", "--rdzv-conf", f"is_host={rank == 0}",
                   "--local-addr", address,
                   "-m", "tunelab", "train", "--demo",
                   "--out", str(out), "--overwrite", *_settings(args)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "GLOO_SOCKET_IFNAME": device, "OMP_NUM_THREADS": "1"}
        agents.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [agent.communicate(timeout=args.timeout)[0] for agent in agents]
    for rank, (agent, text) in enumerate(zip(agents, outputs)):
        if agent.returncode:
            sys.exit(f"host {rank}'s agent failed ({agent.returncode}):\n{text[-12000:]}")
    return time.perf_counter() - started


def run_one_host(args: argparse.Namespace, out: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tunelab", "train", "--demo", "--out", str(out), "--overwrite",
                           "--nproc", "2", *_settings(args)], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode:
        sys.exit(f"--nproc 2 failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def largest_difference(a: Path, b: Path) -> float:
    left, right = (load_file(str(d / "model" / "model.safetensors")) for d in (a, b))
    assert left.keys() == right.keys(), "the two models hold different tensors"
    return max(float((left[k].double() - right[k].double()).abs().max()) for k in left)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=240, help="BBC News articles (stratified)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--port", type=int, default=29431)
    parser.add_argument("--timeout", type=int, default=1200, help="seconds the two agents may take")
    parser.add_argument("--work", type=Path, default=Path("two-hosts"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    two, one = args.work.resolve() / "two-hosts", args.work.resolve() / "one-host-nproc2"
    make_hosts()
    try:
        two_s = run_two_hosts(args, two)
    finally:
        remove_hosts()
    one_s = run_one_host(args, one)
    metrics = {name: json.loads((d / "test_metrics.json").read_text()) for name, d in (("two", two), ("one", one))}
    manifest = json.loads((two / "manifest.json").read_text())
    diff = largest_difference(two, one)
    print(f"two hosts (2 agents x 1 process, gloo over the veth): {two_s:.1f} s wall, processes recorded "
          f"{manifest.get('processes')}, test accuracy {metrics['two']['accuracy']:.4f}, macro-F1 {metrics['two']['macro_f1']:.4f}")
    print(f"one host (--nproc 2): {one_s:.1f} s wall, test accuracy {metrics['one']['accuracy']:.4f}, "
          f"macro-F1 {metrics['one']['macro_f1']:.4f}")
    print(f"largest weight difference between the two models: {diff:.3g}")
    if args.json:
        write_results(args.json, args, two_hosts_wall_s=round(two_s, 1), one_host_wall_s=round(one_s, 1),
                      processes=manifest.get("processes"), max_abs_weight_diff=diff,
                      test={"two_hosts": metrics["two"], "one_host_nproc2": metrics["one"]})


if __name__ == "__main__":
    main()
