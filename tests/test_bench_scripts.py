"""The benchmark scripts still run (small sizes; the budgets themselves are for the full run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import require_root

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        ("bench_node.py", ["--groups", "20", "--per-group", "2", "--rounds", "1"], ["ratio lsns/nsinspect", "ratio nsinspect/floor"]),
        ("bench_node.py", ["--groups", "0", "--pods", "2", "--rounds", "1", "--agent"],
         ["realistic node: 2 pods", "budget >= 10x", "ratio warm GetNode/cold", "same namespaces as the cold scan: True"]),
        ("scan_breakdown.py", ["--groups", "10", "--per-group", "2", "--node-mounts", "0", "--rounds", "1"],
         ["links + describe", "relations", "cold CLI / samework"]),
        ("bench_startup.py", ["--rounds", "1"], ["ratio nsinspect --version", "ratio nsinspect --help", "bare venv"]),
        ("bench_pods.py", ["--pods", "2", "--rounds", "1"], ["pods -A", "pod X", "pod --details / pod X"]),
        ("bench_agent.py", ["--pods", "3", "--clients", "2", "--calls", "50"], ["GetPod", "p99", "errors          0", "RSS peak"]),
        ("bench_cluster.py", ["--nodes", "3", "--pods", "2", "--rounds", "1"], ["pod X", "pods -A", "answers", "ratio cluster/local"]),
    ],
)
def test_bench_script_runs_small(script, args, expected):
    require_root()
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for text in expected:
        assert text in r.stdout, (script, text)
