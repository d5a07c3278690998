"""`pods` across 50 nodes' worth of real agents: bounded concurrency, every answer joined to the
right pod, per-node failures reported without failing the rest, a progress bar on a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import pytest
from cri_env import free_port
from helpers import read_pty, run_cli
from kube_stub import AGENT_NS, Fleet

pytestmark = pytest.mark.runtime

NODES = 50
PODS = ("namespace-demo", "shared-pid-demo", "hostnet")


@pytest.fixture(scope="module")
def fleet(ctrd, tmp_path_factory):
    specs = {"shared-pid-demo": {"shareProcessNamespace": True}, "hostnet": {"hostNetwork": True}}
    f = Fleet(ctrd.endpoint, [ctrd.pods[n] for n in PODS], NODES, specs=specs)
    f.kc = str(f.api.kubeconfig(tmp_path_factory.mktemp("kc") / "kubeconfig", namespace="lab"))
    yield f
    f.stop()
    f.api.close()


def test_fan_out_over_50_nodes_joins_every_answer(ctrd, fleet):
    fleet.api.streams_max = 0
    r = run_cli("--kubeconfig", fleet.kc, "pods", "-o", "json", timeout=120)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["summary"] == {"pods": NODES * len(PODS), "nodes": NODES, "nodes_failed": 0, "pods_not_ok": 0}
    assert sorted(n["node"] for n in d["nodes"]) == fleet.nodes and all(n["ok"] for n in d["nodes"])
    # Bounded: never more port-forwards at once than the engine's concurrency.
    from nsinspect.cluster.engine import CONCURRENCY

    assert 1 < fleet.api.streams_max <= CONCURRENCY
    # Each row is the runtime's pod with that uid, as local mode sees it on the node.
    local = json.loads(run_cli("-r", ctrd.endpoint, "pods", "-n", "lab", "-o", "json").stdout)
    by_uid = {p["uid"]: p for p in local["pods"]}
    for p in d["pods"]:
        mine = by_uid[p["uid"]]
        assert p["members"] == mine["members"] and p["running"] == mine["running"]
        assert {t: v["actual"] for t, v in p["sharing"].items()} == {t: v["actual"] for t, v in mine["sharing"].items()}
        assert p["ok"] and all(v["declared"] is not None for t, v in p["sharing"].items() if t in ("net", "pid", "ipc"))
    assert {p["node"] for p in d["pods"]} == set(fleet.nodes)


def test_failed_nodes_are_reported_and_the_rest_answer(fleet):
    broken = ["node-07", "node-31"]
    saved = {n: fleet.api.backends[(AGENT_NS, f"nsinspect-agent-{n}")] for n in broken}
    try:
        for n in broken:  # the agent pod is there, but nothing listens behind its port
            fleet.api.backends[(AGENT_NS, f"nsinspect-agent-{n}")] = {9870: ("127.0.0.1", free_port())}
        r = run_cli("--kubeconfig", fleet.kc, "pods", "-o", "json", timeout=120)
    finally:
        fleet.api.backends.update({(AGENT_NS, f"nsinspect-agent-{n}"): b for n, b in saved.items()})
    assert r.returncode == 4
    assert "2 of 50 nodes could not be asked" in r.stderr and "Traceback" not in r.stderr
    d = json.loads(r.stdout)
    failed = {n["node"]: n["error"] for n in d["nodes"] if not n["ok"]}
    assert sorted(failed) == broken and all("did not accept the connection" in e for e in failed.values())
    for p in d["pods"]:
        if p["node"] in broken:
            assert p["members"] == 0 and "did not answer" in p["notes"][0]
        else:
            assert p["members"] > 0 and p["ok"]
    r = run_cli("--kubeconfig", fleet.kc, "pods")
    assert r.returncode == 0 and f"{NODES * len(PODS)} pods in namespace lab on {NODES} nodes; {NODES} answered" in r.stdout


def test_progress_bar_on_a_terminal(fleet, tmp_path):
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "NSINSPECT_NO_PROGRESS")}
    out_file = open(tmp_path / "out.json", "w+")
    p = subprocess.Popen([sys.executable, "-m", "nsinspect", "--kubeconfig", fleet.kc, "pods", "-o", "json"],
                         stdout=out_file, stderr=slave, env=env)
    os.close(slave)
    seen = read_pty(master)
    assert p.wait(60) == 0
    out = (tmp_path / "out.json").read_text()
    os.close(master)
    assert b"asking agents" in seen and b"/50" in seen
    assert json.loads(out)["summary"]["nodes"] == NODES  # stdout stays clean JSON
