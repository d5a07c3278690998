#!/usr/bin/env python3
"""Benchmark nsinspect's start-up against a bare interpreter.

Times, alternately in one run (median of --rounds):
  python -c pass                the same interpreter doing nothing
  nsinspect --version           this checkout, run as its console script does (scripts/benchlib.py)
  nsinspect --help
and prints the ratios against the budget of issue 13: <= 3x the bare interpreter (wall clock; the
ratio of CPU times beside it is steadier on a loaded machine).

The same three again from a bare venv of the same interpreter (its site-packages empty, this
interpreter's on PYTHONPATH, where .pth files are not run): no start-up hooks (an editable
install's finder, a sandbox's certificate hook) import modules before us, so all of our own
imports are counted: the figure for a clean install.

  python3 scripts/bench_startup.py [--rounds 21] [--check]
"""

from __future__ import annotations

import argparse
import os
import site
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib

BUDGET = 3.0


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock seconds, and the CPU seconds (user + system) the process used."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return wall, usage.ru_utime + usage.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--check", action="store_true", help="exit 1 if a budget is missed")
    args = ap.parse_args()
    benchlib.prepare()
    with tempfile.TemporaryDirectory(prefix="nsinspect-bench-") as d:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", d], check=True)
        return run(args, Path(d) / "bin" / "python")


def run(args: argparse.Namespace, venv_python: Path) -> int:
    env = benchlib.env()
    clean = dict(env, PYTHONPATH=os.pathsep.join([str(benchlib.ROOT), *site.getsitepackages()]))
    py, vpy, main_code = sys.executable, str(venv_python), benchlib.CONSOLE_SCRIPT
    runs = {
        "python -c pass": ([py, "-c", "pass"], env),
        "nsinspect --version": ([py, "-c", main_code, "--version"], env),
        "nsinspect --help": ([py, "-c", main_code, "--help"], env),
        "venv: python -c pass": ([vpy, "-c", "pass"], clean),
        "venv: nsinspect --version": ([vpy, "-c", main_code, "--version"], clean),
        "venv: nsinspect --help": ([vpy, "-c", main_code, "--help"], clean),
    }
    load_before = benchlib.load()
    for cmd, e in runs.values():  # warm the page cache
        timed(cmd, e)
    times: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):
        for k, (cmd, e) in runs.items():
            wall, used = timed(cmd, e)
            times[k].append(wall)
            cpu[k].append(used)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"{sys.executable} ({sys.version.split()[0]}); {os.cpu_count()} cpus; {args.rounds} rounds; "
          f"load average {load_before} before, {benchlib.load()} after")
    for k, v in med.items():
        print(f"  {k:<26} median {v * 1000:7.1f} ms   (min {min(times[k]) * 1000:.1f}, max {max(times[k]) * 1000:.1f})   "
              f"CPU {med_cpu[k] * 1000:6.1f} ms")
    ok = True
    for base, prefix, label in (("python -c pass", "", "this interpreter's site"), ("venv: python -c pass", "venv: ", "bare venv")):
        for what in ("--version", "--help"):
            ratio = med[f"{prefix}nsinspect {what}"] / med[base]
            cpu_ratio = med_cpu[f"{prefix}nsinspect {what}"] / med_cpu[base]
            good = ratio <= BUDGET
            ok = ok and good
            print(f"ratio nsinspect {what:<9} / python -c pass  {ratio:5.2f}x   budget <= {BUDGET:g}x   {'ok' if good else 'MISSED'}   "
                  f"({label}; CPU time {cpu_ratio:.2f}x)")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
