#!/usr/bin/env python3
"""Benchmark cluster mode: `nsinspect pod X` and `nsinspect pods -A` through the API server.

Starts a private containerd (tests/cri_env.py) with PODS pods over CRI, NODES real agents
(`nsinspect agent`, NODE_NAME node-NN, all reading that containerd) and the stub API server on
loopback (tests/kube_stub.py, serving pods and the pods/portforward websocket to each agent), then
times, wall clock, start-up and imports included:
  cluster pod X        nsinspect --kubeconfig KC pod X -n NS    (get pod, find the agent, port-forward, GetPod)
  cluster pods -A      nsinspect --kubeconfig KC pods -A -o json   (NODES x PODS pods, every agent asked)
and, in the same run, the baselines: the same questions in local mode (-r ENDPOINT, one node).
Budgets (issue 5): pod X <= 1.0 s; pods -A over 50 nodes x 20 pods <= 3 s.
  sudo python3 scripts/bench_cluster.py [--nodes 50] [--pods 20] [--rounds 5] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def nsinspect_command() -> list[str]:
    script = Path(sys.executable).parent / "nsinspect"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nsinspect"]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return time.perf_counter() - t, r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--pods", type=int, default=20, help="pods per node")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--check", action="store_true", help="exit 1 when a budget is missed")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_cluster.py starts containerd: run it as root.", file=sys.stderr)
        return 2
    from cri_env import Containerd, ContainerSpec, run_pod
    from kube_stub import Fleet

    from nsinspect.cri.client import RuntimeClient

    env = Containerd.create()
    fleet = None
    try:
        client = RuntimeClient.connect(env.endpoint)
        pods = [run_pod(client, f"fan-{i:03d}", namespace="fan", containers=[ContainerSpec("app")]) for i in range(args.pods)]
        client.close()
        started = time.perf_counter()
        fleet = Fleet(env.endpoint, pods, args.nodes)
        up = time.perf_counter() - started
        kc = fleet.api.kubeconfig(Path(tempfile.mkdtemp()) / "kubeconfig", namespace="fan")
        run_env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "CONTAINER_RUNTIME_ENDPOINT")}
        run_env["NSINSPECT_NO_PROGRESS"] = "1"
        cmd = nsinspect_command()
        x = pods[0].name
        questions = {
            "cluster pod X": [*cmd, "--kubeconfig", str(kc), "pod", x, "-n", "fan"],
            "local pod X": [*cmd, "-r", env.endpoint, "pod", x, "-n", "fan"],
            "cluster pods -A": [*cmd, "--kubeconfig", str(kc), "pods", "-A", "-o", "json"],
            "local pods -A": [*cmd, "-r", env.endpoint, "pods", "-A", "-o", "json"],
        }
        times: dict[str, list[float]] = {k: [] for k in questions}
        last: dict[str, subprocess.CompletedProcess] = {}
        for _ in range(args.rounds):  # interleaved, so both see the same machine
            for label, q in questions.items():
                t, r = timed(q, run_env)
                if r.returncode != 0:
                    print(f"{label} failed ({r.returncode}): {r.stderr.strip()[-500:]}", file=sys.stderr)
                    return 1
                times[label].append(t)
                last[label] = r
        answer = json.loads(last["cluster pods -A"].stdout)
        found = sum(1 for p in answer["pods"] if p["members"])
        per_node = [n["seconds"] for n in answer["nodes"]]
    finally:
        if fleet is not None:
            fleet.stop()
            fleet.api.close()
        env.destroy()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.nodes} nodes (real agents on one containerd) x {args.pods} pods; stub API server on loopback; "
          f"{os.cpu_count()} cpus; {args.rounds} rounds; agents up in {up:.1f} s")
    for label, v in times.items():
        print(f"  {label:<16} median {med[label] * 1000:7.0f} ms   min {min(v) * 1000:7.0f} ms   max {max(v) * 1000:7.0f} ms")
    print(f"  pods -A answer: {len(answer['pods'])} pods ({found} with members), {len(answer['nodes'])} nodes, "
          f"{answer['summary']['nodes_failed']} failed; per node p50 {statistics.median(per_node) * 1000:.0f} ms, "
          f"max {max(per_node) * 1000:.0f} ms")
    ok_pod, ok_all = med["cluster pod X"] <= 1.0, med["cluster pods -A"] <= 3.0
    ok_answer = found == args.nodes * args.pods and answer["summary"]["nodes_failed"] == 0
    print(f"pod X      {med['cluster pod X']:6.2f} s  budget <= 1.0 s  {'ok' if ok_pod else 'MISSED'}")
    print(f"pods -A    {med['cluster pods -A']:6.2f} s  budget <= 3.0 s  {'ok' if ok_all else 'MISSED'}")
    print(f"answers    {found}/{args.nodes * args.pods} pods found  {'ok' if ok_answer else 'WRONG'}")
    print(f"ratio cluster/local pod X: {med['cluster pod X'] / med['local pod X']:.2f}x   "
          f"pods -A: {med['cluster pods -A'] / med['local pods -A']:.2f}x")
    return 1 if not ok_answer or (args.check and not (ok_pod and ok_all)) else 0


if __name__ == "__main__":
    sys.exit(main())
