"""Stray processes on a real containerd: container processes that ran ``unshare`` (the ``stray-demo`` pod of the
``ctrd`` fixture), compared with what readlink of /proc/<pid>/ns/* says; locally, in tables, and through the agent."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from cri_env import Agent, ContainerSpec, remove_pod, run_pod
from helpers import NS_TYPES, descendants, readlink_ns, run_cli, truth

from nsinspect.model import Member
from nsinspect.node.engine import LocalEngine
from nsinspect.node.strays import Finder, cgroupfs_root

pytestmark = pytest.mark.runtime

# What each container of stray-demo runs (conftest): the commands of its strays and the types they left.
WANT = {
    "admin": {"sleep 1000": {"uts", "ipc"}, "sleep 1001": {"net"}},
    "rootless": {"sleep 1003": {"user", "uts"}},
    "app": {},
}


def nsi(env, *args):
    return run_cli("-r", env.endpoint, *args)


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().rstrip(b"\0").replace(b"\0", b" ").decode()


def kernel_strays(main: int) -> dict[int, dict[str, int]]:
    """The kernel's word: the container's other processes (here: the main process's descendants) and the
    namespace types where their links differ from the main process's."""
    ref = truth(main)
    out = {}
    for pid in descendants(main):
        links = truth(pid)
        differs = {t: ino for t, ino in links.items() if ino is not None and ino != ref[t]}
        if differs:
            out[pid] = differs
    return out


@pytest.fixture(scope="module")
def demo(ctrd):
    """stray-demo's pod JSON once every stray has exec'd its sleep, and the kernel's strays per member."""
    deadline = time.monotonic() + 15
    while True:
        r = nsi(ctrd, "pod", "stray-demo", "-n", "lab", "-o", "json")
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        kernel = {m["name"]: kernel_strays(m["pid"]) for m in data["members"] if m["pid"]}
        cmds = {name: {_cmdline(p) for p in strays} for name, strays in kernel.items()}
        if all(cmds.get(name) == set(want) for name, want in WANT.items()) and all(
                len(m["strays"]) == len(kernel[m["name"]]) for m in data["members"] if m["pid"]):
            return data, kernel
        assert time.monotonic() < deadline, (cmds, r.stdout)
        time.sleep(0.2)


def test_pod_json_lists_the_strays_the_kernel_shows(demo):
    data, kernel = demo
    for m in data["members"]:
        got = {s["pid"]: s["differs"] for s in m["strays"]}
        assert got == kernel[m["name"]], m["name"]
        for s in m["strays"]:
            assert s["command"] == _cmdline(s["pid"]) and s["comm"] == "sleep"
            with open(f"/proc/{s['pid']}/stat") as f:
                assert int(f.read().rsplit(")", 1)[1].split()[19]) == s["start_time"]
            assert set(s["differs"]) == WANT[m["name"]][s["command"]]
        # The member's own namespaces are still its main process's: a stray changes no verdict.
        assert m["namespaces"] == truth(m["pid"])
    assert [m["name"] for m in data["members"] if m["strays"]] == ["admin", "rootless"]
    assert all(v["ok"] for v in data["sharing"].values())


def test_pod_table_lists_them(ctrd, demo):
    data, _ = demo
    r = nsi(ctrd, "pod", "stray-demo", "-n", "lab")
    assert r.returncode == 0, r.stderr
    assert "3 stray processes: in a member's cgroup, not in all of its namespaces" in r.stdout
    lines = r.stdout.splitlines()
    for m in data["members"]:
        for s in m["strays"]:
            line = next(x for x in lines if x.split()[:2] == [m["name"], str(s["pid"])])
            assert line.endswith(s["command"])
            for t, ino in s["differs"].items():
                assert f"{t} {ino}" in line
            assert all(f"{t} " not in line.split(str(s["pid"]), 1)[1].rsplit(s["command"], 1)[0]
                       for t in NS_TYPES if t not in s["differs"])


def test_pods_counts_them(ctrd, demo):
    r = nsi(ctrd, "pods", "-n", "lab", "-o", "json")
    assert r.returncode == 0, r.stderr
    counts = {p["name"]: p["strays"] for p in json.loads(r.stdout)["pods"]}
    assert counts["stray-demo"] == 3 and counts["namespace-demo"] == 0 and counts["nonroot-demo"] == 1
    assert all(n == 0 for name, n in counts.items() if name not in ("stray-demo", "nonroot-demo"))
    table = nsi(ctrd, "pods", "-n", "lab").stdout.splitlines()
    assert table[0].split()[-1] == "STRAYS"
    assert next(line for line in table if " stray-demo " in f" {line} ").split()[-1] == "3"
    assert next(line for line in table if " namespace-demo " in f" {line} ").split()[-1] == "0"
    assert any(line.startswith("STRAYS: 4 processes") for line in table)  # stray-demo's 3, nonroot-demo's 1


def test_the_agent_carries_them(ctrd, demo):
    data, _ = demo
    agent = Agent(ctrd.endpoint)
    try:
        for args in (("pod", "stray-demo", "-n", "lab", "-o", "json"), ("pods", "-n", "lab", "-o", "json"),
                     ("pod", "stray-demo", "-n", "lab")):
            remote = run_cli("--agent", agent.address, *args)
            local = nsi(ctrd, *args)
            assert remote.returncode == 0 and local.returncode == 0, remote.stderr + local.stderr
            assert remote.stdout == local.stdout, args
        remote = json.loads(run_cli("--agent", agent.address, "pod", "stray-demo", "-n", "lab", "-o", "json").stdout)
        assert [m["strays"] for m in remote["members"]] == [m["strays"] for m in data["members"]]
    finally:
        agent.stop()


def test_reading_every_proc_cgroup_finds_the_same(ctrd, demo):
    """The way an agent without the node's pid namespace finds them (every /proc/<pid>/cgroup) agrees with
    cgroup.procs."""
    engine = LocalEngine(runtime_endpoint=ctrd.endpoint, parallel=False)
    try:
        view = engine.pod("stray-demo", "lab")
        assert view.stray_count == 3
        bare = [m._replace(strays=()) for m in view.members]
        for direct in (True, False):
            members, notes = Finder(engine.proc, cgroupfs_root(None), False, direct=direct).pod(bare)
            assert members == view.members and notes == []
    finally:
        engine.close()


def test_a_stray_that_exits_is_gone_at_once(ctrd):
    """Locally and from the agent's cached answer alike (here it stays a zombie, whose links are gone)."""
    pod = run_pod(ctrd.client, "stray-exit", containers=[
        ContainerSpec("admin", ["/bin/sh", "-c", "unshare -u sleep 1000 & exec sleep 1001"], privileged=True)])
    agent = Agent(ctrd.endpoint)
    try:
        def strays(*via: str) -> list[int]:
            r = run_cli(*via, "pod", "stray-exit", "-n", "lab", "-o", "json")
            assert r.returncode == 0, r.stderr
            admin: Member = next(m for m in json.loads(r.stdout)["members"] if m["name"] == "admin")
            return [s["pid"] for s in admin["strays"]]

        deadline = time.monotonic() + 15
        while not strays("-r", ctrd.endpoint):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        [pid] = strays("-r", ctrd.endpoint)
        assert strays("--agent", agent.address) == [pid]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while readlink_ns(pid, "uts") is not None:  # a zombie (sleep, exec'd by sh, reaps no child): links gone
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert strays("-r", ctrd.endpoint) == []
        assert strays("--agent", agent.address) == []
    finally:
        agent.stop()
        remove_pod(ctrd.client, pod.sandbox_id)
