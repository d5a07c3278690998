#!/usr/bin/env python3
"""Where a cold `nsinspect node -o json` spends its time, per pass, at several node mount counts.

For each --node-mounts value: adds tmpfs mounts to the node's mount namespace until its table has that
many (the machine's own mounts count; a value below them measures the table as it is), populates
GROUPS groups (scripts/c/populate.c, as scripts/bench_node.py does), then runs the node view in this
process, serially (one worker, so that each pass is measured alone), with a timer around each pass:

  links + describe   the ns links of every process, then each namespace's lowest pid (stat, cmdline)
  fds                every process's fd table (getdents64 + readlinkat)
  mounts             every mount namespace's nsfs mounts (listmount + statmount, or mountinfo)
  relations          the parent and owner of every namespace (NS_GET_PARENT / NS_GET_USERNS)
  complete           ours: rows of the namespaces only a mount or fd holds, merging, sorting
  json               ours: the rows as the CLI's JSON
(listing /proc, the node's namespaces and merging the slices are not timed: "sum of the passes" is less than
the view's whole time; the ioctls of rows only a mount or fd holds count in "complete")

and, beside them, the CLI as users run it (wall and CPU of the children, median of ROUNDS), its
start-up alone (`--version`), and samework (scripts/c/samework.c: the same reads, the cheapest way).
Each pass's CPU is split into user and system time (getrusage): system time is the kernel's work.

  sudo python3 scripts/scan_breakdown.py [--groups 1000] [--node-mounts 130,400,700] [--pods 0] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib
from bench_node import NodeMounts, Pods, Population, build, count_mounts

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

PASSES = ("links + describe", "fds", "mounts", "relations", "complete", "json")


class Timers:
    """Accumulated wall, user and system time per pass, wrapped around module functions."""

    def __init__(self) -> None:
        self.spent: dict[str, list[float]] = {p: [0.0, 0.0, 0.0] for p in PASSES}
        self._undo: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, attr: str, name: str) -> None:
        fn = getattr(owner, attr)

        def timed(*a, **kw):
            t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            try:
                return fn(*a, **kw)
            finally:
                c1 = resource.getrusage(resource.RUSAGE_SELF)
                s = self.spent[name]
                s[0] += time.perf_counter() - t0
                s[1] += c1.ru_utime - c0.ru_utime
                s[2] += c1.ru_stime - c0.ru_stime

        self._undo.append((owner, attr, fn))
        setattr(owner, attr, timed)

    def undo(self) -> None:
        for owner, attr, fn in reversed(self._undo):
            setattr(owner, attr, fn)


def in_process(rounds: int) -> dict[str, tuple[float, float, float]]:
    """Median per pass over ``rounds`` serial node views: (wall, user, system) seconds."""
    from nsinspect.node import discover, hidden, procfs
    from nsinspect.node.procfs import ProcFS
    from nsinspect.render import data

    runs: list[dict[str, list[float]]] = []
    for _ in range(rounds):
        t = Timers()
        t.wrap(procfs, "scan_slice", "links + describe")
        t.wrap(hidden, "fd_holders", "fds")
        t.wrap(hidden, "bind_mounts", "mounts")
        if procfs._c is not None:
            t.wrap(procfs._c, "relations", "relations")
        t.wrap(hidden, "complete", "complete")
        t.wrap(data, "node_json", "json")
        proc = ProcFS("/proc")
        try:
            view = discover.node_view(proc, parallel=False)
            data.node_json(view)
        finally:
            proc.close()
            t.undo()
        # complete() includes nothing of the others; relations run inside the slice pass, after the mounts.
        runs.append(t.spent)
    return {p: tuple(statistics.median(r[p][i] for r in runs) for i in range(3)) for p in PASSES}  # type: ignore[misc]


def cli(cmd: list[str], env: dict[str, str], rounds: int) -> tuple[float, float, float]:
    """Median wall, user and system time of a command (its children included)."""
    walls, users, systems = [], [], []
    for _ in range(rounds):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
        walls.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        users.append(r1.ru_utime - r0.ru_utime)
        systems.append(r1.ru_stime - r0.ru_stime)
    return statistics.median(walls), statistics.median(users), statistics.median(systems)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=int, default=1000)
    ap.add_argument("--per-group", type=int, default=5)
    ap.add_argument("--node-mounts", default="130,400,700", help="node mount table sizes to measure at, comma-separated")
    ap.add_argument("--pods", type=int, default=0, help="first, the realistic node of scripts/bench_node.py --pods N")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("scan_breakdown.py needs root to create namespaces; run it with sudo.", file=sys.stderr)
        return 2
    scan = benchlib.prepare(False)
    nsinspect, env = benchlib.command(), benchlib.env(False)
    print(f"machine: {os.cpu_count()} cpus; load average {benchlib.load()}; scan loop in {scan}; "
          f"{args.groups} groups x {args.per_group}; medians of {args.rounds}")
    pods = Pods(args.pods) if args.pods else None
    try:
        breakdown(args, nsinspect, env, pods is not None)
    finally:
        if pods is not None:
            pods.stop()
    return 0


def breakdown(args: argparse.Namespace, nsinspect: list[str], env: dict[str, str], pods: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="nsinspect-breakdown-") as d:
        populate, samework = build(Path(d), "populate"), build(Path(d), "samework")
        for wanted in (int(x) for x in args.node_mounts.split(",")):
            mounts = NodeMounts(max(0, wanted - count_mounts()))
            try:
                node_mounts = count_mounts()
                pop = Population(populate, args.groups, args.per_group)
                try:
                    start = cli([*nsinspect, "--version"], env, args.rounds)
                    whole = cli([*nsinspect, "node", "-o", "json"], env, args.rounds)
                    same = cli([str(samework)], env, args.rounds)
                    counts = subprocess.run([str(samework)], check=True, capture_output=True, text=True).stdout.split()
                    parts = in_process(args.rounds)
                finally:
                    pop.stop()
            finally:
                mounts.stop()
            print(f"\n{node_mounts} node mounts; {counts[2]} mount namespaces, {counts[3]} mounts in all, {counts[0]} processes"
                  + (f"; {args.pods} pods" if pods else ""))
            print(f"  {'part':<22} {'wall ms':>8} {'user ms':>8} {'sys ms':>8}")
            for name, (w, u, s) in parts.items():
                print(f"  {name:<22} {w * 1000:8.1f} {u * 1000:8.1f} {s * 1000:8.1f}")
            w = sum(p[0] for p in parts.values())
            print(f"  {'sum of the passes':<22} {w * 1000:8.1f}")
            for name, (w, u, s) in (("CLI --version", start), ("CLI node -o json", whole), ("samework (C)", same)):
                print(f"  {name:<22} {w * 1000:8.1f} {u * 1000:8.1f} {s * 1000:8.1f}")
            print(f"  cold CLI / samework: wall {whole[0] / same[0]:.2f}x, CPU {(whole[1] + whole[2]) / (same[1] + same[2]):.2f}x; "
                  f"kernel share of the CLI's CPU {whole[2] / (whole[1] + whole[2]):.0%}")
            print(json.dumps({"node_mounts": node_mounts, "parts": parts, "cli": whole, "startup": start, "samework": same}))


if __name__ == "__main__":
    sys.exit(main())
