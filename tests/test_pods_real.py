"""Pods on a real containerd (started by the suite), compared with readlink of the real pids."""

from __future__ import annotations

import json
import os
import re

import pytest
from cri_env import USERNS_HOST_ID, USERNS_LENGTH, ContainerSpec, remove_pod, run_pod
from helpers import NS_TYPES, assert_one_sentence_error, node_truth, run_cli, truth

pytestmark = pytest.mark.runtime


def nsi(env, *args):
    return run_cli("-r", env.endpoint, *args)


def pod_json(env, name, ns="lab"):
    r = nsi(env, "pod", name, "-n", ns, "-o", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_pod_json_matches_kernel(ctrd):
    for name, pod in ctrd.pods.items():
        data = pod_json(ctrd, name)
        assert data["pod"]["name"] == name and data["pod"]["uid"] == pod.uid and data["pod"]["sandbox_id"] == pod.sandbox_id
        roles = {m["name"]: m["role"] for m in data["members"]}
        assert data["members"][0]["role"] == "sandbox" and data["members"][0]["id"] == pod.sandbox_id
        for m in data["members"]:
            if m["state"] in ("running", "ready"):
                assert m["pid"] is not None and m["namespaces"] == truth(m["pid"]), (name, m["name"])
            else:
                assert m["pid"] is None and m["namespaces"] == {}
        assert set(data["sharing"]) == set(NS_TYPES)
        for c in pod.containers:
            assert c in roles
        # The verdicts agree with the inodes read here.
        running = [m for m in data["members"] if m["pid"]]
        node = node_truth()
        for t in NS_TYPES:
            inos = [m["namespaces"][t] for m in running]
            if all(i == node[t] for i in inos):
                want = "host"
            elif len(set(inos)) == 1:
                want = "shared"
            elif len(set(inos)) == len(inos) and node[t] not in inos:
                want = "private"
            else:
                want = "mixed"
            assert data["sharing"][t]["actual"] == want, (name, t)


def expected_of(data):
    return {t: v["expected"] for t, v in data["sharing"].items()}


def test_course_situations(ctrd):
    demo = pod_json(ctrd, "namespace-demo")
    assert {t: v["actual"] for t, v in demo["sharing"].items() if t in ("net", "ipc", "uts", "pid", "mnt")} == {
        "net": "shared", "ipc": "shared", "uts": "shared", "pid": "private", "mnt": "private"
    }
    # The course's simplification: user (and cgroup on v1) are the node's, not "not shared".
    assert demo["sharing"]["user"]["actual"] == "host" and demo["sharing"]["time"]["actual"] == "host"
    assert all(v["ok"] for v in demo["sharing"].values())
    shared = pod_json(ctrd, "shared-pid-demo")
    assert shared["sharing"]["pid"] == {**shared["sharing"]["pid"], "actual": "shared", "expected": "shared", "ok": True}
    hostnet = pod_json(ctrd, "hostnet")
    assert hostnet["sharing"]["net"]["actual"] == "host" and hostnet["sharing"]["uts"]["actual"] == "host"
    assert all(v["ok"] for v in hostnet["sharing"].values())
    hp = pod_json(ctrd, "hostpid-ipc")
    assert hp["sharing"]["pid"]["actual"] == "host" and hp["sharing"]["ipc"]["actual"] == "host"
    assert all(v["ok"] for v in hp["sharing"].values())


def test_init_containers_exited(ctrd):
    data = pod_json(ctrd, "with-init")
    roles = {m["name"]: (m["role"], m["state"], m["pid"]) for m in data["members"]}
    assert roles["setup"] == ("init", "exited", None) and roles["migrate"] == ("init", "exited", None)
    assert roles["app"][0] == "app" and roles["app"][2] is not None
    assert all(v["ok"] for v in data["sharing"].values())


def test_ephemeral_debug_container(ctrd):
    data = pod_json(ctrd, "debugged")
    by = {m["name"]: m for m in data["members"]}
    dbg, web, cache = by["debugger"], by["web"], by["cache"]
    assert dbg["role"] == "ephemeral" and dbg["target_id"] == ctrd.pods["debugged"].containers["web"]
    assert dbg["namespaces"]["pid"] == web["namespaces"]["pid"] == truth(web["pid"])["pid"]
    assert cache["namespaces"]["pid"] != web["namespaces"]["pid"]
    assert data["sharing"]["pid"] == {**data["sharing"]["pid"], "actual": "mixed", "expected": "mixed", "ok": True}


def test_check_exit_codes(ctrd):
    r = nsi(ctrd, "check", "shared-pid-demo", "-n", "lab", "--expect", "pid=shared", "--expect", "net=shared")
    assert r.returncode == 0 and "✓" in r.stdout
    r = nsi(ctrd, "check", "namespace-demo", "-n", "lab", "--expect", "pid=shared")
    assert r.returncode == 1 and "✗" in r.stdout and "shareProcessNamespace" in r.stdout
    web = next(m for m in pod_json(ctrd, "namespace-demo")["members"] if m["name"] == "web")
    assert str(truth(web["pid"])["pid"]) in r.stdout  # the inodes are the evidence
    r = nsi(ctrd, "check", "namespace-demo", "-n", "lab", "--expect", "pid=everything")
    assert_one_sentence_error(r, 2)
    r = nsi(ctrd, "check", "namespace-demo", "-n", "lab")
    assert_one_sentence_error(r, 2)
    r = nsi(ctrd, "check", "no-such-pod", "-n", "lab", "--expect", "pid=shared")
    assert_one_sentence_error(r, 3)
    data = json.loads(nsi(ctrd, "check", "hostnet", "-n", "lab", "--expect", "net=host", "-o", "json").stdout)
    assert data["ok"] is True and data["results"][0]["actual"] == "host"


def test_not_found_and_hints(ctrd):
    r = nsi(ctrd, "pod", "namespace-demo")  # default namespace
    assert_one_sentence_error(r, 3)
    assert "-n lab" in r.stderr
    r = nsi(ctrd, "pod", "namespace-demo", "-n", "lab", "-c", "nope")
    assert_one_sentence_error(r, 3)
    data = json.loads(nsi(ctrd, "pod", "namespace-demo", "-n", "lab", "-c", "web", "-o", "json").stdout)
    assert [m["name"] for m in data["members"]] == ["namespace-demo", "web"]


def test_runtime_unavailable(tmp_path):
    r = run_cli("-r", f"unix://{tmp_path}/none.sock", "pods")
    assert_one_sentence_error(r, 4)
    assert "none.sock" in r.stderr


def test_pods_list(ctrd):
    r = nsi(ctrd, "pods", "-A", "-o", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    names = {p["name"] for p in data["pods"]}
    assert set(ctrd.pods) <= names
    assert all(p["ok"] for p in data["pods"] if p["name"] in ctrd.pods)
    table = nsi(ctrd, "pods", "-n", "lab").stdout
    assert "namespace-demo" in table and "NAMESPACE" in table


def test_pid_and_node_attribution(ctrd):
    data = pod_json(ctrd, "namespace-demo")
    web = next(m for m in data["members"] if m["name"] == "web")
    r = nsi(ctrd, "pid", str(web["pid"]), "-o", "json")
    pid = json.loads(r.stdout)
    assert pid["namespaces"] == truth(web["pid"])
    assert pid["pod"] == {"namespace": "lab", "name": "namespace-demo", "uid": ctrd.pods["namespace-demo"].uid}
    assert pid["container"] == {"name": "web", "id": web["id"]}
    assert json.loads(nsi(ctrd, "pid", "2", "-o", "json").stdout)["pod"] is None
    node = json.loads(nsi(ctrd, "node", "-t", "net", "-o", "json").stdout)
    row = next(r for r in node["namespaces"] if r["ns"] == web["namespaces"]["net"])
    assert {"namespace": "lab", "name": "namespace-demo"} in row["pods"]
    assert "web" in {c["name"] for c in row["containers"]}
    assert "namespace-demo" in nsi(ctrd, "node", "-t", "net").stdout


def test_verbose_blob_is_not_kept(ctrd):
    """The verbose info carries the environment: nothing of it may reach any output."""
    for fmt in ("json", "yaml", "wide"):
        out = nsi(ctrd, "pod", "namespace-demo", "-n", "lab", "-o", fmt).stdout
        assert "do-not-leak" not in out and "SECRET_TOKEN" not in out


def test_deleted_pod_is_not_found(ctrd):
    pod = run_pod(ctrd.client, "short-lived", containers=[ContainerSpec("app")])
    assert nsi(ctrd, "pod", "short-lived", "-n", "lab").returncode == 0
    remove_pod(ctrd.client, pod.sandbox_id)
    assert_one_sentence_error(nsi(ctrd, "pod", "short-lived", "-n", "lab"), 3)


def test_wide_shows_lsns_view_of_the_pod(ctrd):
    data = pod_json(ctrd, "namespace-demo")
    web = next(m for m in data["members"] if m["name"] == "web")
    out = nsi(ctrd, "pod", "namespace-demo", "-n", "lab", "-o", "wide").stdout
    assert "NPROCS" in out
    net = web["namespaces"]["net"]
    line = next(line for line in out.splitlines() if line.strip().startswith(str(net)) and " net " in line)
    from helpers import readlink_ns

    in_net = sum(1 for p in os.listdir("/proc") if p.isdigit() and readlink_ns(int(p), "net") == net)
    assert int(line.split()[2]) == in_net >= 3


def _file_map(pid, name):
    """/proc/<pid>/uid_map (or gid_map) as the JSON contract writes it, read here."""
    with open(f"/proc/{pid}/{name}") as f:
        rows = [line.split() for line in f if line.strip()]
    return [{"inside": int(a), "outside": int(b), "length": int(c)} for a, b, c in rows]


def test_userns_pod(ctrd):
    """A hostUsers: false pod (CRI userns_options mode POD, as kubelet sends it to the sandbox and every
    container).  containerd 2.x advertises user namespaces to kubelet and runs it in a user namespace of its
    own; 1.7 advertises nothing (kubelet would refuse the pod) but, asked anyway, runs it so; 1.6 drops the
    request and runs it in the node's.  nsinspect shows each as the kernel has it."""
    from nsinspect.cri.v1 import api_pb2 as pb

    rid = ctrd.runtime.id
    handlers = {h.name: h.features.user_namespaces for h in ctrd.client.stub.Status(pb.StatusRequest(), timeout=10).runtime_handlers}
    assert handlers == ({"": True, "runc": True} if rid == "2.x" else {}), handlers
    data = pod_json(ctrd, "userns-demo")
    node = node_truth()
    running = [m for m in data["members"] if m["pid"]]
    assert [m["name"] for m in running] == ["userns-demo", "app", "sidecar"]
    for m in running:
        assert m["namespaces"]["user"] == readlink_user(m["pid"]), m["name"]
        assert m["uid_map"] == _file_map(m["pid"], "uid_map") and m["gid_map"] == _file_map(m["pid"], "gid_map")
    user = data["sharing"]["user"]
    check = nsi(ctrd, "check", "userns-demo", "-n", "lab", "--expect", "user=shared")
    if rid == "1.6":
        # containerd 1.6 drops userns_options: its status echoes none, and the members keep the node's
        # user namespace (kubelet would not send it: the runtime advertises no user-namespace support).
        st = ctrd.client.stub.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=ctrd.pods["userns-demo"].sandbox_id))
        assert not st.status.linux.namespaces.options.HasField("userns_options")
        assert all(m["namespaces"]["user"] == node["user"] for m in running)
        assert all(m["uid_map"] == [{"inside": 0, "outside": 0, "length": 4294967295}] for m in running)
        assert data["pod"]["namespace_options"]["userns"] == "NODE" and data["pod"]["userns_mappings"] is None
        assert (user["actual"], user["expected"], user["ok"], user["evidence"]) == ("host", "host", True, None)
        assert check.returncode == 1 and "hint: set spec.hostUsers: false" in check.stdout, check.stdout
        return
    mapping = [{"inside": 0, "outside": USERNS_HOST_ID, "length": USERNS_LENGTH}]
    assert len({m["namespaces"]["user"] for m in running}) == 1 and running[0]["namespaces"]["user"] != node["user"]
    assert all(m["uid_map"] == mapping and m["gid_map"] == mapping for m in running)
    assert data["pod"]["namespace_options"]["userns"] == "POD"
    assert data["pod"]["userns_mappings"] == {"uids": mapping, "gids": mapping}
    one = f"0 {USERNS_HOST_ID} {USERNS_LENGTH}"
    evidence = f"root in the pod is uid {USERNS_HOST_ID} on the node (uid_map {one}; gid_map {one})"
    assert (user["actual"], user["expected"], user["ok"], user["evidence"]) == ("shared", "shared", True, evidence)
    # The pod's root really is that uid on the node.
    assert all(_status_ids(m["pid"]) == (USERNS_HOST_ID, USERNS_HOST_ID) for m in running)
    assert check.returncode == 0, check.stdout + check.stderr
    table = nsi(ctrd, "pod", "userns-demo", "-n", "lab")
    assert table.returncode == 0 and f"user: {evidence}" in table.stdout, table.stdout
    ino = running[0]["namespaces"]["user"]
    assert re.search(rf"^ user +{ino} =a +{ino} =a +{ino} =a +shared +shared +✓$", table.stdout, re.M), table.stdout


def readlink_user(pid):
    return int(os.readlink(f"/proc/{pid}/ns/user")[len("user:["):-1])


def _status_ids(pid):
    """The process's real uid and gid as the node sees them (/proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])
