"""The agent under hostile clients (issue 21): garbage bytes, half-open HTTP/2, 200 idle connections, malformed
and oversize messages, a 30 s burst of concurrent calls.  Bounded in time.  Through it all the agent stays up,
answers a normal client within its deadline, keeps its RSS under the DaemonSet's memory limit, and logs each
kind of abuse once, not once per request."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from pathlib import Path

import grpc
import pytest
import yaml
from cri_env import Agent

pytestmark = pytest.mark.runtime

ROOT = Path(__file__).resolve().parent.parent
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # an empty SETTINGS frame
BURST_SECONDS = float(os.environ.get("NSINSPECT_BURST_SECONDS", "30"))


def memory_limit() -> int:
    """The agent container's memory limit, from the manifest (so the test follows it)."""
    for doc in yaml.safe_load_all((ROOT / "daemonset" / "daemonset.yaml").read_text()):
        if doc and doc.get("kind") == "DaemonSet":
            (c,) = [c for c in doc["spec"]["template"]["spec"]["containers"] if c["name"] == "agent"]
            value = c["resources"]["limits"]["memory"]
            assert value.endswith("Mi"), value
            return int(value[:-2]) << 20
    raise AssertionError("no DaemonSet in daemonset.yaml")


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) << 10
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture(scope="module")
def agent(ctrd):
    a = Agent(ctrd.endpoint)
    yield a
    assert a.stop() == 0, a.logs()[-2000:]


@pytest.fixture(scope="module")
def stub(agent):
    from nsinspect.agent.v1 import agent_pb2 as pb
    from nsinspect.agent.v1 import agent_pb2_grpc as pb_grpc

    channel = grpc.insecure_channel(agent.address)
    yield pb, pb_grpc.InspectorStub(channel), channel
    channel.close()


def connect(agent) -> socket.socket:
    host, port = agent.address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def answered(agent, deadline: float = 2.0) -> float:
    """A normal client, on a connection of its own: GetPod of a course pod within ``deadline``; its latency."""
    from nsinspect.agent.v1 import agent_pb2 as pb
    from nsinspect.agent.v1 import agent_pb2_grpc as pb_grpc

    with grpc.insecure_channel(agent.address) as channel:
        start = time.monotonic()
        pb_grpc.InspectorStub(channel).GetPod(pb.GetPodRequest(namespace="lab", name="namespace-demo"), timeout=deadline)
        return time.monotonic() - start


def abuse_lines(agent) -> list[str]:
    return [line for line in agent.logs().splitlines() if "from a client" in line]


def test_garbage_and_half_open_connections(agent):
    """Garbage is dropped by the agent (the connection closes); half-open HTTP/2 clients do not block others."""
    rnd = random.Random(21)
    garbage = [connect(agent) for _ in range(5)]
    for s in garbage:
        s.sendall(bytes(rnd.randrange(256) for _ in range(4096)))
    half = [connect(agent) for _ in range(10)]
    for i, s in enumerate(half):
        s.sendall(PREFACE[: 10 + i] if i < 5 else PREFACE + SETTINGS)  # a cut preface; a preface and then silence
    assert answered(agent) < 2.0
    for s in garbage:  # the server hangs up on bytes that are not HTTP/2
        s.settimeout(5)
        try:
            while s.recv(65536):
                pass
        except (ConnectionResetError, TimeoutError) as e:
            assert not isinstance(e, TimeoutError), "the agent kept a connection that sent garbage open"
        s.close()
    for s in half:
        s.close()
    assert agent.proc.poll() is None
    assert answered(agent) < 2.0


def test_200_idle_connections_do_not_starve_a_client(agent):
    pid = agent.proc.pid
    before = open_fds(pid)
    idle = [connect(agent) for _ in range(200)]
    try:
        time.sleep(0.5)
        latencies = [answered(agent) for _ in range(10)]
        assert max(latencies) < 2.0, latencies
        assert agent.proc.poll() is None
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 15
    while open_fds(pid) > before + 10 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert open_fds(pid) <= before + 10, "the agent keeps the closed connections' sockets"


def test_malformed_and_oversize_messages(agent, stub):
    """Bytes that are no request: INVALID_ARGUMENT with a sentence (gRPC's own deserializer answered INTERNAL);
    an oversize one: RESOURCE_EXHAUSTED.  A hundred of them log one line."""
    _pb, _inspector, channel = stub
    rnd = random.Random(7)
    for _ in range(100):
        method = rnd.choice(["GetNode", "GetProcess", "ListPods", "GetPod"])
        call = channel.unary_unary(f"/nsinspect.v1.Inspector/{method}")  # bytes in, bytes out
        junk = b"\xff\xff\xff" + bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 200)))
        with pytest.raises(grpc.RpcError) as e:
            call(junk, timeout=5)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, e.value.code(), e.value.details())
        assert "not a valid nsinspect.v1." in e.value.details() and "\n" not in e.value.details()
    call = channel.unary_unary("/nsinspect.v1.Inspector/GetPod")
    for _ in range(20):
        with pytest.raises(grpc.RpcError) as e:
            call(b"\x0a" + b"\xff\xff\x7f" + b"x" * (4 << 20), timeout=10)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError) as e:
        channel.unary_unary("/nsinspect.v1.Inspector/NoSuchMethod")(b"", timeout=5)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert answered(agent) < 2.0
    lines = [line for line in abuse_lines(agent) if "malformed request" in line]
    assert len(lines) == 1, lines


def test_burst_of_concurrent_calls(agent, stub):
    """BURST_SECONDS of 16 clients calling every method (good and bad requests) as fast as answers come: no call
    fails but those that should, the agent's RSS stays under the manifest's limit, each kind of abuse is one line."""
    pb, _inspector, _channel = stub
    from nsinspect.agent.v1 import agent_pb2_grpc as pb_grpc

    limit, peak, errors, calls = memory_limit(), [0], [], [0]
    stop = time.monotonic() + BURST_SECONDS
    expected = {
        "good": (lambda s: s.GetPod(pb.GetPodRequest(namespace="lab", name="namespace-demo"), timeout=10), None),
        "list": (lambda s: s.ListPods(pb.ListPodsRequest(namespace="lab"), timeout=10), None),
        "node": (lambda s: s.GetNode(pb.GetNodeRequest(types=["net", "pid"]), timeout=30), None),
        "process": (lambda s: s.GetProcess(pb.GetProcessRequest(pid=os.getpid()), timeout=10), None),
        "invalid": (lambda s: s.GetPod(pb.GetPodRequest(namespace="lab", name="bad\x1b[31m"), timeout=10),
                    grpc.StatusCode.INVALID_ARGUMENT),
        "missing": (lambda s: s.GetPod(pb.GetPodRequest(namespace="lab", name="no-such-pod"), timeout=10), grpc.StatusCode.NOT_FOUND),
    }

    def client(seed: int) -> None:
        rnd = random.Random(seed)
        with grpc.insecure_channel(agent.address) as channel:
            s = pb_grpc.InspectorStub(channel)
            while time.monotonic() < stop:
                kind = rnd.choice(list(expected))
                call, want = expected[kind]
                try:
                    call(s)
                    got = None
                except grpc.RpcError as e:
                    got = e.code()
                calls[0] += 1
                if got != want:
                    errors.append((kind, got))

    def sample() -> None:
        while time.monotonic() < stop:
            peak[0] = max(peak[0], rss(agent.proc.pid))
            time.sleep(0.25)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)] + [threading.Thread(target=sample)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BURST_SECONDS + 120)
    assert not errors, errors[:10]
    assert calls[0] > 100 * BURST_SECONDS / 30, calls[0]
    assert peak[0] < limit, f"peak RSS {peak[0] >> 20} MiB, limit {limit >> 20} MiB"
    assert agent.proc.poll() is None and answered(agent) < 2.0
    kinds = [line.split(" from a client")[0].rsplit(": ", 1)[-1] for line in abuse_lines(agent)]
    assert len(kinds) == len(set(kinds)), abuse_lines(agent)
    print(f"burst: {calls[0]} calls in {BURST_SECONDS:.0f} s, peak RSS {peak[0] >> 20} MiB (limit {limit >> 20} MiB)")


def test_names_that_are_not_utf8_cross_the_wire(agent):
    """A process whose name and command line are not UTF-8 (any user can make one): GetNode and GetProcess
    answered INTERNAL, since protobuf strings are UTF-8.  Now both answer, and as local mode does, byte for byte."""
    import subprocess

    from helpers import run_cli

    child = subprocess.Popen(["bash", "-c", "exec -a $'bad\\xff\\x1bname' sleep 300"])
    try:
        time.sleep(0.3)
        for args in (["pid", str(child.pid), "-o", "json"], ["pid", str(child.pid)], ["node", "-t", "pid", "-o", "json"]):
            local, remote = run_cli(*args), run_cli("--agent", agent.address, *args)
            assert local.returncode == remote.returncode == 0, (local.stderr, remote.stderr)
            if args[0] == "pid":  # node -t pid: the agent's own processes differ from the CLI's; it must answer
                assert remote.stdout == local.stdout
                assert "\\xff" in remote.stdout and "\x1b" not in remote.stdout
    finally:
        child.kill()
        child.wait()
