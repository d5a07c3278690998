"""A real CRI-O, replayed: what CRI-O 1.37 answered over CRI, and what the kernel said, for the course's pods
(recorded by hand on a CRI-O built from source, with ``drop_infra_ctr`` true and false: docs/crio.md).

Debian ships no CRI-O, so CI cannot run one. The recordings hold each pod's ListPodSandbox item,
PodSandboxStatus and ContainerStatus answers (verbose, trimmed), ListContainers, and the kernel's truth: every
member's pid and namespace inodes and the inode of every path CRI-O pinned. The replay serves those answers
from a fake runtime client, lays the kernel's truth out as a procfs fixture tree and the pins as files under a
host root, and runs the engine over them. What it checks is what nsinspect makes of CRI-O's answers: each member
found at the pid CRI-O named (so its namespaces are the recorded ones), a sandbox without a process given the
namespaces at the paths CRI-O pinned, the roles (an ephemeral container's target, which CRI-O does not echo),
and each type's state equal to the one the recorded inodes make (recomputed from them, not read back from
nsinspect), judged ok against what the pod asked for.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from google.protobuf import json_format
from helpers import make_proc

from nsinspect import NS_TYPES
from nsinspect.agent import convert
from nsinspect.cri.v1 import api_pb2 as pb
from nsinspect.model import PodSpec
from nsinspect.node import procfs
from nsinspect.node.engine import LocalEngine
from nsinspect.sharing import owns_uts, with_declared

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "cri").glob("crio-*.json"))
L_NAME, L_NAMESPACE = "io.kubernetes.pod.name", "io.kubernetes.pod.namespace"


def _status(message, recorded: dict):
    """A status answer from its recording: the trimmed verbose info back into CRI's info map as JSON text."""
    recorded = dict(recorded)
    info = recorded.pop("info", None)
    out = json_format.ParseDict(recorded, message, ignore_unknown_fields=True)
    if info is not None:
        out.info["info"] = json.dumps(info["info"])
    return out


class RecordedCRI:
    """The runtime client's calls the engine makes, answered from a recording."""

    def __init__(self, rec: dict):
        self.runtime = f"{rec['runtime_name']} {rec['runtime_version']}"
        self.sandboxes, self.containers, self.sb_status, self.c_status = [], [], {}, {}
        for p in rec["pods"].values():
            self.sandboxes.append(json_format.ParseDict(p["list_pod_sandbox"], pb.PodSandbox(), ignore_unknown_fields=True))
            self.sb_status[p["sandbox_id"]] = _status(pb.PodSandboxStatusResponse(), p["sandbox_status"])
            for c in p["list_containers"]:
                self.containers.append(json_format.ParseDict(c, pb.Container(), ignore_unknown_fields=True))
            for s in p["container_status"].values():
                st = _status(pb.ContainerStatusResponse(), s)
                self.c_status[st.status.id] = st
        self.calls: list[str] = []

    def list_sandboxes(self, ready_only: bool = False, labels: dict[str, str] | None = None):
        self.calls.append("ListPodSandbox")
        return [sb for sb in self.sandboxes if (not ready_only or sb.state == pb.SANDBOX_READY)
                and all(sb.labels.get(k) == v for k, v in (labels or {}).items())]

    def list_containers(self, sandbox_id: str = ""):
        self.calls.append("ListContainers")
        return [c for c in self.containers if not sandbox_id or c.pod_sandbox_id == sandbox_id]

    def sandbox_statuses(self, ids, verbose: bool = True):
        self.calls.append("PodSandboxStatus")
        return {i: self.sb_status.get(i) for i in ids}

    def container_statuses(self, ids, verbose: bool = True):
        self.calls.append("ContainerStatus")
        return {i: self.c_status.get(i) for i in ids}

    def close(self) -> None:
        pass


class Replay:
    """The recording's kernel laid out: a procfs tree (kthreadd in the node's namespaces, each member's
    process) and CRI-O's pins as files under a host root. The pins are files of the test's filesystem, so
    their inodes are that filesystem's: every recorded inode a pin held is renumbered to its file's (paths of
    one namespace are hard links of one file), everywhere in the recording."""

    def __init__(self, rec: dict, tmp: Path):
        self.rec = rec
        self.proc, self.host = tmp / "proc", tmp / "host"
        self.proc.mkdir()
        files: dict[int, Path] = {}
        self.ino: dict[int, int] = {}
        for p in rec["pods"].values():
            for path, ino in sorted(p["kernel"]["pinned"].items()):
                # Under /run, where /var/run leads on a node (the engine looks there for /var/run/... too).
                where = self.host / path.lstrip("/").replace("var/run/", "run/", 1)
                where.parent.mkdir(parents=True, exist_ok=True)
                if ino in files:
                    os.link(files[ino], where)
                else:
                    where.touch()
                    files[ino] = where
                    self.ino[ino] = where.stat().st_ino
        recorded = {i for p in rec["pods"].values() for m in self.members(p) for i in m["ns"].values()}
        recorded |= set(rec["node_namespaces"].values())
        assert not (set(self.ino.values()) - set(self.ino)) & recorded, "a renumbered inode collides with a recorded one"
        self.dev = os.stat(self.host).st_dev
        make_proc(self.proc, 2, self.links(rec["node_namespaces"]), comm="kthreadd", ppid=0)
        for p in rec["pods"].values():
            for m in self.members(p):
                make_proc(self.proc, m["pid"], self.links(m["ns"]), comm="sleep", ppid=1)

    @staticmethod
    def members(p: dict) -> list[dict]:
        k = p["kernel"]
        return [m for m in [k["sandbox"], *k["containers"].values()] if m]

    def links(self, ns: dict[str, int]) -> dict[str, int | str | None]:
        return {t: self.ino.get(ns[t], ns[t]) for t in NS_TYPES}

    def engine(self, monkeypatch) -> LocalEngine:
        # The nsfs device: the pins' filesystem here (on a node, the one device every namespace is on).
        monkeypatch.setattr(procfs.ProcFS, "nsfs_dev", lambda _self: self.dev)
        e = LocalEngine(proc_root=str(self.proc), host_root=str(self.host), parallel=False, node_name="vm")
        e._client = RecordedCRI(self.rec)
        e._runtime_name = e._client.runtime
        e._cgroup2 = False  # recorded on a cgroup v1 node
        return e


@pytest.fixture(params=FIXTURES, ids=[p.stem for p in FIXTURES])
def replay(request, tmp_path):
    return Replay(json.loads(request.param.read_text()), tmp_path)


POD_NAMES = ("namespace-demo", "shared-pid-demo", "hostnet", "hostpid-ipc", "debugged", "nonroot-demo", "privileged-demo")


def test_every_course_pod_was_recorded(replay):
    rec = replay.rec
    assert rec["runtime_name"] == "cri-o" and owns_uts(rec["runtime_name"])
    assert set(rec["pods"]) == set(POD_NAMES)
    for p in rec["pods"].values():
        assert "error" not in p
        sandbox = p["kernel"]["sandbox"]
        # drop_infra_ctr: no infra process, except where pid=POD needs one (CRI-O: !drop_infra_ctr || pid == POD).
        assert (sandbox is not None) == (not rec["drop_infra_ctr"] or p["request"]["share_pid"])
        if sandbox is None:  # and then the verbose info has no pid at all
            assert "pid" not in p["sandbox_status"]["info"]["info"]
        # uts, ipc and net are always pinned, and every container joins them by those paths.
        kinds = {path.split("/")[3] for path in p["kernel"]["pinned"]}
        assert {"utsns", "ipcns", "netns"} <= kinds


@pytest.mark.parametrize("name", POD_NAMES)
def test_replayed_pod_is_the_kernels(replay, monkeypatch, name):
    rec, p = replay.rec, replay.rec["pods"][name]
    engine = replay.engine(monkeypatch)
    try:
        view = engine.pod(name, "lab")
    finally:
        engine.close()
    kernel = p["kernel"]
    by_name = {m.name: m for m in view.members if m.role != "sandbox"}
    assert set(by_name) == set(kernel["containers"])
    for cname, truth in kernel["containers"].items():
        m = by_name[cname]
        assert m.pid == truth["pid"]
        assert {t: ns.ino for t, ns in m.namespaces.items()} == replay.links(truth["ns"]), cname
    sandbox = next(m for m in view.members if m.role == "sandbox")
    if kernel["sandbox"] is not None:
        assert sandbox.pid == kernel["sandbox"]["pid"] and not sandbox.pinned
        assert {t: ns.ino for t, ns in sandbox.namespaces.items()} == replay.links(kernel["sandbox"]["ns"])
    else:
        # No infra process: the sandbox's namespaces are the ones CRI-O pinned, read at their paths.
        info = p["sandbox_status"]["info"]["info"]["runtimeSpec"]["linux"]["namespaces"]
        spec = {ns["type"].replace("network", "net"): ns["path"] for ns in info if ns.get("path")}
        assert sandbox.pid is None and sandbox.pinned == spec
        assert {t: ns.ino for t, ns in sandbox.namespaces.items()} == {
            t: replay.ino[kernel["pinned"][path]] for t, path in spec.items()}
    # Roles: the debugger is ephemeral, targeting web (CRI-O echoes no target: the kernel tells).
    for c in p["request"]["containers"]:
        m = by_name[c["name"]]
        if c["ephemeral"]:
            assert (m.role, m.target_id) == ("ephemeral", by_name[c["target"]].id)
        else:
            assert m.role == "app" and not m.target_id
    # Each type's state as the kernel's inodes make it ("shared|private": one member, which cannot tell them
    # apart), and what the pod asked for.
    node = {t: replay.ino.get(i, i) for t, i in rec["node_namespaces"].items()}
    for t in NS_TYPES:
        v = view.sharing[t]
        assert v.actual in p["kernel_states"][t].split("|"), (t, v)
        assert v.expected == v.actual and not v.disagreement, (t, v)
    assert {t: ns.ino for t, ns in view.node_namespaces.items()} == node
    assert view.runtime == f"cri-o {rec['runtime_version']}"
    # Through the agent's wire: the same view.
    assert convert.from_pod(convert.to_pod(view)) == view


def test_hostnetwork_uts_on_crio(replay, monkeypatch):
    """CRI-O gives even a hostNetwork pod a UTS namespace of its own (with the node's hostname copied in):
    uts is shared, expected so on CRI-O, and its reason says why."""
    engine = replay.engine(monkeypatch)
    try:
        view = engine.pod("hostnet", "lab")
        check = engine.check("hostnet", "lab", [("uts", "shared"), ("net", "host")])
    finally:
        engine.close()
    v = view.sharing["uts"]
    assert (v.actual, v.expected) == ("shared", "shared") and "CRI-O" in v.reason
    assert view.sharing["net"].actual == "host"
    assert check.ok
    engine = replay.engine(monkeypatch)
    try:
        wrong = engine.check("hostnet", "lab", [("uts", "host")])
    finally:
        engine.close()
    # A failed check's hint says what can be done: not "set hostNetwork" (it is set), but that CRI-O cannot.
    assert not wrong.ok and "CRI-O has no host UTS mode" in wrong.results[0].hint


def test_the_replay_can_fail(replay, monkeypatch):
    """The replay's answers are not bound to agree: the same recording judged by containerd's rules (uts=host for
    hostNetwork) is a disagreement, as nsinspect judged every CRI-O node before it knew CRI-O's habit."""
    engine = replay.engine(monkeypatch)
    engine._runtime_name = "containerd 1.7.24"
    try:
        v = engine.pod("hostnet", "lab").sharing["uts"]
    finally:
        engine.close()
    assert (v.actual, v.expected) == ("shared", "host") and v.disagreement


def test_the_spec_side_on_crio(replay, monkeypatch):
    """Cluster mode lays the spec over the agent's answer: on CRI-O a hostNetwork spec declares uts shared
    (the runtime's habit, said in the reason), so spec, runtime and kernel agree; on containerd it declares host."""
    engine = replay.engine(monkeypatch)
    try:
        view = engine.pod("hostnet", "lab")
    finally:
        engine.close()
    spec = PodSpec(host_network=True)
    v = with_declared(view, spec, False)["uts"]
    assert (v.declared, v.actual) == ("shared", "shared") and "CRI-O" in v.declared_reason and not v.disagreement
    v = with_declared(view._replace(runtime="containerd 2.1.9"), spec, False)["uts"]
    assert v.declared == "host"
