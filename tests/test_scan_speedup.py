"""The C speed-up of the node scan (nsinspect/node/_scan.c) gives what the pure-Python loop gives.

Compared both ways on fixture trees with every odd case the C code hands back to Python, on a
snapshot of this machine's /proc (the CLI's JSON, byte for byte), and on the live /proc.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import NS_TYPES, make_proc, run_cli

from nsinspect.node import discover, procfs
from nsinspect.node.procfs import ProcFS

ROOT = Path(__file__).resolve().parent.parent
HOST = {t: 4026531830 + i for i, t in enumerate(NS_TYPES)}


@pytest.fixture(scope="module")
def c_scan():
    """The compiled module, built in place (as ``setup.py build_ext --inplace``) when it is not there yet."""
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=ROOT, capture_output=True, text=True)
    try:
        return importlib.import_module("nsinspect.node._scan")
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"CI has a C compiler: the speed-up must build ({r.stderr.strip()})")
        pytest.skip("the C speed-up cannot be built here (no C compiler or Python headers)")


PURE, FAST = {"NSINSPECT_PURE_PYTHON": "1"}, {"NSINSPECT_PURE_PYTHON": ""}


def scan_module_used(env: dict[str, str]) -> object:
    """Which C module a CLI run with this environment uses (None: the pure-Python loop)."""
    code = "from nsinspect.node import procfs; print(procfs._c is not None)"
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **env), capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


def both_ways(monkeypatch, c_scan, fn):
    """fn() with the pure-Python loop, then with the C one."""
    monkeypatch.setattr(procfs, "_c", None)
    pure = fn()
    monkeypatch.setattr(procfs, "_c", c_scan)
    return pure, fn()


@pytest.fixture
def odd_tree(tmp_path):
    """A fixture procfs with every case the C loop leaves to Python, and a few it takes."""
    root = tmp_path / "proc"
    make_proc(root, 1, HOST, comm="init", ppid=0, cmdline=["/sbin/init", "--x"])
    make_proc(root, 2, HOST, comm="kthreadd", ppid=0)
    pod = dict(HOST, net=4026532500, uts=4026532501)
    make_proc(root, 10, pod, comm="pause", cmdline=["/pause"])
    make_proc(root, 11, dict(pod, mnt=4026532502), comm="web (x) server", cmdline=["nginx", "", "-g", "daemon off;"])
    make_proc(root, 12, {"pid": HOST["pid"], "user": HOST["user"]}, comm="defunct")  # a zombie
    make_proc(root, 13, dict(HOST, ipc="not-a-namespace"), comm="odd")
    make_proc(root, 14, dict(HOST, net="net:[ 4026532600]"), comm="space")  # int() takes it, the strict parser not
    make_proc(root, 15, dict(HOST, net="net:[99999999999999999999]"), comm="huge")  # beyond 64 bits
    make_proc(root, 16, dict(HOST, net="ipc:[4026532700]"), comm="wrong type")
    make_proc(root, 17, dict(HOST, net="net:[]"), comm="empty")
    make_proc(root, 18, dict(pod, net=4026532800), comm="neg", ppid=-1)  # a stat field int() takes, neither parser
    make_proc(root, 19, dict(pod, net=4026532801), comm="bad", cmdline=["a\udce2\udc82", "\udce2", "b"])
    stat = (root / "19" / "stat").read_bytes()
    (root / "19" / "stat").write_bytes(stat.replace(b"(bad)", b"(bad\xff\xe2\x82 utf8)"))  # not UTF-8
    make_proc(root, 20, dict(pod, net=4026532802), comm="nocmd", cmdline=["x"])
    (root / "20" / "cmdline").unlink()
    make_proc(root, 21, dict(pod, net=4026532803), comm="nostat")
    (root / "21" / "stat").unlink()
    make_proc(root, 22, dict(pod, net=4026532804), comm="short")
    (root / "22" / "stat").write_bytes(b"22 (short) S 1 2 3\n")
    (root / "23").mkdir()  # a pid directory without ns
    make_proc(root, 24, dict(pod, net=4026532805), comm="trailing", cmdline=["a", "b", "", ""])
    make_proc(root, 25, dict(pod, net=4026532806), comm="x" * 3000)  # a stat line near the C buffer's size
    make_proc(root, 26, dict(pod, net=4026532807), comm="y" * 5000)  # beyond it: read by Python
    (root / "self").mkdir()
    return root


def test_pids_listed_the_same_both_ways(odd_tree, monkeypatch, c_scan):
    """ProcFS.pids() in C and in Python: only what a kernel names a process (no leading zero, no sign, at most
    PID_MAX_LIMIT, digits only), ascending."""
    for name in ("0", "007", "+5", "-3", "4194304", "4194305", "12345678", "9x", "\u0661\u0662", "self", "thread-self"):
        (odd_tree / name).mkdir(exist_ok=True)
    proc = ProcFS(str(odd_tree))
    pure, fast = both_ways(monkeypatch, c_scan, proc.pids)
    assert pure == fast == [1, 2, *range(10, 27), 4194304]
    live = ProcFS()
    pure, fast = both_ways(monkeypatch, c_scan, live.pids)
    assert os.getpid() in fast and fast == sorted(fast) and set(pure) & set(fast)


def test_odd_tree_same_both_ways(odd_tree, monkeypatch, c_scan):
    proc = ProcFS(str(odd_tree))
    pure, fast = both_ways(monkeypatch, c_scan, lambda: proc.scan(parallel=False))
    assert pure == fast
    seen, stats = fast
    # Spot checks that the comparison covers what it should.
    assert stats.vanished == 1  # 23: no ns directory
    # What the kernel never writes is no namespace and no process (issue 21, docs/fuzzing.md): 14's link (a space
    # that int() took), 15's (beyond 64 bits), 18's stat line (a ppid of -1, also taken by int() once).
    assert 4026532600 not in seen["net"] and 99999999999999999999 not in seen["net"]
    assert seen["net"][4026532800][0] == 1 and seen["net"][4026532800][2] is None
    assert seen["net"][4026532802][2] is None  # no cmdline file: read as a process gone
    assert seen["net"][4026532801][2].comm == "bad\\xff\\xe2\\x82 utf8"  # not UTF-8: \xNN, in C and Python
    assert seen["net"][4026532801][2].cmdline == "a\\xe2\\x82 \\xe2 b"
    assert seen["net"][4026532804][2] is None and seen["net"][4026532803][2] is None  # short stat, no stat
    assert seen["net"][4026532806][2].comm == "x" * 3000
    assert seen["net"][4026532807][2].comm == "y" * 5000
    assert seen["net"][4026532805][2].cmdline == "a b"
    for types in (("net",), ("pid", "user"), ()):
        pure, fast = both_ways(monkeypatch, c_scan, lambda t=types: proc.scan(t, parallel=False))
        assert pure == fast, types


def test_odd_tree_cli_json_same_both_ways(odd_tree, c_scan):
    assert scan_module_used(FAST) and not scan_module_used(PURE)
    pure = run_cli("--proc", str(odd_tree), "node", "-o", "json", env=PURE)
    fast = run_cli("--proc", str(odd_tree), "node", "-o", "json", env=FAST)
    assert pure.returncode == 0 and fast.returncode == 0, (pure.stderr, fast.stderr)
    assert pure.stdout == fast.stdout


def snapshot_proc(dest: Path) -> int:
    """A copy of this machine's /proc as a fixture tree: every process's ns links, stat, cmdline and owner."""
    n = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        src, d = Path("/proc", name), dest / name
        try:
            links = {}
            for t in NS_TYPES:
                try:
                    links[t] = os.readlink(src / "ns" / t)
                except FileNotFoundError:
                    pass  # a zombie's
            stat, cmdline, uid = (src / "stat").read_bytes(), (src / "cmdline").read_bytes(), os.stat(src).st_uid
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        (d / "ns").mkdir(parents=True)
        for t, target in links.items():
            os.symlink(target, d / "ns" / t)
        (d / "stat").write_bytes(stat)
        (d / "cmdline").write_bytes(cmdline)
        if os.geteuid() == 0:
            os.lchown(d, uid, -1)
        n += 1
    return n


def test_snapshot_of_real_proc_cli_json_byte_for_byte(tmp_path, c_scan):
    """This machine's processes, frozen: the JSON of `node -o json` is the same text both ways."""
    snap = tmp_path / "proc"
    assert snapshot_proc(snap) > 10
    outs = {}
    for name, env in (("pure", PURE), ("c", FAST)):
        for types in ((), ("-t", "net", "-t", "pid")):
            r = run_cli("--proc", str(snap), "node", *types, "-o", "json", env=env)
            assert r.returncode == 0, r.stderr
            outs[name, types] = r.stdout
    assert outs["pure", ()] == outs["c", ()]
    assert outs["pure", ("-t", "net", "-t", "pid")] == outs["c", ("-t", "net", "-t", "pid")]
    assert len(json.loads(outs["c", ()])["namespaces"]) >= 8


def test_live_proc_same_both_ways(monkeypatch, c_scan):
    """On the live /proc, pid by pid (each read both ways back to back; a pid whose reads differ is read
    again, since a process may exit or exec in between), then the whole scan in worker processes."""
    proc = ProcFS()
    fd, differ = proc.fd, []
    pids = proc.pids()
    for pid in pids:
        for _attempt in range(3):
            pure: list = [{} for _ in NS_TYPES]
            pure_counts = procfs._scan_pids(fd, [pid], NS_TYPES, pure)
            agg, vanished, denied, retry = c_scan.links(fd, [pid], NS_TYPES)
            if retry:
                more = procfs._scan_pids(fd, retry, NS_TYPES, agg)
                vanished, denied = vanished + more[0], denied + more[1]
            if (pure, pure_counts) != (agg, (vanished, denied)):
                continue
            d_fast = c_scan.describe(fd, pid)
            try:
                d_pure = procfs._describe(fd, pid)
            except (procfs.NoSuchProcess, procfs.AccessDenied):
                d_pure = None
            if d_fast is None or d_fast == d_pure:
                break
        else:
            differ.append(pid)
    assert not differ, f"pids read differently by C and Python: {differ}"
    # Most processes take the C path (a retry is the exception: zombies, races).
    agg, vanished, denied, retry = c_scan.links(fd, pids, NS_TYPES)
    assert len(retry) < len(pids) // 4
    monkeypatch.setattr(procfs, "PARALLEL_MIN_PIDS", 4)
    pure, fast = both_ways(monkeypatch, c_scan, lambda: discover.node_view(proc))
    # Processes come and go between the two scans: compare the namespaces both saw with the same lowest pid.
    a = {(n.type, n.id.ino, n.pid): n.process for n in pure.namespaces}
    b = {(n.type, n.id.ino, n.pid): n.process for n in fast.namespaces}
    common = a.keys() & b.keys()
    assert len(common) >= 0.9 * max(len(a), len(b))
    changed = [k for k in common if a[k] != b[k] and a[k] is not None and b[k] is not None and a[k].id == b[k].id]
    assert len(changed) <= 2, changed  # only a process that exec'd between the scans


def test_install_without_a_compiler_builds_no_extension(tmp_path):
    """`pip install .` must not fail without a C compiler: the build warns and goes on."""
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "build", "*.so", "__pycache__", "tests"))
    env = {k: v for k, v in os.environ.items() if k != "NSINSPECT_PURE_PYTHON"}
    env["CC"] = "/nonexistent/cc"
    r = subprocess.run([sys.executable, "setup.py", "build_ext", "--build-lib", str(tmp_path / "lib"), "--build-temp", str(tmp_path / "t")],
                       cwd=src, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "the pure-Python scan will be used" in r.stderr
    assert not list(tmp_path.rglob("*.so"))


def test_fd_links_same_both_ways(tmp_path, monkeypatch, c_scan):
    """The fd pass (hidden.fd_holders) in C and in Python on fixture fd tables, odd links included: what C
    does not parse it hands back, and the answer keeps the order of the pids."""
    from nsinspect.node import hidden

    root = tmp_path / "proc"
    tables = {
        30: {"0": "net:[4026532900]", "1": "pipe:[5]", "2": "/dev/null", "7": "ipc:[4026532901]"},
        31: {"0": "net:[99999999999999999999]", "3": "net:[4026532900]"},  # beyond 64 bits: no inode, in C and Python
        32: {"4": "net:[ 4026532900]", "5": "net:[]", "6": "uts:[4026532903]", "9": "net:[4026532900]"},
        33: {"1": "time:[4026532904]", "2": "anon_inode:[eventfd]", "8": "x" * 300},
        34: {},
    }
    for pid, links in tables.items():
        (root / str(pid) / "fd").mkdir(parents=True)
        for name, target in links.items():
            os.symlink(target, root / str(pid) / "fd" / name)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        pids = [30, 31, 32, 33, 34, 35]  # 35: no such process
        for types in (NS_TYPES, ("net",), ("uts", "ipc")):
            pure, fast = both_ways(monkeypatch, c_scan, lambda t=types: hidden.fd_holders(fd, pids, t))
            assert pure == fast, types
        held, _denied, _untyped = hidden.fd_holders(fd, pids, NS_TYPES)
        assert held["net", 4026532900] == [(30, 0), (31, 3), (32, 9)]
        assert ("net", 99999999999999999999) not in held  # issue 21: no kernel gives it
        assert c_scan.fds(fd, pids, NS_TYPES)[1] == [31, 32]  # handed back: a link C does not take
        # fds the caller says are not on a namespace (the agent's own pidfds) are not read, in C and in Python (pids
        # 31 and 32 are handed back to Python: it skips them too).
        for skip in ({0, 7, 9}, {9}, set(range(1, 200))):
            pure, fast = both_ways(monkeypatch, c_scan, lambda s=skip: hidden.fd_holders(fd, pids, NS_TYPES, s))
            assert pure == fast, skip
            assert not {num for held_by in fast[0].values() for _pid, num in held_by} & skip, skip
        held = hidden.fd_holders(fd, pids, NS_TYPES, {7, 9})[0]
        assert held["net", 4026532900] == [(30, 0), (31, 3)] and ("ipc", 4026532901) not in held
        assert ("time", 4026532904) in held and ("uts", 4026532903) in held  # fds 1 and 6: in the bitmap's range, not set
    finally:
        os.close(fd)


def test_cpu_clocks_moved_same_both_ways(c_scan):
    """``_scan.moved`` (the agent's warm node: which processes ran) tells what ``clock_gettime`` tells from Python:
    a process that sleeps keeps its clock, one that spins moves it, one that is gone answers -1."""
    from nsinspect.node import warm

    idle = subprocess.Popen(["sleep", "60"])
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    gone = subprocess.Popen(["true"])
    gone.wait()
    try:
        import time

        time.sleep(0.3)
        pids = [idle.pid, busy.pid]
        before = [warm.cpu_clock(p) for p in pids] + [0]
        time.sleep(0.2)
        got = c_scan.moved([*pids, gone.pid], before)
        assert [k for k, _now in got] == [1, 2]
        assert got[0][1] > before[1] and got[1][1] == -1
        monkey = pytest.MonkeyPatch()
        monkey.setattr(procfs, "_c", None)
        try:
            assert [k for k, _now in warm.moved([*pids, gone.pid], before)] == [1, 2]
        finally:
            monkey.undo()
        with pytest.raises(ValueError):
            c_scan.moved([0], [0])
    finally:
        idle.kill()
        busy.kill()
        idle.wait()
        busy.wait()
