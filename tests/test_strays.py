"""Stray processes on real cgroups and namespaces, without a runtime: processes moved into a cgroup of
their own (v1: the pids hierarchy; v2: the unified one), some of them after leaving namespaces with unshare."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest
from helpers import require_root, truth

from nsinspect.model import Member
from nsinspect.node.procfs import ProcFS, parse_cgroup
from nsinspect.node.strays import Finder, hierarchy, within


def test_parse_and_choose_hierarchy():
    raw = b"12:pids:/k8s.io/abc\n4:cpu,cpuacct:/k8s.io/abc\n1:name=systemd:/k8s.io/abc\n0::/\n"
    cg = parse_cgroup(raw)
    assert cg == {"pids": "/k8s.io/abc", "cpu,cpuacct": "/k8s.io/abc", "name=systemd": "/k8s.io/abc", "": "/"}
    assert hierarchy(cg, cgroup2=False) == "pids"
    assert hierarchy({"cpu,cpuacct": "/a", "": "/"}, cgroup2=False) == "cpu,cpuacct"
    assert hierarchy({"name=systemd": "/a", "": "/"}, cgroup2=False) == "name=systemd"
    assert hierarchy(cg, cgroup2=True) == ""
    assert hierarchy({"pids": "/a"}, cgroup2=True) is None
    assert within("/a/b", "/a") and within("/a", "/a") and not within("/ab", "/a") and within("/x", "/")


def _v2_dir() -> str | None:
    for d in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if os.path.exists(os.path.join(d, "cgroup.controllers")):
            return d
    return None


@pytest.fixture(params=["v1", "v2"])
def hier(request):
    """(cgroupfs root as the finder takes it, cgroup2?, the directory processes are moved in)."""
    require_root()
    if request.param == "v1":
        if not os.path.isdir("/sys/fs/cgroup/pids") or _v2_dir() == "/sys/fs/cgroup":
            pytest.skip("no cgroup v1 pids hierarchy here")
        return "/sys/fs/cgroup", False, "/sys/fs/cgroup/pids"
    d = _v2_dir()
    if d is None:
        pytest.skip("no cgroup v2 hierarchy here")
    return d, True, d


class Group:
    """Processes in a fresh cgroup TOP (and TOP/sub), each placed there before it execs."""

    def __init__(self, where: str):
        self.top = os.path.join(where, f"nsinspect-strays-{uuid.uuid4().hex[:8]}")
        os.makedirs(os.path.join(self.top, "sub"))
        self.procs: list[subprocess.Popen] = []

    def run(self, cgroup: str, command: str) -> int:
        p = subprocess.Popen(["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec {command}'], stdin=subprocess.DEVNULL)
        self.procs.append(p)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(f"/proc/{p.pid}/comm") as f:
                if f.read().strip() == "sleep":
                    return p.pid
            time.sleep(0.01)
        raise AssertionError(f"{command} did not start")

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        for d in (os.path.join(self.top, "sub"), self.top):
            for _ in range(100):
                try:
                    os.rmdir(d)
                    break
                except OSError:
                    time.sleep(0.02)


def member(proc: ProcFS, name: str, pid: int) -> Member:
    return Member(name, "app", f"id-{name}", "running", proc.process(pid), {t: ns for t, ns in proc.ns_links(pid).items() if ns})


@pytest.mark.parametrize("direct", [True, False], ids=["cgroup.procs", "proc-scan"])
def test_strays_are_the_cgroup_processes_that_left_namespaces(hier, direct):
    cgroupfs, cgroup2, where = hier
    g = Group(where)
    try:
        main = g.run(g.top, "sleep 1000")
        g.run(g.top, "sleep 1001")  # the member's namespaces: not a stray
        uts_ipc = g.run(g.top, "unshare -u -i sleep 1002")
        net = g.run(f"{g.top}/sub", "unshare -n sleep 1003")  # a cgroup below the member's counts too
        outside = subprocess.Popen(["unshare", "-u", "sleep", "1004"])  # another cgroup: not the member's
        g.procs.append(outside)
        with ProcFS() as proc:
            finder = Finder(proc, cgroupfs, cgroup2, direct=direct)
            [m], notes = finder.pod([member(proc, "c", main)])
        assert notes == []
        assert [s.pid for s in m.strays] == [uts_ipc, net]
        main_ns = truth(main)
        for s in m.strays:
            kernel = truth(s.pid)
            assert {t: ns.ino for t, ns in s.differs.items()} == {t: i for t, i in kernel.items() if i != main_ns[t]}
            assert s.process.id.start_time == proc.start_time(s.pid) and s.process.comm == "sleep"
        assert set(m.strays[0].differs) == {"uts", "ipc"} and set(m.strays[1].differs) == {"net"}
        assert m.strays[1].process.cmdline == "sleep 1003"
    finally:
        g.close()


def test_members_whose_cgroup_says_nothing_get_a_note(hier):
    cgroupfs, cgroup2, where = hier
    g = Group(where)
    try:
        outer = g.run(g.top, "sleep 1000")
        inner = g.run(f"{g.top}/sub", "unshare -u sleep 1001")
        root = g.run(where, "sleep 1002")  # the root cgroup: every process would be a candidate
        with ProcFS() as proc:
            finder = Finder(proc, cgroupfs, cgroup2)
            members, notes = finder.pod([member(proc, "outer", outer), member(proc, "inner", inner), member(proc, "root", root)])
        assert [m.strays for m in members] == [(), (), ()]
        assert notes[0].startswith("stray processes not looked for in outer: its cgroup ") and notes[0].endswith("holds inner too")
        assert notes[1].startswith("stray processes not looked for in root: it is in the root cgroup")
        assert len(notes) == 2
    finally:
        g.close()


def test_rendering_escapes_the_command_and_counts_only_when_there_are_strays():
    """A stray's command line is untrusted: escaped in the table; the STRAYS column shows only when needed."""
    from nsinspect.model import NS_TYPES, NamespaceId, PodInfo, PodsView, PodView, Process, ProcessId, Stray, Verdict
    from nsinspect.render import render

    ns = {t: NamespaceId(4, 4026531000 + i) for i, t in enumerate(NS_TYPES)}
    bad = Process(ProcessId(4242, 7), 1, 0, "root", "sleep", "sleep \x1b[2J\x1b]0;owned\x07 1000")
    m = Member("web", "app", "id-web", "running", Process(ProcessId(4241, 6), 1, 0, "root", "sleep", "sleep"), ns,
               strays=(Stray(bad, {"uts": NamespaceId(4, 4026532999)}),))
    sharing = {t: Verdict("private", "private") for t in NS_TYPES}
    view = PodView(PodInfo("lab", "p", "u", "sb", "n"), [m], sharing, {})
    out = render(view, "table")
    line = next(x for x in out.splitlines() if x.startswith("web ") and "4242" in x)
    assert "\x1b" not in out and "\x07" not in out
    assert line.split() == ["web", "4242", "uts", "4026532999", "sleep", "\\x1b[2J\\x1b]0;owned\\x07", "1000"]
    assert "STRAYS" in render(PodsView([view], "n"), "table")
    plain = view._replace(members=[m._replace(strays=())])
    assert "STRAYS" not in render(PodsView([plain], "n"), "table")
    assert '"strays": 1' in render(PodsView([view], "n"), "json") and '"strays": 0' in render(PodsView([plain], "n"), "json")
