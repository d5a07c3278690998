#!/usr/bin/env python3
"""Benchmark `nsinspect node -o json` against `lsns -J` and a C readlinkat floor.

Populates this machine with GROUPS groups of processes, each group in fresh net, ipc,
uts, mnt and pid namespaces (scripts/c/populate.c), then times, alternately in one run:
  lsns -J                       the tool users know
  nsinspect node -o json        us
  floor                         C: readlinkat() of the 8 ns links of every process, nothing else
  samework                      C: the reads nsinspect makes, the cheapest way (scripts/c/samework.c: ns links,
                                fd tables, each namespace's lowest pid, the hierarchy ioctls, and per mount
                                namespace listmount + statmount of each mount, or its mountinfo)
and prints medians and ratios against the budgets of issue 20: cold nsinspect >= 2x faster than lsns on the
synthetic node (>= 10x on the realistic one, below), <= 1.3x samework, warm <= 0.1x cold.  The readlink
floor (issue 13's budget, from before the hidden-namespace passes) is shown for comparison only.  The floors'
times are printed too, so that figures from different machines can be compared.  --node-mounts N first adds N tmpfs mounts to the node's mount
namespace (a busy node's overlays, shm and volumes), which every group's new mount namespace copies:
the cost of the hidden-namespace pass grows as mounts x mount namespaces.  --pods N makes the realistic node
(issue 20: cold >= 10x lsns): a private containerd (tests/cri_env.py) with N pods of 2-3 containers created
over CRI as kubelet does, each with what kubelet gives a pod: a service-account token tmpfs bind-mounted
read-only into every container, an emptyDir, /etc/hosts and a termination log per container (so the node
holds their overlays, shm, token tmpfs and netns pins, and every container's mount namespace its volumes);
with --groups 0 that node alone, else the synthetic population beside it.  --agent also starts
`nsinspect agent` (no runtime) and times its warm GetNode (the call through the CLI's client, answer in the model, and the same
through the CLI: `nsinspect --agent ADDR node -o json`) against the cold CLI scan (issue 20: warm <= 0.1x),
checking that the warm answer holds the same namespaces.
nsinspect is this checkout, bytecode compiled and the C speed-up built as an install does
(scripts/benchlib.py); --pure times the pure-Python scan instead.  Start-up alone:
scripts/bench_startup.py.

Run as root (namespaces need it).  Everything it starts is in one session that it kills
at the end, on error, or on Ctrl-C; with --pods, the test containerd first makes the node's /run/netns a
shared mount, as `ip netns` does, and leaves it so (tests/cri_env.py).  Exit status 1 when --check is given and a budget is missed.

  sudo python3 scripts/bench_node.py [--groups 1000] [--per-group 5] [--node-mounts 0] [--pods 0] [--rounds 7] [--pure] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib

HERE = Path(__file__).resolve().parent
C_DIR = HERE / "c"
REALISTIC_BUDGET, SYNTHETIC_BUDGET = 10.0, 2.0  # lsns -J / cold nsinspect (issue 20)


def build(tmp: Path, name: str) -> Path:
    out = tmp / name
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(out), str(C_DIR / f"{name}.c")], check=True)
    return out


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, bytes]:
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, env=env).stdout
    return time.perf_counter() - t, out


class Population:
    def __init__(self, populate: Path, groups: int, per_group: int):
        r, w = os.pipe()
        self.proc = subprocess.Popen(
            [str(populate), str(groups), str(per_group), str(w)], pass_fds=(w,), start_new_session=True
        )
        os.close(w)
        with os.fdopen(r) as f:
            line = f.readline()
        if line.strip() != "ready":
            self.stop()
            raise SystemExit("populate did not come up (are you root?)")

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


class NodeMounts:
    """N tmpfs mounts in this (the node's) mount namespace, under a directory of their own; undone by stop()."""

    def __init__(self, n: int):
        self.dir = Path(tempfile.mkdtemp(prefix="nsinspect-bench-mounts-"))
        self.points: list[str] = []
        for i in range(n):
            p = self.dir / str(i)
            p.mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "bench", str(p)], check=True)
            self.points.append(str(p))

    def stop(self) -> None:
        for p in reversed(self.points):
            subprocess.run(["umount", "-l", p], check=False)
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.dir)], check=False)


class Pods:
    """The realistic node: a private containerd with ``n`` pods of 2-3 containers and kubelet's volumes."""

    def __init__(self, n: int):
        sys.path.insert(0, str(HERE.parent / "tests"))
        sys.path.insert(0, str(HERE.parent))
        from cri_env import Containerd, ContainerSpec, run_pod

        from nsinspect.cri.client import RuntimeClient

        self.kubelet = Path(tempfile.mkdtemp(prefix="nsinspect-bench-kubelet-"))
        self.tmpfs: list[str] = []
        self.env = self.client = None
        try:
            self.env = Containerd.create()
            self.client = RuntimeClient.connect(self.env.endpoint)
            for i in range(n):
                names = ["app", "sidecar", "metrics"][: 2 + i % 2]
                run_pod(self.client, f"bench-{i:03d}", namespace="bench",
                        containers=[ContainerSpec(c, mounts=self._volumes(i, c)) for c in names])
        except BaseException:
            self.stop()
            raise

    def _volumes(self, i: int, container: str) -> list[tuple[str, str, bool]]:
        """What kubelet mounts into a container: the token (a tmpfs of the pod's), an emptyDir, /etc/hosts,
        the termination log."""
        pod = self.kubelet / "pods" / f"bench-{i:03d}"
        token = pod / "volumes" / "kubernetes.io~projected" / "kube-api-access"
        if not token.exists():
            token.mkdir(parents=True)
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(token)], check=True)
            self.tmpfs.append(str(token))
            (token / "token").write_text("bench")
            (pod / "volumes" / "kubernetes.io~empty-dir" / "data").mkdir(parents=True)
            (pod / "etc-hosts").write_text("127.0.0.1 localhost\n")
        log = pod / "containers" / container / "termination-log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.touch()
        return [(str(token), "/var/run/secrets/kubernetes.io/serviceaccount", True),
                (str(pod / "volumes" / "kubernetes.io~empty-dir" / "data"), "/data", False),
                (str(pod / "etc-hosts"), "/etc/hosts", False), (str(log), "/dev/termination-log", False)]

    def stop(self) -> None:
        try:
            if self.client is not None:
                self.client.close()
            if self.env is not None:
                self.env.destroy()
        finally:
            for p in reversed(self.tmpfs):
                subprocess.run(["umount", "-l", p], check=False)
            subprocess.run(["rm", "-rf", "--one-file-system", str(self.kubelet)], check=False)


class Agent:
    """`nsinspect agent` on a free loopback port, no runtime (a node's namespaces need none)."""

    def __init__(self, nsinspect: list[str], env: dict[str, str]):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.address = f"127.0.0.1:{s.getsockname()[1]}"
        self.proc = subprocess.Popen([*nsinspect, "agent", "--listen", self.address], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sys.path.insert(0, str(HERE.parent))
        import grpc

        from nsinspect.agent.client import AgentEngine

        channel = grpc.insecure_channel(self.address)
        grpc.channel_ready_future(channel).result(timeout=60)
        channel.close()
        self.client = AgentEngine(self.address, timeout=600)  # what `nsinspect --agent ADDR node` asks with

    def get_node(self):
        return self.client.node()

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(30)


def count_mounts() -> int:
    with open("/proc/self/mountinfo") as f:
        return sum(1 for _ in f)


def count_pids() -> int:
    return sum(1 for n in os.listdir("/proc") if n.isdigit())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=int, default=1000)
    ap.add_argument("--per-group", type=int, default=5, help="processes in each group's pid namespace (plus 1 holder)")
    ap.add_argument("--node-mounts", type=int, default=0, help="extra tmpfs mounts in the node's mount namespace first")
    ap.add_argument("--pods", type=int, default=0, help="the realistic node: a private containerd with N pods of 2-3 containers")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--agent", action="store_true", help="also time the agent's warm node (GetNode)")
    ap.add_argument("--pure", action="store_true", help="time the pure-Python scan (no C speed-up)")
    ap.add_argument("--check", action="store_true", help="exit 1 if a budget is missed")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_node.py needs root to create namespaces; run it with sudo.", file=sys.stderr)
        return 2

    scan = benchlib.prepare(args.pure)
    nsinspect, env = benchlib.command(), benchlib.env(args.pure)
    load_before = benchlib.load()
    with tempfile.TemporaryDirectory(prefix="nsinspect-bench-") as d:
        tmp = Path(d)
        populate, floor, samework = build(tmp, "populate"), build(tmp, "floor"), build(tmp, "samework")
        extra = NodeMounts(args.node_mounts)
        pods = None
        try:
            t0 = time.perf_counter()
            pods = Pods(args.pods) if args.pods else None
            made = time.perf_counter() - t0
            node_mounts = count_mounts()
            pop = Population(populate, args.groups, args.per_group)
            try:
                nprocs = count_pids()
                times: dict[str, list[float]] = {"lsns -J": [], "nsinspect node -o json": [], "floor": [], "samework": []}
                last = b""
                agent = Agent(nsinspect, env) if args.agent else None
            except BaseException:
                pop.stop()
                raise
            try:
                if agent is not None:
                    times.update({"agent GetNode (warm)": [], "nsinspect --agent node -o json": []})
                    agent.get_node()  # the agent's first, cold scan
                for _ in range(args.rounds):
                    times["lsns -J"].append(timed(["lsns", "-J"])[0])
                    t, last = timed([*nsinspect, "node", "-o", "json"], env)
                    times["nsinspect node -o json"].append(t)
                    times["floor"].append(timed([str(floor)])[0])
                    t, counts = timed([str(samework)])
                    times["samework"].append(t)
                    if agent is not None:
                        t0 = time.perf_counter()
                        warm_view = agent.get_node()
                        times["agent GetNode (warm)"].append(time.perf_counter() - t0)
                        times["nsinspect --agent node -o json"].append(timed([*nsinspect, "--agent", agent.address, "node", "-o", "json"], env)[0])
                if agent is not None:
                    warm_keys = {(n.type, n.id.ino) for n in warm_view.namespaces}
                    cold_keys = {(n["type"], n["ns"]) for n in json.loads(last)["namespaces"]}
                    same_namespaces = warm_keys == cold_keys
            finally:
                try:
                    if agent is not None:
                        agent.stop()
                finally:
                    pop.stop()
        finally:
            if pods is not None:
                pods.stop()
            extra.stop()

    data = json.loads(last)
    med = {k: statistics.median(v) for k, v in times.items()}
    ours, lsns, fl, same = med["nsinspect node -o json"], med["lsns -J"], med["floor"], med["samework"]
    _procs, _rows, mntns, mounts, _fds = counts.split()
    print(f"machine: {os.cpu_count()} cpus; {nprocs} processes, {len(data['namespaces'])} namespaces; {node_mounts} node mounts, "
          f"{int(mntns)} mount namespaces, {int(mounts)} mounts in all; {args.rounds} rounds; "
          f"load average {load_before} before, {benchlib.load()} after")
    if args.pods:
        print(f"realistic node: {args.pods} pods of 2-3 containers on containerd (made in {made:.0f} s), "
              f"{args.groups} synthetic groups beside them")
    print(f"nsinspect: this checkout, scan loop in {scan}")
    for k, v in med.items():
        print(f"  {k:<24} median {v * 1000:8.1f} ms   (min {min(times[k]) * 1000:.1f}, max {max(times[k]) * 1000:.1f})")
    speedup, vs_floor, vs_same = lsns / ours, ours / fl, ours / same
    # Issue 20's budgets: >= 10x on the realistic node, >= 2x on the synthetic worst case (issue 13's 15x was
    # for the scan alone, before the hidden-namespace passes).
    want = REALISTIC_BUDGET if args.pods and not args.groups else SYNTHETIC_BUDGET  # a mixed node: the synthetic one's
    ok_lsns, ok_same = speedup >= want, vs_same <= 1.3
    print(f"ratio lsns/nsinspect   {speedup:6.1f}x   budget >= {want:g}x   {'ok' if ok_lsns else 'MISSED'}")
    # The readlink floor is the scan's own work only (issue 13's <= 1.5x, from before the hidden-namespace
    # passes): shown for comparison, samework is the budget now.
    print(f"ratio nsinspect/floor  {vs_floor:6.2f}x   (the scan's reads alone; this machine's floor: "
          f"{fl * 1000:.0f} ms for {nprocs} processes, {fl / nprocs * 1e6:.1f} us each)")
    print(f"ratio nsinspect/samework {vs_same:6.2f}x budget <= 1.3x  {'ok' if ok_same else 'MISSED'}   "
          f"(the same reads in C: {same * 1000:.0f} ms)")
    ok_warm = True
    if args.agent:
        warm, warm_cli = med["agent GetNode (warm)"], med["nsinspect --agent node -o json"]
        ok_warm = warm / ours <= 0.1 and same_namespaces
        print(f"ratio warm GetNode/cold {warm / ours:6.3f}x budget <= 0.1x  {'ok' if ok_warm else 'MISSED'}   "
              f"(the CLI through the agent: {warm_cli / ours:.2f}x; same namespaces as the cold scan: {same_namespaces})")
    if args.check and not (ok_lsns and ok_same and ok_warm):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
