"""The evidence readers on real namespaces made here (unshare, ip), the parsers on odd input, and the
sentences the sharing rules make from the evidence."""

from __future__ import annotations

import marshal
import os
import re
import subprocess
import threading

import pytest
from helpers import require_root

from nsinspect import sharing
from nsinspect.model import (
    IpcDetails,
    IpcObject,
    Member,
    MemberDetails,
    MntDetails,
    MountPoint,
    NamespaceId,
    NetAddress,
    NetDetails,
    PidDetails,
    Process,
    ProcessId,
    SeenProcess,
    UserDetails,
    UtsDetails,
)
from nsinspect.node import enter, evidence
from nsinspect.node.procfs import ProcFS, parse_cgroup


@pytest.fixture
def holder():
    """A process in new net, uts and ipc namespaces: a veth pair, one end with a /24, a /32 and an IPv6
    address, a hostname, and a System V shared memory segment and message queue made inside."""
    require_root()
    p = subprocess.Popen(["unshare", "-n", "-u", "-i", "sleep", "120"])
    try:
        for _ in range(100):
            if os.readlink(f"/proc/{p.pid}/ns/uts") != os.readlink("/proc/self/ns/uts"):
                break
            threading.Event().wait(0.02)
        n = ["nsenter", "-t", str(p.pid), "-n"]
        for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "link", "add", "dum0", "type", "veth", "peer", "name", "dum1"],
                    ["ip", "addr", "add", "192.0.2.5/24", "dev", "dum0"], ["ip", "addr", "add", "198.51.100.7/32", "dev", "dum0"],
                    ["ip", "link", "set", "dum0", "up"], ["ip", "link", "set", "dum1", "up"],
                    ["ip", "addr", "add", "2001:db8::5/64", "dev", "dum0", "nodad"]):
            subprocess.run(n + cmd, check=True)
        subprocess.run(["nsenter", "-t", str(p.pid), "-u", "hostname", "evidence-test"], check=True)
        i = ["nsenter", "-t", str(p.pid), "-i"]
        shm = int(re.search(r"(\d+)\s*$", subprocess.run(i + ["ipcmk", "-M", "8192"], check=True, capture_output=True,
                                                         text=True).stdout.strip()).group(1))
        subprocess.run(i + ["ipcmk", "-Q"], check=True, capture_output=True)
        yield p.pid, shm
    finally:
        p.kill()
        p.wait()


def test_net_of_a_namespace_made_here(holder):
    pid, _shm = holder
    with ProcFS() as proc:
        net = evidence._net(proc, pid)
    assert set(net.interfaces) == {"lo", "dum0", "dum1"} and not net.error
    got = {(a.family, a.address, a.prefix, a.interface) for a in net.addresses}
    assert ("inet", "192.0.2.5", 24, "dum0") in got
    assert ("inet", "127.0.0.1", None, "") in got  # the loopback's has no link route: not tied to lo by guess
    assert ("inet", "198.51.100.7", None, "") in got  # a /32 without a link route: said, not guessed
    assert ("inet6", "2001:db8::5", 64, "dum0") in got and ("inet6", "::1", 128, "lo") in got


def test_the_processes_of_a_pid_namespace_made_here():
    require_root()
    p = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "sh", "-c", "sleep 120 & sleep 120 & exec sleep 120"])
    try:
        own = os.readlink("/proc/self/ns/pid")
        for _ in range(200):
            kids = [int(c) for c in open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()]
            if kids and len(open(f"/proc/{kids[0]}/task/{kids[0]}/children").read().split()) == 2 \
                    and os.readlink(f"/proc/{kids[0]}/ns/pid") != own and open(f"/proc/{kids[0]}/comm").read() == "sleep\n":
                break
            threading.Event().wait(0.02)
        ino = os.stat(f"/proc/{kids[0]}/ns/pid").st_ino
        truth = sorted(int(d) for d in os.listdir("/proc") if d.isdigit() and _pid_ns(d) == ino)
        assert len(truth) == 3
        with ProcFS() as proc:
            assert proc.members_of("pid", {ino}, 2) == {ino: (3, truth[:2])}
            assert proc.members_of("pid", {ino, 1}, 8) == {ino: (3, truth), 1: (0, [])}
            seen = evidence._pids(proc, [_member("x", {"pid": ino}, MemberDetails())._replace(
                process=Process(ProcessId(kids[0], 0), 0, 0, "root", "sleep", "sleep"))])[ino]
        assert seen.nprocs == 3 and [(s.ns_pid, s.comm) for s in seen.processes][0] == (1, "sleep")
    finally:
        p.kill()
        p.wait()


def _pid_ns(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


def test_uts_and_ipc_entered_by_fork_and_by_a_fresh_interpreter(holder):
    pid, shm = holder
    with ProcFS() as proc:
        fds = [proc.open_ns(pid, "uts"), proc.open_ns(pid, "ipc")]
        jobs = [("uts", fds[0]), ("ipc", fds[1])]
        try:
            assert threading.active_count() == 1
            forked = enter.enter("/proc", jobs)
            spawned = marshal.loads(enter._spawned("/proc", jobs, 10))
        finally:
            for fd in fds:
                os.close(fd)
    for answer in (forked, spawned):
        assert answer[0] == {"hostname": "evidence-test"}
        objects = evidence.parse_sysvipc("shm", answer[1]["shm"]) + evidence.parse_sysvipc("msg", answer[1]["msg"])
        assert [(o.kind, o.id, o.size) for o in objects if o.kind == "shm"] == [("shm", shm, 8192)]
        assert [o.kind for o in objects if o.kind == "msg"] == ["msg"]
    assert os.uname().nodename != "evidence-test"  # this process never entered anything


def test_the_agents_fork_server_answers_from_threads_and_retires_when_killed(holder):
    pid, shm = holder
    with ProcFS() as proc:
        fds = [proc.open_ns(pid, "uts"), proc.open_ns(pid, "ipc")]
        jobs = [("uts", fds[0]), ("ipc", fds[1])]
        assert enter.start_forker("/proc")
        forker = enter._FORKER
        stop = threading.Event()
        busy = threading.Thread(target=stop.wait)
        busy.start()  # as in the agent: threads run, so neither fork nor setns here
        try:
            asked = [enter.enter("/proc", jobs) for _ in range(3)]
            assert forker.alive and all(a == asked[0] for a in asked)
            assert asked[0][0] == {"hostname": "evidence-test"}
            assert [o.id for o in evidence.parse_sysvipc("shm", asked[0][1]["shm"])] == [shm]
            os.kill(forker.pid, 9)
            os.waitpid(forker.pid, 0)
            assert enter.enter("/proc", jobs) == asked[0]  # answered by a fresh interpreter
            assert not forker.alive
        finally:
            stop.set()
            busy.join()
            enter.stop_forker()
            for fd in fds:
                os.close(fd)


def test_the_helper_says_why_it_cannot_enter():
    require_root()
    fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - child
        try:
            os.setresuid(65534, 65534, 65534)
            os.write(w, repr(enter.enter("/proc", [("uts", fd)])).encode())
        finally:
            os._exit(0)
    os.close(w)
    out = os.read(r, 65536).decode()
    os.waitpid(child, 0)
    os.close(fd)
    assert "permission denied" in out and "CAP_SYS_ADMIN" in out and "hostname" not in out


def test_parsers_on_odd_input(tmp_path):
    info = (b"22 1 0:21 / / rw - overlay overlay rw,lowerdir=/a\n"
            b"23 22 0:5 / /proc rw - proc proc rw\n"
            b"24 22 8:1 /var/lib/x/my\\040vol /data\\040dir rw master:1 - ext4 /dev/sda1 rw\n"
            b"25 22 0:40 / /dev/shm rw - tmpfs shm rw\n"
            b"26 22 8:1 /old /data\\040dir rw - ext4 /dev/sda1 rw\n"
            b"garbage line\n")
    mnt = evidence.mnt_details(evidence.parse_mountinfo(info))
    assert mnt.root == MountPoint("/", "overlay", "overlay", "/", "0:21")
    assert mnt.shm is not None and mnt.shm.device == "0:40"
    assert mnt.volumes == (MountPoint("/data dir", "ext4", "/dev/sda1", "/old", "8:1"),)  # the one on top
    assert evidence.cgroup_paths(parse_cgroup(b"0::/kubepods/pod1/abc\n")) == (2, {"": "/kubepods/pod1/abc"})
    v1, paths = evidence.cgroup_paths(parse_cgroup(b"4:cpu,cpuacct:/k/c\n9:memory:/k/c\n0::/\n"))
    assert v1 == 1 and paths["cpu"] == "/k/c" and paths["memory"] == "/k/c"
    (tmp_path / "cpu,cpuacct/k/c").mkdir(parents=True)
    (tmp_path / "cpu,cpuacct/k/c/cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "memory/k/c").mkdir(parents=True)
    (tmp_path / "memory/k/c/memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert evidence.cgroup_limits(str(tmp_path), v1, paths) == ("/k/c", "max", "max", "")
    path, cpu, mem, err = evidence.cgroup_limits(str(tmp_path), 2, {"": "/gone"})
    assert (path, cpu, mem) == ("/gone", "", "") and "cpu limit unreadable" in err and "memory limit unreadable" in err
    assert "outside the reader's cgroup namespace" in evidence.cgroup_limits(str(tmp_path), 2, {"": "/../x"})[3]
    (tmp_path / "pod/c").mkdir(parents=True)
    (tmp_path / "pod/c/cgroup.controllers").write_text("memory pids\n")
    (tmp_path / "pod/c/memory.max").write_text("268435456\n")
    assert evidence.cgroup_limits(str(tmp_path), 2, {"": "/pod/c"}) == (
        "/pod/c", "", "268435456", "the cpu controller is not enabled on this cgroup (its cgroup.controllers: memory pids)")
    assert evidence.parse_status_nspid(b"Name:\tsleep\nNSpid:\t4242\t7\n") == ("sleep", 7)
    assert evidence.parse_sysvipc("sem", "") == [] and evidence.parse_sysvipc("shm", "key shmid\n1 2\n") == []
    assert evidence.parse_if_inet6(b"zz 01 40 00 80 eth0\n") == ()


def _member(name: str, ns: dict[str, int], details: MemberDetails) -> Member:
    return Member(name, "app", name, "running", Process(ProcessId(1, 1), 0, 0, "root", name, name),
                  {t: NamespaceId(1, i) for t, i in ns.items()}, details=details)


def test_sentences_from_the_evidence():
    eth0 = NetDetails(("lo", "eth0"), (NetAddress("inet", "127.0.0.1", None, ""), NetAddress("inet", "10.88.0.7", 16, "eth0")))
    d = MemberDetails(net=eth0, uts=UtsDetails("demo"), user=UserDetails(0, 0, 0),
                      ipc=IpcDetails((IpcObject("shm", 0x1234, 5, 65536, 0),)),
                      mnt=MntDetails(shm=MountPoint("/dev/shm", "tmpfs", "shm", "/", "0:40")),
                      pid=PidDetails(2, (SeenProcess(100, 1, "pause"), SeenProcess(101, 7, "sleep"))))
    ns = {"net": 5, "uts": 6, "ipc": 7, "pid": 8, "user": 1}
    a, b = _member("web", ns, d), _member("side", ns, d)
    assert sharing.details_evidence("net", [a, b]) == "all running members: same IP 10.88.0.7 on eth0 (interfaces lo, eth0)"
    assert sharing.details_evidence("uts", [a, b]) == "all running members: same hostname demo"
    assert sharing.details_evidence("user", [a, b], NamespaceId(1, 1)) == (
        "all running members: root in the container is uid 0 on the node; its process runs as uid 0 on the node "
        "(the node's user namespace)")
    assert sharing.details_evidence("ipc", [a]) == (
        "web: System V objects: 1 shared memory segment (key 0x00001234 id 5 65536 bytes); /dev/shm on device 0:40 (tmpfs)")
    assert sharing.details_evidence("ipc", [a._replace(details=d._replace(ipc=IpcDetails(), mnt=MntDetails()))]) == (
        "web: System V objects: none")
    assert sharing.details_evidence("pid", [a]) == "web: 2 processes: pause (1), sleep (7)"
    other = _member("db", {"uts": 9}, d._replace(uts=UtsDetails(error="entering the uts namespace: permission denied")))
    assert sharing.details_evidence("uts", [a, other]) == (
        "web: hostname demo; db: no answer (entering the uts namespace: permission denied)")
    assert sharing.details_evidence("time", [a]) == ""


def test_bytes_that_are_not_utf8_cross_the_wire_as_escapes():
    from nsinspect.agent import convert
    from nsinspect.agent.v1 import agent_pb2 as pb

    hostname = evidence.clean(os.fsdecode(b"web\xff"))
    assert hostname == "web\\xff"
    assert evidence.parse_net_dev(b"h1\nh2\n  et\xfe0: 1 2\n") == ("et\\xfe0",)
    mounts = evidence.parse_mountinfo(b"1 0 0:1 / /v\xfcl rw - ext4 /dev/x rw\n")
    assert mounts[0].target == "/v\\xfcl"
    d = MemberDetails(uts=UtsDetails(hostname), mnt=MntDetails(volumes=tuple(mounts)))
    m = pb.MemberEvidence()
    convert._evidence(m, d)
    assert convert._from_evidence(MemberDetails, pb.MemberEvidence.FromString(m.SerializeToString())) == d


def test_volumes_two_members_mount_are_named():
    vol = MountPoint("/data", "ext4", "/dev/sda1", "/var/lib/kubelet/pods/u/volumes/empty-dir/data", "8:1")
    own = MountPoint("/cache", "tmpfs", "tmpfs", "/", "0:77")
    root = MountPoint("/", "overlay", "overlay", "/", "0:50")
    a = _member("web", {"mnt": 1}, MemberDetails(mnt=MntDetails(root, (vol, own))))
    b = _member("side", {"mnt": 2}, MemberDetails(mnt=MntDetails(root._replace(device="0:51"), (vol._replace(target="/in"),))))
    assert sharing.details_evidence("mnt", [a, b]) == (
        "web: root overlay overlay (device 0:50), volumes /data (ext4 8:1), /cache (tmpfs 0:77); "
        "side: root overlay overlay (device 0:51), volumes /in (ext4 8:1); web, side mount the same volume at /data and /in (device 8:1)")
