"""Parsing the verbose CRI info blob (containerd and CRI-O shapes), and the sharing states."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nsinspect.cri import info
from nsinspect.model import NamespaceId
from nsinspect.sharing import state_of

# The shape containerd 1.6 returns (captured here, trimmed); the env holds a secret.
CONTAINERD = {
    "sandboxID": "abc",
    "pid": 1676,
    "removing": False,
    "config": {
        "metadata": {"name": "debug"},
        "envs": [{"key": "SECRET_TOKEN", "value": "do-not-leak"}],
        "linux": {"security_context": {"namespace_options": {"pid": 3, "target_id": "8f1b"}}},
    },
    "runtimeSpec": {
        "process": {"env": ["SECRET_TOKEN=do-not-leak"]},
        "linux": {
            "namespaces": [
                {"type": "pid", "path": "/proc/1617/ns/pid"},
                {"type": "ipc", "path": "/proc/1532/ns/ipc"},
                {"type": "uts", "path": "/proc/1532/ns/uts"},
                {"type": "mount"},
                {"type": "network", "path": "/proc/1532/ns/net"},
            ]
        },
    },
}
# CRI-O: no config echo; a sandbox of drop_infra_ctr has pid 0.
CRIO = {"sandboxID": "abc", "pid": 4242, "runtimeSpec": {"linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/var/run/netns/x"}]}}}


@pytest.mark.parametrize(
    "blob, pid, options, target, spec_pid",
    [
        (CONTAINERD, 1676, {"network": "POD", "pid": "TARGET", "ipc": "POD"}, "8f1b", "/proc/1617/ns/pid"),
        (CRIO, 4242, {}, "", ""),
        ({"pid": 0}, 0, {}, "", None),
        ({}, 0, {}, "", None),
    ],
)
def test_parse(blob, pid, options, target, spec_pid):
    vi = info.parse({"info": json.dumps(blob)})
    assert vi.pid == pid and dict(vi.options) == options and vi.target_id == target
    assert vi.spec_namespaces.get("pid") == spec_pid
    assert "do-not-leak" not in repr(vi)


@pytest.mark.parametrize(
    "blob, privileged",
    [
        (CONTAINERD, False),
        ({**CONTAINERD, "config": {"linux": {"security_context": {"privileged": True}}}}, True),
        ({**CRIO, "privileged": True}, True),  # CRI-O's containerInfo (server/container_status.go)
        ({**CRIO, "privileged": False}, False),
        (CRIO, None),
        ({**CRIO, "privileged": "yes"}, None),
    ],
)
def test_parse_privileged(blob, privileged):
    assert info.parse({"info": json.dumps(blob)}).privileged is privileged


@pytest.mark.parametrize("raw", [{}, {"info": "not json"}, {"info": "[1, 2]"}, {"info": '{"pid": "12"}'}])
def test_parse_garbage(raw):
    assert info.parse(raw).pid == 0


def test_joined_pid():
    assert info.joined_pid("/proc/1617/ns/pid") == 1617
    assert info.joined_pid("/var/run/netns/x") is None


N = NamespaceId(4, 1)


@pytest.mark.parametrize(
    "inos, state",
    [
        ([N, N, N], "host"),
        ([NamespaceId(4, 2)] * 3, "shared"),
        ([NamespaceId(4, 2), NamespaceId(4, 3)], "private"),
        ([NamespaceId(4, 2), NamespaceId(4, 2), NamespaceId(4, 3)], "mixed"),
        ([N, NamespaceId(4, 2)], "mixed"),
        ([], None),
    ],
)
def test_state_of(inos, state):
    assert state_of(inos, N) == state


# Verbose info captured from each containerd of the runtime matrix (tests/fixtures/cri, trimmed to the
# keys nsinspect reads plus a planted secret; "keys" lists every top-level key that runtime sent).
FIXTURES = sorted((Path(__file__).parent / "fixtures" / "cri").glob("containerd-*.json"))


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_each_runtime_build_s_verbose_info(path):
    captured = json.loads(path.read_text())
    sandbox, web, debugger = (captured[k] for k in ("sandbox", "web", "debugger"))
    for blob in (sandbox, web, debugger):
        assert {"pid", "runtimeSpec", "config"} <= set(blob["keys"])  # what every build must still send
    sb = info.parse({"info": json.dumps(sandbox)})
    pod_options = {"network": "POD", "pid": "CONTAINER", "ipc": "POD"}  # proto3 drops zeros: POD is 0
    assert sb.pid == sandbox["pid"] and sb.options == pod_options and sb.privileged is False
    assert sb.spec_namespaces["net"].startswith("/var/run/netns/cni-") and sb.spec_namespaces["pid"] == ""
    assert "cgroup" not in sb.spec_namespaces  # the sandbox gets no cgroup namespace of its own
    app = info.parse({"info": json.dumps(web)})
    assert app.pid == web["pid"] and app.target_id == "" and app.options == pod_options
    assert info.joined_pid(app.spec_namespaces["net"]) == sandbox["pid"]
    dbg = info.parse({"info": json.dumps(debugger)})
    assert dbg.options == dict(pod_options, pid="TARGET")
    assert dbg.target_id == debugger["config"]["linux"]["security_context"]["namespace_options"]["target_id"]
    assert info.joined_pid(dbg.spec_namespaces["pid"]) == web["pid"]
    assert "do-not-leak" not in repr((sb, app, dbg))
