"""The agent on the real test containerd: same answers as local mode, the kernel's truth,
status codes, a runtime that stops and comes back, deleted pods, bad requests, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from cri_env import Agent, Containerd, ContainerSpec, add_container, remove_pod, require_runtime, run_pod
from helpers import assert_one_sentence_error, require_root, run_cli, truth

pytestmark = pytest.mark.runtime

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def agent(ctrd):
    a = Agent(ctrd.endpoint)
    yield a
    assert a.stop() == 0
    assert "do-not-leak" not in a.logs() and "SECRET_TOKEN" not in a.logs()


@pytest.fixture(scope="module")
def stub(agent):
    from nsinspect.agent.v1 import agent_pb2 as pb
    from nsinspect.agent.v1 import agent_pb2_grpc as pb_grpc

    channel = grpc.insecure_channel(agent.address)
    yield pb, pb_grpc.InspectorStub(channel)
    channel.close()


def both(ctrd, agent, *args):
    """The same command in local mode and through the agent."""
    local = run_cli("-r", ctrd.endpoint, *args)
    remote = run_cli("--agent", agent.address, *args)
    return local, remote


def test_agent_answers_equal_local_mode(ctrd, agent):
    for name in ctrd.pods:
        for fmt in ("json", "table", "yaml", "tree"):
            local, remote = both(ctrd, agent, "pod", name, "-n", "lab", "-o", fmt)
            assert local.returncode == remote.returncode == 0, (local.stderr, remote.stderr)
            assert remote.stdout == local.stdout, (name, fmt)
    local, remote = both(ctrd, agent, "pods", "-A", "-o", "json")
    assert json.loads(remote.stdout) == json.loads(local.stdout)
    local, remote = both(ctrd, agent, "check", "shared-pid-demo", "-n", "lab", "--expect", "pid=shared", "--expect", "net=private")
    assert local.returncode == remote.returncode == 1 and remote.stdout == local.stdout


def test_agent_answers_match_the_kernel(ctrd, agent):
    for name in ctrd.pods:
        r = run_cli("--agent", agent.address, "pod", name, "-n", "lab", "-o", "json")
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        running = [m for m in data["members"] if m["pid"] is not None]
        assert running, name
        for m in running:
            assert m["namespaces"] == truth(m["pid"]), (name, m["name"])


def test_pid_and_node_through_the_agent(ctrd, agent):
    pod = json.loads(run_cli("--agent", agent.address, "pod", "namespace-demo", "-n", "lab", "-o", "json").stdout)
    web = next(m for m in pod["members"] if m["name"] == "web")
    local, remote = both(ctrd, agent, "pid", str(web["pid"]), "-o", "json")
    assert remote.returncode == 0 and json.loads(remote.stdout) == json.loads(local.stdout)
    assert json.loads(remote.stdout)["container"]["name"] == "web"
    r = run_cli("--agent", agent.address, "node", "-t", "net", "-o", "json")
    assert r.returncode == 0, r.stderr
    rows = {n["ns"]: n for n in json.loads(r.stdout)["namespaces"]}
    assert rows[web["namespaces"]["net"]]["pods"] == [{"namespace": "lab", "name": "namespace-demo"}]


THIRD_PARTY = """
import json, os, sys
sys.path.insert(0, os.getcwd())
import grpc
from nsinspect.agent.v1 import agent_pb2 as pb, agent_pb2_grpc
assert pb.__file__.startswith(os.getcwd()), pb.__file__
stub = agent_pb2_grpc.InspectorStub(grpc.insecure_channel(sys.argv[1]))
reply = stub.GetPod(pb.GetPodRequest(namespace="lab", name="namespace-demo"), timeout=10)
by_uid = stub.GetPod(pb.GetPodRequest(namespace="lab", name="namespace-demo", uid=reply.pod.uid), timeout=10)
pods = stub.ListPods(pb.ListPodsRequest(namespace="lab"), timeout=10)
proc = stub.GetProcess(pb.GetProcessRequest(pid=os.getpid()), timeout=10)
print(json.dumps({
    "name": reply.pod.name, "namespace": reply.pod.namespace, "node": reply.pod.node, "runtime": reply.runtime,
    "members": [{"role": m.role, "pid": m.process.id.pid, "ns": {t: m.namespaces[t].ino for t in m.namespaces}}
                for m in reply.members],
    "net": reply.sharing["net"].actual, "pid_expected": reply.sharing["pid"].expected,
    "same_sandbox": by_uid.pod.sandbox_id == reply.pod.sandbox_id,
    "pods": sorted(p.pod.name for p in pods.pods),
    "self": proc.process.id.pid == os.getpid() and not proc.HasField("pod"),
}))
"""


def test_a_client_built_from_proto_alone(ctrd, agent, tmp_path):
    """A third party's client: code generated from proto/ alone, in another directory and process."""
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}", f"--python_out={tmp_path}",
         f"--grpc_python_out={tmp_path}", str(ROOT / "proto" / "nsinspect" / "agent" / "v1" / "agent.proto")],
        check=True,
    )
    for pkg in ("nsinspect", "nsinspect/agent", "nsinspect/agent/v1"):  # make it a package, so no installed nsinspect can shadow it
        (tmp_path / pkg / "__init__.py").touch()
    (tmp_path / "client.py").write_text(THIRD_PARTY)
    r = subprocess.run([sys.executable, "-I", "client.py", agent.address], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert (got["name"], got["namespace"]) == ("namespace-demo", "lab") and got["node"]
    assert got["runtime"].startswith("containerd")
    assert {m["role"] for m in got["members"]} == {"sandbox", "app"}
    for m in got["members"]:
        assert m["ns"] == truth(m["pid"])
    assert got["net"] == "shared" and got["pid_expected"] == "private" and got["same_sandbox"] and got["self"]
    assert {"namespace-demo", "shared-pid-demo"} <= set(got["pods"])


def code_of(call, request):
    with pytest.raises(grpc.RpcError) as e:
        call(request, timeout=10)
    return e.value.code(), e.value.details()


def test_status_codes_for_bad_and_unknown_requests(stub):
    pb, inspector = stub
    INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    assert code_of(inspector.GetPod, pb.GetPodRequest(namespace="lab", name=""))[0] == INVALID
    assert code_of(inspector.GetPod, pb.GetPodRequest(namespace="", name="web"))[0] == INVALID
    assert code_of(inspector.GetPod, pb.GetPodRequest(namespace="lab", name="x" * 254))[0] == INVALID
    assert code_of(inspector.GetPod, pb.GetPodRequest(namespace="lab", name="bad\x1b[31m"))[0] == INVALID
    assert code_of(inspector.GetProcess, pb.GetProcessRequest(pid=-1))[0] == INVALID
    assert code_of(inspector.GetProcess, pb.GetProcessRequest(pid=0))[0] == INVALID
    assert code_of(inspector.GetProcess, pb.GetProcessRequest(pid=1 << 40))[0] == INVALID
    assert code_of(inspector.GetNode, pb.GetNodeRequest(types=["bogus"]))[0] == INVALID
    # Oversized requests never reach the service: gRPC refuses them (64 KiB limit).
    assert code_of(inspector.GetPod, pb.GetPodRequest(namespace="lab", name="x" * (1 << 20)))[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    code, details = code_of(inspector.GetPod, pb.GetPodRequest(namespace="lab", name="no-such-pod"))
    assert code == NOT_FOUND and "no-such-pod" in details
    assert code_of(inspector.GetPod, pb.GetPodRequest(namespace="lab", name="namespace-demo", uid="not-its-uid"))[0] == NOT_FOUND
    assert code_of(inspector.GetPod, pb.GetPodRequest(namespace="lab", name="namespace-demo", container="nope"))[0] == NOT_FOUND
    # Above PID_MAX_LIMIT no kernel gives the pid: malformed. Below it, a pid that does not exist: not found.
    assert code_of(inspector.GetProcess, pb.GetProcessRequest(pid=(1 << 22) + 7))[0] == INVALID
    assert code_of(inspector.GetProcess, pb.GetProcessRequest(pid=(1 << 22) - 304))[0] == NOT_FOUND


def test_client_errors_have_contract_exit_codes(agent):
    r = run_cli("--agent", agent.address, "pod", "no-such-pod", "-n", "lab")
    assert_one_sentence_error(r, 3)
    r = run_cli("--agent", agent.address, "pid", "-5")
    assert r.returncode == 2
    r = run_cli("--agent", "127.0.0.1:1", "pods")
    assert_one_sentence_error(r, 4)
    assert "agent" in r.stderr and "127.0.0.1:1" in r.stderr
    r = run_cli("--agent", "no-port-here", "pods")
    assert_one_sentence_error(r, 2)


def test_deleted_pod_is_not_found_at_once(ctrd, agent):
    client = ctrd.client
    pod = run_pod(client, "short-lived", containers=[ContainerSpec("app")])
    r = run_cli("--agent", agent.address, "pod", "short-lived", "-n", "lab", "-o", "json")
    assert r.returncode == 0, r.stderr
    old = {m["namespaces"]["net"] for m in json.loads(r.stdout)["members"] if m["pid"]}
    remove_pod(client, pod.sandbox_id)
    # Immediately: the snapshot still lists the pod, but its processes are gone.
    r = run_cli("--agent", agent.address, "pod", "short-lived", "-n", "lab", "-o", "json")
    assert_one_sentence_error(r, 3)
    assert not any(str(ino) in r.stdout + r.stderr for ino in old)


def test_new_pod_is_found_at_once(ctrd, agent):
    run_cli("--agent", agent.address, "pods", "-A")  # snapshot fresh
    pod = run_pod(ctrd.client, "just-born", containers=[ContainerSpec("app")])
    try:
        r = run_cli("--agent", agent.address, "pod", "just-born", "-n", "lab", "-o", "json")
        assert r.returncode == 0, r.stderr
        assert all(m["namespaces"] == truth(m["pid"]) for m in json.loads(r.stdout)["members"] if m["pid"])
    finally:
        remove_pod(ctrd.client, pod.sandbox_id)


def test_cached_answer_is_the_one_pod_gives(ctrd):
    """The agent's hot path (``CachedEngine.cached_pod``) answers only what ``pod()`` would: the answer
    already built, while its snapshot is confirmed within ttl and every member's process is the same."""
    from nsinspect.node.cached import CachedEngine

    engine = CachedEngine(runtime_endpoint=ctrd.endpoint, parallel=False, ttl=0.5)
    pod = run_pod(ctrd.client, "cached", containers=[ContainerSpec("app")])
    try:
        assert engine.cached_pod("cached", "lab") is None  # nothing built yet
        view = engine.pod("cached", "lab")
        assert engine.cached_pod("cached", "lab") is view is engine.pod("cached", "lab")
        assert engine.cached_pod("cached", "default") is None and engine.cached_pod("cached", "lab", "another-uid") is None
        time.sleep(0.6)  # the snapshot is older than ttl: only pod() may confirm it with the runtime
        assert engine.cached_pod("cached", "lab") is None
        assert engine.pod("cached", "lab") is view and engine.cached_pod("cached", "lab") is view  # nothing changed
        app = next(m for m in view.members if m.name == "app")
        os.kill(app.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{app.pid}") and time.monotonic() < deadline:  # until its shim reaps it
            time.sleep(0.05)
        assert engine.cached_pod("cached", "lab") is None  # a member's process is gone: pod() must look again
        again = engine.pod("cached", "lab")
        assert again is not view and next(m for m in again.members if m.name == "app").pid != app.pid
    finally:
        remove_pod(ctrd.client, pod.sandbox_id)
        engine.close()


def test_hot_path_refuses_what_the_full_path_refuses(ctrd, agent, stub):
    """GetPod's hot path answers only what the full path would: a request without a namespace (the proto
    requires one) is refused, even while the pod of that name in "default" has an answer ready."""
    pb, inspector = stub
    pod = run_pod(ctrd.client, "in-default", namespace="default", containers=[ContainerSpec("app")])
    try:
        for _ in range(3):  # built, serialized, then answered by the hot path
            assert inspector.GetPod(pb.GetPodRequest(namespace="default", name="in-default"), timeout=10).pod.namespace == "default"
        assert code_of(inspector.GetPod, pb.GetPodRequest(namespace="", name="in-default"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        remove_pod(ctrd.client, pod.sandbox_id)


def test_getpod_hot_path_is_taken(ctrd, monkeypatch):
    """A repeated GetPod is answered from the cached bytes without asking the engine's full path; the bytes
    are those the full path gives; a request the hot path does not take (another pod) still reaches it."""
    from nsinspect.agent.server import Inspector
    from nsinspect.agent.v1 import agent_pb2 as pb
    from nsinspect.node.cached import CachedEngine

    engine = CachedEngine(runtime_endpoint=ctrd.endpoint, parallel=False, ttl=30)
    pods = [run_pod(ctrd.client, name, containers=[ContainerSpec("app")]) for name in ("hot-a", "hot-b")]
    try:
        inspector = Inspector(engine)
        full = []
        real_pod = engine.pod
        monkeypatch.setattr(engine, "pod", lambda *a, **k: full.append(a) or real_pod(*a, **k))
        first = inspector.GetPod(pb.GetPodRequest(name="hot-a", namespace="lab"), None)
        again = [inspector.GetPod(pb.GetPodRequest(name="hot-a", namespace="lab"), None) for _ in range(3)]
        assert len(full) == 1 and again == [first] * 3
        assert pb.PodView.FromString(first).pod.name == "hot-a"
        inspector.GetPod(pb.GetPodRequest(name="hot-b", namespace="lab"), None)
        assert len(full) == 2
    finally:
        for pod in pods:
            remove_pod(ctrd.client, pod.sandbox_id)
        engine.close()


def test_new_answer_is_from_after_the_request(ctrd):
    """A pod's first answer comes from what the runtime says after the request, not from a snapshot
    (however fresh) taken while the pod was changing: a container started since is there, running."""
    from nsinspect.node.cached import CachedEngine

    engine = CachedEngine(runtime_endpoint=ctrd.endpoint, parallel=False, ttl=60)
    pod = run_pod(ctrd.client, "late-member", containers=[ContainerSpec("app")])
    try:
        engine.pods()  # the snapshot: the pod with one container
        add_container(ctrd.client, pod, ContainerSpec("late"))
        view = engine.pod("late-member", "lab")
        assert {m.name: m.state for m in view.members} == {"late-member": "ready", "app": "running", "late": "running"}
        late = next(m for m in view.members if m.name == "late")
        assert {t: ns.ino for t, ns in late.namespaces.items()} == truth(late.pid)
        assert "late" in {m.name for v in engine.pods("lab").pods if v.pod.name == "late-member" for m in v.members}
    finally:
        remove_pod(ctrd.client, pod.sandbox_id)
        engine.close()


def test_pod_in_flux_is_not_kept(ctrd):
    """A pod with a container created but not started is answered from the runtime at each request and
    not kept (nor kept warm): once the container starts, the next answer shows it running, no ttl to wait."""
    from nsinspect.cri.v1 import api_pb2 as pb
    from nsinspect.node.cached import CachedEngine

    engine = CachedEngine(runtime_endpoint=ctrd.endpoint, parallel=False, ttl=60)
    pod = run_pod(ctrd.client, "in-flux", containers=[ContainerSpec("app")])
    try:
        cid = add_container(ctrd.client, pod, ContainerSpec("slow"), start=False)
        view = engine.pod("in-flux", "lab")
        assert {m.name: m.state for m in view.members} == {"in-flux": "ready", "app": "running", "slow": "created"}
        assert engine.cached_pod("in-flux", "lab") is None and engine.warm() == []
        ctrd.client.stub.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=60)
        view = engine.pod("in-flux", "lab")
        slow = next(m for m in view.members if m.name == "slow")
        assert slow.state == "running" and {t: ns.ino for t, ns in slow.namespaces.items()} == truth(slow.pid)
        assert engine.cached_pod("in-flux", "lab") is view  # settled: kept from now on
    finally:
        remove_pod(ctrd.client, pod.sandbox_id)
        engine.close()


def test_warm_keeps_asked_answers_ready(ctrd, monkeypatch):
    """``CachedEngine.warm`` (the agent's background thread) does nothing until a pod is asked; then it
    confirms the snapshot before ttl runs out and rebuilds the answers of the pods asked lately before
    they age out, so the hot path keeps hitting; it forgets pods not asked for KEEP_WARM seconds and
    pods that are gone."""
    from nsinspect.node import cached
    from nsinspect.node.cached import CachedEngine

    engine = CachedEngine(runtime_endpoint=ctrd.endpoint, parallel=False, ttl=1.0)
    pods = {name: run_pod(ctrd.client, name, containers=[ContainerSpec("app")]) for name in ("warm-a", "warm-b")}
    try:
        assert engine.warm() == [] and engine._facts is None  # idle: the runtime is not even asked
        view = engine.pod("warm-a", "lab")
        confirmed = engine._checked_at
        time.sleep(1.0 * cached.REFRESH_AT + 0.05)
        assert engine.warm() == []  # the snapshot confirmed (nothing changed: no answer rebuilt) ...
        assert engine._checked_at > confirmed and engine.cached_pod("warm-a", "lab") is view  # ... and still served
        time.sleep(0.45)  # over ttl since pod() confirmed the snapshot: without warm() the hot path would miss
        assert engine.cached_pod("warm-a", "lab") is view
        monkeypatch.setattr(cached, "VIEW_MAX_AGE", 0.2)
        time.sleep(0.25)  # the answer is older than VIEW_MAX_AGE: warm() reads the pod again
        handed: list = []
        [(key, again)] = engine.warm(lambda *built: handed.append(built))
        assert handed == [(key, again)]  # each answer handed over as soon as it is built
        assert key == ("lab", "warm-a", "") and again is not view and engine.cached_pod("warm-a", "lab") is again
        for m in again.members:  # read again from the kernel
            assert {t: ns.ino for t, ns in m.namespaces.items()} == truth(m.pid)
        assert ("lab", "warm-b", "") not in engine._answers  # never asked: never built
        remove_pod(ctrd.client, pods.pop("warm-a").sandbox_id)
        time.sleep(0.7)  # the snapshot is due: warm() confirms it and finds the pod gone
        assert engine.warm() == [] and ("lab", "warm-a", "") not in engine._asked  # deleted: forgotten
        engine.pod("warm-b", "lab")
        time.sleep(0.25)
        assert [key for key, _ in engine.warm()] == [("lab", "warm-b", "")]  # aged out: read again ...
        monkeypatch.setattr(cached, "KEEP_WARM", 0.3)
        time.sleep(0.1)
        assert engine.warm() == [] and not engine._asked  # ... but only requests count: not asked lately, let go
    finally:
        for pod in pods.values():
            remove_pod(ctrd.client, pod.sandbox_id)
        engine.close()


def test_keep_warm_readies_getpod_bytes(ctrd, monkeypatch):
    """The agent's keep-warm thread serializes what ``warm()`` rebuilt: the next GetPod takes the hot
    path (the engine's full path is not asked) and answers those bytes."""
    from nsinspect.agent import server
    from nsinspect.agent.v1 import agent_pb2 as pb
    from nsinspect.node import cached
    from nsinspect.node.cached import CachedEngine

    engine = CachedEngine(runtime_endpoint=ctrd.endpoint, parallel=False, ttl=2.0)
    pod = run_pod(ctrd.client, "warm-bytes", containers=[ContainerSpec("app")])
    stop = threading.Event()
    thread = threading.Thread(target=server._keep_warm, args=(engine, inspector := server.Inspector(engine), stop))
    try:
        first = inspector.GetPod(pb.GetPodRequest(name="warm-bytes", namespace="lab"), None)
        readied: list[bytes] = []
        real_ready = inspector.ready
        monkeypatch.setattr(inspector, "ready", lambda key, view: readied.append(real_ready(key, view)) or readied[-1])
        monkeypatch.setattr(cached, "VIEW_MAX_AGE", 0.2)  # the answer ages out at once: the thread rebuilds it
        thread.start()
        deadline = time.monotonic() + 10
        while not readied:
            assert time.monotonic() < deadline, "keep-warm rebuilt nothing"
            time.sleep(0.05)
        stop.set()
        thread.join(10)
        monkeypatch.setattr(cached, "VIEW_MAX_AGE", 10.0)  # what the thread left stays good from here on
        full = []
        real_pod = engine.pod
        monkeypatch.setattr(engine, "pod", lambda *a, **k: full.append(a) or real_pod(*a, **k))
        data = inspector.GetPod(pb.GetPodRequest(name="warm-bytes", namespace="lab"), None)
        assert not full, "the full path was asked: the hot path missed"
        assert data == readied[-1] and pb.PodView.FromString(data).members == pb.PodView.FromString(first).members
    finally:
        stop.set()
        if thread.is_alive() or thread.ident is not None:
            thread.join(10)
        remove_pod(ctrd.client, pod.sandbox_id)
        engine.close()


def _members_until(agent, name: str, done, timeout: float = 10) -> dict[str, dict]:
    """The agent's members of pod ``name`` (by container name), polled until ``done(members)``."""
    deadline = time.monotonic() + timeout
    while True:
        r = run_cli("--agent", agent.address, "pod", name, "-n", "lab", "-o", "json")
        assert r.returncode == 0, r.stderr
        members = {m["name"]: m for m in json.loads(r.stdout)["members"]}
        if done(members) or time.monotonic() > deadline:
            return members
        time.sleep(0.2)


def test_members_that_exit_appear_and_go_are_followed(ctrd, agent):
    """A running pod's life as the agent sees it: a member whose process dies shows exited with no
    namespaces, an ephemeral container added later joins its target, a removed container is gone --
    on every runtime of the matrix, whose events and status fields differ."""
    from nsinspect.cri.v1 import api_pb2 as pb

    client = ctrd.client
    pod = run_pod(client, "lifecycle", containers=[ContainerSpec("web"), ContainerSpec("worker")])
    try:
        members = _members_until(agent, "lifecycle", lambda ms: True)
        assert {n: m["state"] for n, m in members.items()} == {"lifecycle": "ready", "web": "running", "worker": "running"}
        worker_pid = members["worker"]["pid"]
        os.kill(worker_pid, signal.SIGKILL)
        members = _members_until(agent, "lifecycle", lambda ms: ms["worker"]["state"] == "exited")
        assert members["worker"]["state"] == "exited" and members["worker"]["pid"] is None
        assert members["worker"]["namespaces"] == {}
        assert members["web"]["namespaces"] == truth(members["web"]["pid"])

        add_container(client, pod, ContainerSpec("debugger", target="web"))
        members = _members_until(agent, "lifecycle", lambda ms: "debugger" in ms and ms["debugger"]["pid"])
        dbg = members["debugger"]
        assert dbg["role"] == "ephemeral" and dbg["namespaces"] == truth(dbg["pid"])
        assert dbg["namespaces"]["pid"] == members["web"]["namespaces"]["pid"]
        local = json.loads(run_cli("-r", ctrd.endpoint, "pod", "lifecycle", "-n", "lab", "-o", "json").stdout)
        assert {m["name"]: (m["role"], m["state"], m["pid"]) for m in local["members"]} == {
            n: (m["role"], m["state"], m["pid"]) for n, m in members.items()}

        client.stub.RemoveContainer(pb.RemoveContainerRequest(container_id=pod.containers["worker"]), timeout=30)
        members = _members_until(agent, "lifecycle", lambda ms: "worker" not in ms)
        assert set(members) == {"lifecycle", "web", "debugger"}
    finally:
        remove_pod(client, pod.sandbox_id)


def test_unix_socket_listener(ctrd, tmp_path):
    sock = tmp_path / "agent.sock"
    a = Agent(ctrd.endpoint, f"unix:{sock}")
    try:
        assert stat.S_IMODE(os.stat(sock).st_mode) & 0o077 == 0  # owner only
        local, remote = run_cli("-r", ctrd.endpoint, "pod", "hostnet", "-n", "lab", "-o", "json"), run_cli(
            "--agent", f"unix:{sock}", "pod", "hostnet", "-n", "lab", "-o", "json")
        assert remote.returncode == 0 and remote.stdout == local.stdout
    finally:
        assert a.stop() == 0


@pytest.fixture()
def own_containerd(ctrd):
    """A containerd of its own, of the same build as ``ctrd``: this test stops and restarts it."""
    require_root()
    require_runtime(ctrd.runtime.id)
    env = Containerd.create(ctrd.runtime.id)
    from nsinspect.cri.client import RuntimeClient

    client = RuntimeClient.connect(env.endpoint)
    env.pod = run_pod(client, "survivor", containers=[ContainerSpec("app")])
    client.close()
    yield env
    env.destroy()


def test_runtime_down_then_back(own_containerd, stub):
    env = own_containerd
    a = Agent(env.endpoint)
    try:
        before = run_cli("--agent", a.address, "pod", "survivor", "-n", "lab", "-o", "json")
        assert before.returncode == 0, before.stderr
        env.stop()
        r = run_cli("--agent", a.address, "pod", "survivor", "-n", "lab")
        assert_one_sentence_error(r, 4)
        assert "runtime" in r.stderr
        r = run_cli("--agent", a.address, "pods", "-A")
        assert_one_sentence_error(r, 4)
        assert a.healthy() and a.proc.poll() is None  # the agent itself stays up
        # A node's namespaces and a process's need no runtime: they answer, naming no pod, and say why (never
        # pretending a process is in no pod: `runtime_error` is set, and the table says so).
        pause = next(m["pid"] for m in json.loads(before.stdout)["members"] if m["role"] == "sandbox")
        r = run_cli("--agent", a.address, "pid", str(pause), "-o", "json")
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        assert data["namespaces"] == truth(pause) and data["pod"] is None and "runtime" in data["runtime_error"]
        table = run_cli("--agent", a.address, "pid", str(pause)).stdout
        assert "pod unknown: " in table and "not in a pod" not in table
        r = run_cli("--agent", a.address, "node", "-o", "json")
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        assert "runtime" in data["runtime_error"] and not any(n["pods"] for n in data["namespaces"])
        assert all((t, ino) in {(n["type"], n["ns"]) for n in data["namespaces"]} for t, ino in truth(pause).items())
        table = run_cli("--agent", a.address, "node").stdout
        assert "POD and CONTAINER are empty: " in table.splitlines()[-1]
        local = run_cli("-r", env.endpoint, "node", "-o", "json")  # the same engine on the node, local mode
        assert local.returncode == 0 and "runtime" in json.loads(local.stdout)["runtime_error"]
        env.start()  # returns once containerd answers CRI calls
        r = run_cli("--agent", a.address, "pod", "survivor", "-n", "lab", "-o", "json")  # the very first call
        assert r.returncode == 0, r.stderr
        assert r.stdout == before.stdout  # the pod kept running through the restart: same answer
        r = run_cli("--agent", a.address, "pid", str(pause), "-o", "json")
        assert json.loads(r.stdout)["pod"]["name"] == "survivor" and "runtime_error" not in json.loads(r.stdout)
        assert "runtime unavailable" in a.logs() and "answering again" in a.logs(), a.logs()
    finally:
        assert a.stop() == 0


def test_sigterm_stops_gracefully(ctrd):
    a = Agent(ctrd.endpoint)
    assert run_cli("--agent", a.address, "pods").returncode == 0
    t = time.monotonic()
    assert a.stop(signal.SIGTERM) == 0
    assert time.monotonic() - t < 6
    assert "SIGTERM: stopping" in a.logs() and "stopped" in a.logs()
    r = run_cli("--agent", a.address, "pods")
    assert_one_sentence_error(r, 4)


def test_listen_errors_are_one_sentence(ctrd, agent):
    r = run_cli("-r", ctrd.endpoint, "agent", "--listen", agent.address)  # taken
    assert_one_sentence_error(r, 4)
    r = run_cli("-r", ctrd.endpoint, "agent", "--listen", "nonsense")
    assert_one_sentence_error(r, 2)
    r = run_cli("agent", "--probe", "--listen", "127.0.0.1:1")
    assert_one_sentence_error(r, 4)
