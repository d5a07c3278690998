"""cgroup v2 on a real containerd: the verdicts read right on a unified hierarchy (docs/cgroup.md).

containerd runs in a mount namespace of its own with cgroup2 at /sys/fs/cgroup; nsinspect runs in
that mount namespace too (nsenter), so it sees the node as a v2 node, as it would on one.
"""

from __future__ import annotations

import json

import pytest
from cri_env import Agent
from helpers import run_cli, truth

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
