"""`nsinspect node` and `nsinspect pid` on real namespaces, against readlink and lsns."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time

import pytest
from helpers import (
    NS_TYPES,
    assert_one_sentence_error,
    cli_json,
    lsns_flat,
    node_truth,
    readlink_ns,
    require_root,
    run_cli,
    spawn_tree,
    truth,
)

from nsinspect.node import discover, fanout, procfs
from nsinspect.node.procfs import ProcFS

pytestmark = pytest.mark.root


@pytest.fixture
def pod_like():
    """A tree in fresh net/ipc/uts/mnt/pid namespaces: unshare, sh (pid 1 inside), 2 sleeps."""
    require_root()
    tree = spawn_tree(
        ["--net", "--ipc", "--uts", "--mount", "--pid"], "sleep 300 & sleep 300 & wait", expect=4
    )
    yield tree
    tree.stop()


def test_pid_matches_readlink(pod_like):
    node = node_truth()
    for pid in pod_like.pids:
        data = cli_json("pid", str(pid))
        assert data["pid"] == pid
        assert data["namespaces"] == truth(pid)
        assert data["node"] == {t: truth(pid)[t] == node[t] for t in NS_TYPES}
        assert data["pod"] is None and data["container"] is None
    leaf = pod_like.pids[-1]
    data = cli_json("pid", str(leaf))
    # Fresh namespaces are not the node's; user, cgroup and time were not unshared.
    assert not any(data["node"][t] for t in ("net", "ipc", "uts", "mnt", "pid"))
    assert all(data["node"][t] for t in ("user", "cgroup", "time"))


def test_node_matches_kernel_and_lsns(pod_like):
    data = cli_json("node")
    rows = {(r["type"], r["ns"]): r for r in data["namespaces"]}
    lsns = {(r["type"], r["ns"]): r for r in lsns_flat()}
    for t in ("net", "ipc", "uts", "mnt", "pid"):
        members = [p for p in pod_like.pids if readlink_ns(p, t) is not None]
        inos = {readlink_ns(p, t) for p in members}
        if t == "pid":  # unshare itself stays in the node's pid namespace; its children do not
            inos.discard(node_truth()["pid"])
            members = [p for p in members if readlink_ns(p, t) in inos]
        assert len(inos) == 1, (t, inos)
        ino = inos.pop()
        row = rows[(t, ino)]
        # Nobody else can join these namespaces during the test: exact counts.
        assert row["nprocs"] == len(members) == lsns[(t, ino)]["nprocs"], t
        assert row["pid"] == min(members) == lsns[(t, ino)]["pid"], t
        assert row["command"] == lsns[(t, ino)]["command"], t
        assert row["node"] is False
    assert data["node_namespaces"] == node_truth()
    for t, ino in node_truth().items():
        assert rows[(t, ino)]["node"] is True


def test_every_namespace_lsns_sees_we_see(pod_like):
    ours = {(r["type"], r["ns"]) for r in cli_json("node")["namespaces"]}
    theirs = {(r["type"], r["ns"]) for r in lsns_flat()}
    # Processes come and go between the two runs; our test tree's namespaces must be in both.
    tree_ns = {(t, readlink_ns(p, t)) for p in pod_like.pids for t in NS_TYPES}
    assert tree_ns <= ours and tree_ns <= theirs


def test_type_filter(pod_like):
    data = cli_json("node", "-t", "net", "-t", "uts")
    assert {r["type"] for r in data["namespaces"]} == {"net", "uts"}
    assert (("net", readlink_ns(pod_like.pids[-1], "net"))) in {(r["type"], r["ns"]) for r in data["namespaces"]}


def test_table_and_wide_output(pod_like):
    r = run_cli("node", "-t", "net")
    assert r.returncode == 0
    header = r.stdout.splitlines()[0].split()
    assert header == ["NS", "TYPE", "NPROCS", "PID", "USER", "COMMAND"]
    assert str(readlink_ns(pod_like.pids[-1], "net")) in r.stdout
    wide = run_cli("node", "-t", "net", "-o", "wide").stdout.splitlines()[0].split()
    assert "PPID" in wide and "NODE" in wide
    y = run_cli("node", "-t", "net", "-o", "yaml")
    assert y.returncode == 0 and "namespaces:" in y.stdout


def test_zombie():
    require_root()
    # The parent never reaps its child: the child stays a zombie until the parent dies.
    parent = subprocess.Popen(
        ["python3", "-c", "import os, time\nif os.fork() == 0: os._exit(0)\ntime.sleep(60)"],
        start_new_session=True,
    )
    try:
        from helpers import children_of

        deadline = time.monotonic() + 10
        zombie = None
        while time.monotonic() < deadline and zombie is None:
            for kid in children_of(parent.pid):
                with open(f"/proc/{kid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        zombie = kid
            time.sleep(0.02)
        assert zombie is not None
        data = cli_json("pid", str(zombie))
        assert data["namespaces"] == truth(zombie)
        assert data["namespaces"]["net"] is None and data["namespaces"]["pid"] is not None
        # A zombie is not a vanished process.
        view = discover.node_view(ProcFS(), ("net", "user"), parallel=False)
        user = next(n for n in view.namespaces if n.type == "user" and n.id.ino == truth(zombie)["user"])
        assert user.nprocs >= 2
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()


def test_unprivileged_user_sees_denied_count():
    require_root()
    r = run_cli("node", "-o", "json", user=65534)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["scan"]["denied"] > 0 and data["scan"]["as_root"] is False
    assert data["scan"]["denied"] == len(data["scan"]["denied_pids"])
    table = run_cli("node", user=65534)
    assert "could not be read (permission denied" in table.stdout and "run as root" in table.stdout
    r = run_cli("pid", "2", user=65534)
    assert_one_sentence_error(r, 5)


def test_errors_have_contract_exit_codes():
    assert_one_sentence_error(run_cli("pid", "4194000"), 3)  # a pid the kernel could give, no such process
    assert_one_sentence_error(run_cli("pid", "999999999"), 2)  # above any pid_max: malformed (issue 21)
    assert_one_sentence_error(run_cli("pid", "0"), 2)
    assert_one_sentence_error(run_cli("pid", "abc"), 2)
    assert_one_sentence_error(run_cli("node", "-t", "bogus"), 2)
    assert_one_sentence_error(run_cli("node", "-o", "xml"), 2)


def test_version_and_help():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("nsinspect ")
    r = run_cli("--help")
    assert r.returncode == 0 and "node" in r.stdout and "pid" in r.stdout


@pytest.fixture
def force_parallel(monkeypatch):
    monkeypatch.setattr(procfs, "PARALLEL_MIN_PIDS", 4)


def _fresh(view, tree):
    ours = {(t, readlink_ns(p, t)) for p in tree.pids for t in ("net", "ipc", "uts", "mnt")}
    return {(n.type, n.id.ino): (n.nprocs, n.pid) for n in view.namespaces if (n.type, n.id.ino) in ours}


def test_parallel_scan_equals_serial(pod_like, force_parallel):
    # fork() needs a single-threaded process: a thread some earlier test leaked would silently serialize the scan.
    assert procfs._workers_for(len(ProcFS().pids())) >= 2 or os.cpu_count() == 1, threading.enumerate()
    serial = _fresh(discover.node_view(ProcFS(), parallel=False), pod_like)
    parallel = _fresh(discover.node_view(ProcFS(), parallel=True), pod_like)
    assert serial == parallel and len(serial) == 4


def test_failed_worker_is_redone(pod_like, force_parallel, monkeypatch):
    serial = _fresh(discover.node_view(ProcFS(), parallel=False), pod_like)

    def broken(*a, **k):
        raise RuntimeError("worker fails")

    monkeypatch.setattr(fanout.marshal, "dumps", broken)  # only the forked workers (the scan's and the later passes') call dumps
    assert _fresh(discover.node_view(ProcFS(), parallel=True), pod_like) == serial


def test_scan_races_with_process_churn(force_parallel):
    """Scan over and over while processes (some in fresh namespaces) are created and killed."""
    require_root()
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:
        procs: list[subprocess.Popen] = []
        try:
            while not stop.is_set():
                cmd = random.choice([["sleep", "5"], ["unshare", "--net", "--uts", "sleep", "5"], ["true"]])
                procs.append(subprocess.Popen(cmd))
                if len(procs) > 20:
                    victim = procs.pop(random.randrange(len(procs)))
                    victim.kill()
                    victim.wait()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            for p in procs:
                p.kill()
                p.wait()

    t = threading.Thread(target=churn)
    t.start()
    try:
        proc = ProcFS()
        deadline = time.monotonic() + 8
        scans = 0
        while time.monotonic() < deadline:
            view = discover.node_view(proc, parallel=(scans % 2 == 0))
            s = view.stats
            # Every listed process was counted once: in the user namespace it is in
            # (zombies keep that link), or as vanished, or as denied.
            in_user = sum(n.nprocs for n in view.namespaces if n.type == "user")
            assert in_user + s.vanished + len(s.denied) == s.processes
            # A row with processes has a positive lowest pid; one without is held by a bind mount,
            # an fd, or as the parent or owner of another row.
            assert all(n.pid > 0 for n in view.namespaces if n.nprocs)
            above = {r.parent for r in view.namespaces} | {r.owner for r in view.namespaces}
            assert all(n.mounts or n.fds or n.id in above for n in view.namespaces if not n.nprocs)
            scans += 1
        assert scans >= 5
    finally:
        stop.set()
        t.join()
    assert not errors


def test_watched_process_checked_by_pidfd(monkeypatch, tmp_path):
    """ProcFS(watch=True), the agent's: a process found alive is checked again through a pidfd (no
    /proc read) while it runs; a zombie still counts as there, a reaped one not, as with the stat check."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        proc = ProcFS(watch=True)
        me = procfs.ProcessId(child.pid, proc.start_time(child.pid))
        assert not proc.is_alive(me._replace(start_time=me.start_time + 1))  # another process: no pidfd kept
        assert proc._pidfds == {}
        assert proc.is_alive(me) and list(proc._pidfds) == [me]
        reads = []
        real_read = procfs._read_at
        monkeypatch.setattr(procfs, "_read_at", lambda *a, **k: reads.append(a) or real_read(*a, **k))
        assert proc.is_alive(me) and proc.is_alive(me)
        assert reads == []  # answered by the pidfd
        child.kill()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # a zombie now: exited, not reaped
        assert proc.is_alive(me) and len(reads) == 1 and proc._pidfds == {}  # the stat line answered
        child.wait()
        assert not proc.is_alive(me)
    finally:
        child.kill()
        child.wait()
    # A fixture tree is not our pid namespace's procfs: no pidfds there.
    (tmp_path / "proc" / str(child.pid)).mkdir(parents=True)
    (tmp_path / "proc" / str(child.pid) / "stat").write_bytes(f"{child.pid} (x) S 1 ".encode() + b"0 " * 17 + f"{me.start_time} 0\n".encode())
    fixture = ProcFS(str(tmp_path / "proc"), watch=True)
    assert fixture.is_alive(me) and fixture.is_alive(me) and fixture._pidfds == {}


def test_watched_checks_from_many_threads():
    """The agent checks its members from many threads at once: while a process runs every check says
    so, and every check that starts after it was reaped says it is gone (one epoll set of pidfds,
    no lock on the way to a yes)."""
    children = [subprocess.Popen(["sleep", "30"]) for _ in range(6)]
    proc = ProcFS(watch=True)
    try:
        ids = [procfs.ProcessId(c.pid, proc.start_time(c.pid)) for c in children]
        killed: set[procfs.ProcessId] = set()  # from just before the kill
        reaped: set[procfs.ProcessId] = set()
        errors: list[str] = []
        stop = threading.Event()

        def check() -> None:
            while not stop.is_set():
                for i in ids:
                    gone = i in reaped  # reaped before the check starts: it must say gone
                    alive = proc.is_alive(i)
                    if (alive and gone) or (not alive and i not in killed):  # not killed by its end: there
                        errors.append(f"{i}: alive={alive} reaped-before={gone}")

        threads = [threading.Thread(target=check) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        for c, i in list(zip(children, ids, strict=True))[:3]:
            killed.add(i)
            c.kill()
            c.wait()
            reaped.add(i)
            time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join()
        assert not errors, errors[:5]
        proc.is_alive(ids[0])
        assert set(proc._pidfds) == set(ids[3:])  # the exited ones' pidfds were dropped
    finally:
        for c in children:
            c.kill()
            c.wait()
        proc.close()


def test_watched_pidfds_are_bounded_and_swept():
    """The kept pidfds stay within their bound: those of exited processes are closed to make room."""
    proc = ProcFS(watch=True)
    proc.is_alive(procfs.ProcessId(1, proc.start_time(1)))
    proc._pidfds_max = 3
    children = [subprocess.Popen(["sleep", "30"]) for _ in range(4)]
    try:
        ids = [procfs.ProcessId(c.pid, proc.start_time(c.pid)) for c in children]
        assert all(proc.is_alive(i) for i in ids)
        assert len(proc._pidfds) == 3 and ids[3] not in proc._pidfds  # full: checked by its stat line
        children[1].kill()
        children[1].wait()
        assert proc.is_alive(ids[3]) and ids[3] in proc._pidfds and ids[1] not in proc._pidfds
    finally:
        for c in children:
            c.kill()
            c.wait()
    fds = list(proc._pidfds.values())
    proc.close()
    assert proc._pidfds == {}
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_watched_exits_of_more_processes_than_one_epoll_call_returns_by_default():
    """More kept processes exit at once than epoll_wait returns by default (1023 in Python): one
    ``note_exits()`` still tells every one of them (the agent checks a pod's members after one call)."""
    proc = ProcFS(watch=True)
    proc.is_alive(procfs.ProcessId(1, proc.start_time(1)))
    proc._pidfds_max = 1100
    r, w = os.pipe()
    pids = []
    try:
        for _ in range(1030):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child waits for the pipe to close, then exits
                os.close(w)
                os.read(r, 1)
                os._exit(0)
            pids.append(pid)
        ids = [procfs.ProcessId(pid, proc.start_time(pid)) for pid in pids]
        assert all(proc.is_alive(i) for i in ids) and len(proc._pidfds) == 1030 + 1
    finally:
        os.close(w)
        os.close(r)
        for pid in pids:
            os.waitpid(pid, 0)
    try:
        proc.note_exits()
        assert [i for i in ids if proc.is_alive(i, exits_noted=True)] == []
    finally:
        proc.close()
