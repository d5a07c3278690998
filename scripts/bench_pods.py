#!/usr/bin/env python3
"""Benchmark `nsinspect pod X` and `nsinspect pods -A -o json` on a node with many pods.

Starts a private containerd (tests/cri_env.py), creates PODS pods of 2 containers over CRI as
kubelet does, then times, alternately in one run:
  nsinspect pod X                the CLI, wall clock, start-up included
  nsinspect pods -A -o json      the CLI, wall clock
  nsinspect pod X --details      the CLI with each member's evidence (helper process included)
  naive                          one verbose ContainerStatus/PodSandboxStatus per member, one by
                                 one, then readlink of the 8 links of each pid (what a script does)
Budgets (issues 3, 13): pod X <= 300 ms, pods -A -o json <= 1 s; (issue 12) pod X --details <= 2x pod X.
nsinspect is this checkout, run as its console script would run it (scripts/benchlib.py).
  sudo python3 scripts/bench_pods.py [--pods 100] [--rounds 5] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import benchlib  # noqa: E402
from cri_env import Containerd, ContainerSpec, run_pod  # noqa: E402

NS = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")


def naive(client) -> int:
    from nsinspect.cri.v1 import api_pb2 as pb

    stub, links = client.stub, 0
    pids = []
    for sb in client.list_sandboxes(ready_only=True):
        r = stub.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sb.id, verbose=True))
        pids.append(json.loads(r.info["info"])["pid"])
        for c in client.list_containers(sb.id):
            r = stub.ContainerStatus(pb.ContainerStatusRequest(container_id=c.id, verbose=True))
            pids.append(json.loads(r.info["info"])["pid"])
    for pid in pids:
        for t in NS:
            try:
                os.readlink(f"/proc/{pid}/ns/{t}")
                links += 1
            except OSError:
                pass
    return links


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_pods.py starts containerd: run it as root.", file=sys.stderr)
        return 2
    from nsinspect.cri.client import RuntimeClient

    scan = benchlib.prepare()
    run_env, load_before = benchlib.env(), benchlib.load()
    env = Containerd.create()
    try:
        client = RuntimeClient.connect(env.endpoint)
        t = time.perf_counter()
        for i in range(args.pods):
            run_pod(client, f"bench-{i:03d}", namespace="bench", containers=[ContainerSpec("app"), ContainerSpec("sidecar")])
        made = time.perf_counter() - t
        cli = [*benchlib.command(), "-r", env.endpoint]
        target = f"bench-{args.pods // 2:03d}"
        times: dict[str, list[float]] = {"nsinspect pod X": [], "nsinspect pod X --details": [],
                                         "nsinspect pods -A -o json": [], "naive (all pods)": []}
        for _ in range(args.rounds):
            times["nsinspect pod X"].append(timed([*cli, "pod", target, "-n", "bench"], run_env))
            times["nsinspect pod X --details"].append(timed([*cli, "pod", target, "-n", "bench", "--details"], run_env))
            times["nsinspect pods -A -o json"].append(timed([*cli, "pods", "-A", "-o", "json"], run_env))
            t = time.perf_counter()
            naive(client)
            times["naive (all pods)"].append(time.perf_counter() - t)
        client.close()
    finally:
        env.destroy()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.pods} pods x 2 containers (created in {made:.1f} s); {args.rounds} rounds; {os.cpu_count()} cpus; "
          f"load average {load_before} before, {benchlib.load()} after")
    print(f"nsinspect: this checkout (scripts/benchlib.py), scan loop in {scan}")
    for k, v in med.items():
        print(f"  {k:<28} median {v * 1000:8.1f} ms")
    pod_ok, pods_ok = med["nsinspect pod X"] <= 0.3, med["nsinspect pods -A -o json"] <= 1.0
    # Paired per round (same load): the ratio of each round's two runs, then the median.
    details = statistics.median(d / p for d, p in zip(times["nsinspect pod X --details"], times["nsinspect pod X"], strict=True))
    details_ok = details <= 2.0
    ratio = med["naive (all pods)"] / med["nsinspect pods -A -o json"]
    print(f"pod X      {med['nsinspect pod X'] * 1000:6.0f} ms  budget <= 300 ms  {'ok' if pod_ok else 'MISSED'}")
    print(f"pods -A    {med['nsinspect pods -A -o json'] * 1000:6.0f} ms  budget <= 1000 ms {'ok' if pods_ok else 'MISSED'}")
    print(f"pod --details / pod X: {details:.2f}x  budget <= 2x  {'ok' if details_ok else 'MISSED'}")
    print(f"ratio naive(in-process, no start-up)/pods -A: {ratio:.2f}x")
    return 1 if args.check and not (pod_ok and pods_ok and details_ok) else 0


if __name__ == "__main__":
    sys.exit(main())
