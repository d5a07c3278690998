"""The benchmark scripts still run (small sizes; the budgets themselves are for the full run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import require_root

ROOT = Path(__file__).resolve().parent.parent


def test_bench_node_runs_small():
    require_root()
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_node.py"), "--groups", "20", "--per-group", "2", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "ratio lsns/nsinspect" in r.stdout and "ratio nsinspect/floor" in r.stdout


def test_bench_pods_runs_small():
    require_root()
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_pods.py"), "--pods", "2", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "pods -A" in r.stdout and "pod X" in r.stdout
