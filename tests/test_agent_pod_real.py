"""The agent as Kubernetes runs it: its image built from this checkout (scripts/agent_image.py, buildah, no Docker
engine), imported into the test containerd, its pod created over CRI from daemonset/daemonset.yaml as kubelet
translates the pod spec (tests/kubelet.py: hostPath mounts, capabilities, no_new_privs, read-only root, the
runtime's default seccomp profile, masked paths, resources, env), probed as kubelet probes it (ExecSync), and
reached as port-forward reaches it (inside its pod's network namespace).  Its answers are compared with the
kernel and with nsinspect run on the node with full root, for the course pods and pods of non-root users.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from cri_env import remove_pod
from helpers import NS_TYPES, cli_json, node_truth, require_root, run_cli, truth
from kubelet import PortForward, Probe, cleanup, pod_template, probe, run, translate
from population import held_fds, ns_rows
from test_daemonset_powers_real import NONROOT, _stray_started

pytestmark = pytest.mark.runtime

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "daemonset" / "daemonset.yaml"
IMAGE_INPUTS = ("Dockerfile", "pyproject.toml", "setup.py", "README.md", "daemonset", "nsinspect")


def _image_key() -> str:
    """What the image is built from: a new checkout content, a new image."""
    h = hashlib.sha256()
    for top in IMAGE_INPUTS:
        p = ROOT / top
        files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file() and "__pycache__" not in q.parts
                                               and q.suffix not in (".so", ".pyc"))
        for f in files:
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def agent_image() -> tuple[Path, str]:
    """The agent's image, built from this checkout without a Docker engine (on a debootstrap base: no registry
    here serves python:3.11-slim); cached by the content it is built from."""
    require_root()
    sys.path.insert(0, str(ROOT / "scripts"))
    import agent_image as recipe

    tag = recipe.default_tag()
    out = recipe.cache_dir() / f"agent-{_image_key()}.tar"
    if not out.exists():
        r = subprocess.run([sys.executable, str(ROOT / "scripts" / "agent_image.py"), "build", "--debootstrap-base",
                            "--out", str(out)], capture_output=True, text=True, timeout=1200)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out, tag


class PodAgent:
    def __init__(self, ctrd, t, ids, pid, forward):
        self.ctrd, self.t, self.ids, self.pid, self.forward = ctrd, t, ids, pid, forward
        self.address = forward.address

    @property
    def cid(self) -> str:
        return self.ids["agent"]

    def logs(self) -> str:
        return container_log(self.t, "agent")


def container_log(t, name: str) -> str:
    """A container's log as the runtime wrote it (CRI's log format), where kubelet asked for it."""
    config = next(c for c in t.containers if c.metadata.name == name)
    path = Path(t.sandbox.log_directory) / config.log_path
    return path.read_text(errors="replace") if path.exists() else ""


def _pid_of(client, cid: str) -> int:
    info = client.container_statuses([cid])[cid].info["info"]
    return int(json.loads(info)["pid"])


@pytest.fixture(scope="module")
def pod_agent(ctrd, agent_image):
    archive, tag = agent_image
    r = ctrd.ctr("-n", "k8s.io", "images", "import", "--all-platforms", str(archive), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert tag in ctrd.ctr("-n", "k8s.io", "images", "ls", "-q", capture_output=True, text=True).stdout
    t = translate(pod_template(MANIFEST), node=os.uname().nodename, image=None, kubelet_dir=ctrd.dir / "kubelet",
                  host_paths={"/run/containerd": str(ctrd.dir)})  # where the test containerd's socket is
    ids: dict[str, str] = {}
    forward = None
    try:
        ids.update(run(ctrd.client, t))
        pid = _pid_of(ctrd.client, ids["agent"])
        a = PodAgent(ctrd, t, ids, pid, PortForward(f"/proc/{pid}/ns/net", 9870))
        forward = a.forward
        readiness = t.probes["agent"]["readinessProbe"]
        deadline = time.monotonic() + 60
        while True:  # kubelet: the readiness probe every periodSeconds until it passes
            res = probe(ctrd.client, a.cid, readiness)
            if res.exit_code == 0:
                break
            assert time.monotonic() < deadline, (res.exit_code, res.stdout, res.stderr, a.logs()[-3000:])
            time.sleep(0.5)
        yield a
    finally:
        if forward is not None:
            forward.close()
        logs = container_log(t, "agent")
        remove_pod(ctrd.client, t.sandbox_id)
        cleanup(t)
    assert "Traceback" not in logs, logs[-3000:]


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in f)}


def test_the_container_has_exactly_the_manifests_powers(pod_agent):
    """What the kernel says of the agent's process: uid 0, SYS_PTRACE only, no_new_privs, a seccomp filter,
    its own pid and network namespaces, the node's user namespace, a read-only root, the host's /proc read-only
    at /host/proc, the memory limit."""
    st = _status(pod_agent.pid)
    assert st["Uid"].split()[0] == "0"
    for key in ("CapEff", "CapPrm", "CapBnd"):
        assert int(st[key], 16) == 1 << 19, (key, st[key])  # CAP_SYS_PTRACE
    assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2"
    mine, node = truth(pod_agent.pid), truth(os.getpid())
    assert mine["pid"] != node["pid"] and mine["net"] != node["net"] and mine["mnt"] != node["mnt"]
    assert mine["user"] == node["user"]
    mounts = {}
    with open(f"/proc/{pod_agent.pid}/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            mounts[fields[4]] = (fields[5].split(","), fields[sep + 1])
    assert "ro" in mounts["/"][0]
    assert mounts["/host/proc"][1] == "proc" and "ro" in mounts["/host/proc"][0]
    assert "ro" in mounts["/host/run/containerd"][0] and "ro" in mounts["/host/sys/fs/cgroup"][0]
    assert mounts["/tmp"][1] == "tmpfs" and "ro" not in mounts["/tmp"][0]
    with open(f"/proc/{pod_agent.pid}/cgroup") as f:
        memcg = next(line.split(":")[2].strip() for line in f if ":memory:" in line or line.startswith("0::"))
    assert pod_agent.t.uid in memcg
    limit = Path(f"/sys/fs/cgroup/memory{memcg}/memory.limit_in_bytes")
    if limit.exists():  # cgroup v1 (this machine)
        assert int(limit.read_text()) == 160 << 20


def test_probes_pass_as_kubelet_runs_them(ctrd, pod_agent):
    for kind, p in pod_agent.t.probes["agent"].items():
        res = probe(ctrd.client, pod_agent.cid, p)
        assert res.exit_code == 0, (kind, res.stdout, res.stderr)


def test_pods_through_the_containerized_agent_are_the_kernels(ctrd, pod_agent):
    _stray_started(ctrd)
    for name in ctrd.pods:
        remote = run_cli("--agent", pod_agent.address, "pod", name, "-n", "lab", "-o", "json")
        assert remote.returncode == 0, (name, remote.stderr)
        data = json.loads(remote.stdout)
        assert data == cli_json("-r", ctrd.endpoint, "pod", name, "-n", "lab"), name
        for m in data["members"]:
            if m["pid"] is not None:
                assert m["namespaces"] == truth(m["pid"]), (name, m["name"])
    for name in NONROOT:
        for fmt in ("table", "tree"):
            remote = run_cli("--agent", pod_agent.address, "pod", name, "-n", "lab", "-o", fmt)
            assert remote.stdout == run_cli("-r", ctrd.endpoint, "pod", name, "-n", "lab", "-o", fmt).stdout, (name, fmt)
    remote = cli_json("--agent", pod_agent.address, "pods", "-A")
    assert remote == cli_json("-r", ctrd.endpoint, "pods", "-A")
    assert any(p["namespace"] == "nsinspect-system" for p in remote["pods"])  # the agent sees its own pod too
    r = run_cli("--agent", pod_agent.address, "check", "nonroot-shared-pid", "-n", "lab", "--expect", "pid=shared",
                "--expect", "mnt=private")
    assert r.returncode == 0, r.stdout + r.stderr


def test_details_through_the_containerized_agent(ctrd, pod_agent):
    for name in ("namespace-demo", "nonroot-demo"):
        data = cli_json("--agent", pod_agent.address, "pod", name, "-n", "lab", "--details")
        full = cli_json("-r", ctrd.endpoint, "pod", name, "-n", "lab", "--details")
        for m, f in zip(data["members"], full["members"], strict=True):
            if m["pid"] is None:
                continue
            d = m["details"]
            for section in ("uts", "ipc"):  # setns needs CAP_SYS_ADMIN, which the manifest does not grant
                assert "CAP_SYS_ADMIN" in d[section]["error"], (name, m["name"], section, d[section])
            for section in ("net", "mnt", "user", "cgroup", "pid"):
                assert d[section] == f["details"][section], (name, m["name"], section)


def test_node_and_pid_through_the_containerized_agent(ctrd, pod_agent, population):
    """Every namespace the kernel shows, as nsinspect reads it with full root on the node, is in the agent's
    answer, or named with the reason it could not be read (an fd of another user whose pid is outside the
    agent's pid namespace: scan.fds_untyped)."""
    full_data = cli_json("node")
    full = ns_rows(full_data)
    data = cli_json("--agent", pod_agent.address, "node")
    mine = ns_rows(data)
    untyped = {u["ns"] for u in data["scan"]["fds_untyped"]}
    missing = [k for k in full if k not in mine and k[1] not in untyped]
    assert not missing, missing
    # Only what full root may not read either (PID 1 here, hidden by the sandbox this machine runs in).
    assert set(data["scan"]["denied_pids"]) <= set(full_data["scan"]["denied_pids"]) and data["scan"]["as_root"] is True
    node = node_truth()
    for pid in population["sleepers"]:
        for t, ino in truth(pid).items():
            # The sleepers' own namespaces hold the same processes in both scans; the node's (their cgroup,
            # time, user) count every process on the machine, which come and go between the two scans.
            if node.get(t) != ino:
                assert mine[(t, ino)]["nprocs"] == full[(t, ino)]["nprocs"], (pid, t)
            else:
                assert (t, ino) in mine, (pid, t)
    pinned = [n for n in mine.values() if any(m["path"] == population["pin"] for m in n["mounts"])]
    assert len(pinned) == 1 and pinned[0]["type"] == "net" and pinned[0]["nprocs"] == 0
    for t, ino in held_fds(population["holder"]).items():
        assert (t, ino) in mine or ino in untyped, t
    for pid in (*population["sleepers"], population["holder"]):
        r = run_cli("--agent", pod_agent.address, "pid", str(pid), "-o", "json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["namespaces"] == truth(pid)
    assert all(t in NS_TYPES for t, _ in mine)


def test_the_containerized_agent_survives_a_bad_client(pod_agent):
    from nsinspect.agent.v1 import agent_pb2 as pb
    from nsinspect.agent.v1 import agent_pb2_grpc as pb_grpc

    with grpc.insecure_channel(pod_agent.address) as channel:
        stub = pb_grpc.InspectorStub(channel)
        with pytest.raises(grpc.RpcError) as e:
            stub.GetPod(pb.GetPodRequest(namespace="lab", name="bad\x1b[31m"), timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as e:
            stub.GetProcess(pb.GetProcessRequest(pid=4194000), timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert run_cli("--agent", pod_agent.address, "pods", "-A").returncode == 0


def test_a_pin_made_after_the_agent_started_reaches_it(ctrd, pod_agent, orphaned):
    """A sandbox whose process is gone, created after the agent's container started: its pinned network
    namespace (/run/netns/cni-*) reaches the agent through the manifest's HostToContainer mount."""
    _pod, app_pid, path = orphaned
    remote = cli_json("--agent", pod_agent.address, "pod", "pinned-demo", "-n", "lab")
    assert remote == cli_json("-r", ctrd.endpoint, "pod", "pinned-demo", "-n", "lab")
    sandbox = remote["members"][0]
    assert sandbox["role"] == "sandbox" and sandbox["pid"] is None and sandbox["pinned"] == {"net": path}
    assert sandbox["namespaces"] == {"net": os.stat(path).st_ino} == {"net": truth(app_pid)["net"]}
    assert remote["sharing"]["net"]["actual"] == "shared"


SYSCALLS = r'''
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
for name, nr in (("pidfd_open", 434), ("pidfd_getfd", 438), ("statmount", 457), ("listmount", 458)):
    libc.syscall(nr, -1, 0, 0, 0)
    print(name, errno.errorcode[ctypes.get_errno()])
'''


def test_which_syscalls_runtime_default_lets_the_agent_make(ctrd, pod_agent):
    """What README says of the runtime's default seccomp profile, asked inside the agent's container with bad
    arguments (a refused call fails with ENOSYS or EPERM before the kernel looks at them): pidfd_open and
    pidfd_getfd pass; listmount and statmount do not on these builds, so the agent reads mountinfo (and the
    answers above are still the kernel's)."""
    res = probe(ctrd.client, pod_agent.cid, Probe(["python3", "-c", SYSCALLS], 10))
    assert res.exit_code == 0, res.stderr
    got = dict(line.split() for line in res.stdout.decode().splitlines())
    assert got["pidfd_open"] == "EINVAL" and got["pidfd_getfd"] == "EBADF", got
    assert got["statmount"] == got["listmount"] == "ENOSYS", (ctrd.version, got)
