"""cgroup v2 on a real containerd: the verdicts read right on a unified hierarchy (docs/cgroup.md).

containerd runs in a mount namespace of its own with cgroup2 at /sys/fs/cgroup; nsinspect runs in
that mount namespace too (nsenter), so it sees the node as a v2 node, as it would on one.
"""

from __future__ import annotations

import json
import time

import pytest
from cri_env import Agent
from helpers import descendants, run_cli, truth

from nsinspect.sharing import SANDBOX_APART

pytestmark = pytest.mark.runtime


def nsi(env, *args):
    return run_cli("-r", env.endpoint, *args, prefix=env.in_mount_ns())


def pod_json(env, name):
    r = nsi(env, "pod", name, "-n", "lab", "-o", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_plain_pod_reads_private_with_the_sandbox_apart(ctrd_v2):
    data = pod_json(ctrd_v2, "plain")
    node = data["node_namespaces"]["cgroup"]
    sandbox, *containers = data["members"]
    assert sandbox["role"] == "sandbox" and sandbox["namespaces"]["cgroup"] == node == truth(sandbox["pid"])["cgroup"]
    cg = [m["namespaces"]["cgroup"] for m in containers]
    assert len(set(cg)) == len(cg) == 2 and node not in cg  # each container its own (the kernel's word)
    assert cg == [truth(m["pid"])["cgroup"] for m in containers]
    assert data["sharing"]["cgroup"] == {**data["sharing"]["cgroup"], "actual": "private", "expected": "private", "ok": True}
    assert SANDBOX_APART in data["notes"]
    assert all(v["ok"] for v in data["sharing"].values()), data["sharing"]


def test_check_cgroup_private_passes_on_v2(ctrd_v2):
    r = nsi(ctrd_v2, "check", "plain", "-n", "lab", "--expect", "cgroup=private", "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout)["results"][0]
    assert res["ok"] and [e["member"] for e in res["evidence"]] == ["web", "sidecar"]
    assert [e["member"] for e in res["apart"]] == ["plain"] and res["apart_reason"] == SANDBOX_APART
    r = nsi(ctrd_v2, "check", "plain", "-n", "lab", "--expect", "cgroup=host")
    assert r.returncode == 1 and "not judged: plain" in r.stdout


def test_host_namespaces_change_nothing_for_cgroup(ctrd_v2):
    data = pod_json(ctrd_v2, "hostns")
    s = data["sharing"]
    assert (s["net"]["actual"], s["pid"]["actual"]) == ("host", "host")
    assert (s["cgroup"]["actual"], s["cgroup"]["expected"], s["cgroup"]["ok"]) == ("private", "private", True)


def test_privileged_container_keeps_the_node_cgroup_namespace(ctrd_v2):
    data = pod_json(ctrd_v2, "privileged")
    node = data["node_namespaces"]["cgroup"]
    by_name = {m["name"]: m["namespaces"]["cgroup"] for m in data["members"]}
    assert by_name["admin"] == node and by_name["app"] != node and by_name["privileged"] == node
    assert (data["sharing"]["cgroup"]["actual"], data["sharing"]["cgroup"]["expected"]) == ("mixed", "mixed")
    assert data["sharing"]["cgroup"]["ok"]


def test_table_says_private_and_why(ctrd_v2):
    r = nsi(ctrd_v2, "pods", "-n", "lab")
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if " plain " in f" {line} ")
    assert "private" in row and "≠" not in row
    r = nsi(ctrd_v2, "pod", "plain", "-n", "lab")
    assert "note: cgroup is judged over the containers" in r.stdout


def test_through_the_agent_the_same(ctrd_v2):
    """The agent (in the v2 node's mount namespace) answers the same verdicts, note and check over gRPC."""
    agent = Agent(ctrd_v2.endpoint, prefix=ctrd_v2.in_mount_ns())
    try:
        r = run_cli("--agent", agent.address, "pod", "plain", "-n", "lab", "-o", "json")
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        assert (data["sharing"]["cgroup"]["actual"], data["sharing"]["cgroup"]["ok"]) == ("private", True)
        assert SANDBOX_APART in data["notes"]
        r = run_cli("--agent", agent.address, "check", "plain", "-n", "lab", "--expect", "cgroup=private", "-o", "json")
        assert r.returncode == 0, r.stdout + r.stderr
        assert [e["member"] for e in json.loads(r.stdout)["results"][0]["apart"]] == ["plain"]
    finally:
        agent.stop()


def test_stray_processes_on_v2(ctrd_v2):
    """Found through the unified hierarchy's cgroup.procs: the kernel's links of the container's other processes."""
    deadline = time.monotonic() + 15
    while True:
        admin = next(m for m in pod_json(ctrd_v2, "stray")["members"] if m["name"] == "admin")
        if len(admin["strays"]) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    with open(f"/proc/{admin['pid']}/cgroup") as f:
        unified = next(line for line in f.read().splitlines() if line.startswith("0::"))
    assert unified not in ("0::", "0::/")  # runc gave it a v2 cgroup of its own: that is where its processes are listed
    ref = truth(admin["pid"])
    kernel = {}
    for pid in descendants(admin["pid"]):
        differs = {t: ino for t, ino in truth(pid).items() if ino is not None and ino != ref[t]}
        if differs:
            kernel[pid] = differs
    assert {s["pid"]: s["differs"] for s in admin["strays"]} == kernel
    assert sorted(sorted(d) for d in kernel.values()) == [["ipc", "uts"], ["net"]]
    r = nsi(ctrd_v2, "pods", "-n", "lab", "-o", "json")
    assert {p["name"]: p["strays"] for p in json.loads(r.stdout)["pods"]}["stray"] == 2
