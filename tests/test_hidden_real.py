"""Namespaces no process is in, and the hierarchy, on real namespaces: against readlink, stat and lsns.

Made here: a bind-mounted net namespace (``ip netns add``, in the node's mount namespace and in a
private one), namespaces held only by a helper's open fds, nested user + pid namespaces
(``unshare --user --pid --fork``), one of them with no process at all, and a chrooted process whose
mountinfo shows less than its mount namespace holds.  The passes run in C where it is built
(nsinspect/node/_scan.c), in Python otherwise: both give the same answers here.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from helpers import cli_json, comm, node_truth, readlink_ns, require_root, run_cli

from nsinspect.agent import convert
from nsinspect.agent.v1 import agent_pb2 as pb
from nsinspect.model import NS_TYPES
from nsinspect.node import discover, hidden, procfs
from nsinspect.node.procfs import ProcFS
from nsinspect.render import dump_json
from nsinspect.render.data import node_json, to_data

pytestmark = pytest.mark.root


def rows_by_ns(data: dict) -> dict[int, dict]:
    return {r["ns"]: r for r in data["namespaces"]}


def wait_for(pred, what: str, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def kill_session(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


@pytest.fixture
def netns():
    """``ip netns add``: a net namespace no process is in, bind-mounted at /run/netns/NAME."""
    require_root()
    name = f"nsi-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name, os.stat(f"/run/netns/{name}").st_ino
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_bind_mounted_namespace_without_processes(netns):
    name, ino = netns
    data = cli_json("node")
    row = rows_by_ns(data)[ino]
    assert row["type"] == "net" and row["nprocs"] == 0
    assert row["pid"] is None and row["command"] is None and row["user"] is None
    assert row["nsfs"] == f"/run/netns/{name}"
    assert row["mounts"] == [{"path": f"/run/netns/{name}", "mnt_ns": node_truth()["mnt"]}]
    assert row["fds"] == []
    # Owned by the user namespace ip ran in (the node's); a net namespace has no parent.
    assert row["ons"] == node_truth()["user"] and row["pns"] == 0
    table = run_cli("node", "-t", "net").stdout
    line = next(line for line in table.splitlines() if line.startswith(str(ino)))
    assert line.split()[:3] == [str(ino), "net", "0"]
    assert line.endswith(f"(bind mount /run/netns/{name})")


def test_nsfs_column_as_lsns_prints_it(netns):
    """With a process in it, lsns shows the bind mount in NSFS: the same path, the same row."""
    name, ino = netns
    proc = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "300"], start_new_session=True)
    try:
        wait_for(lambda: any(readlink_ns(p, "net") == ino for p in [proc.pid, *children(proc.pid)]), "the sleep in the netns")
        lsns = json.loads(subprocess.run(["lsns", "-J", "-t", "net", "-o", "NS,NPROCS,NSFS,PNS,ONS"], check=True,
                                         capture_output=True, text=True).stdout)["namespaces"]
        theirs = next(r for r in lsns if r["ns"] == ino)
        ours = rows_by_ns(cli_json("node", "-t", "net"))[ino]
        assert ours["nprocs"] == 1
        assert ours["nsfs"] == theirs["nsfs"] == f"/run/netns/{name}"
        assert (ours["pns"], ours["ons"]) == (theirs["pns"], theirs["ons"])
    finally:
        kill_session(proc)


def test_bind_mount_seen_only_in_another_mount_namespace():
    """A net namespace pinned in a private mount namespace: only that namespace's mountinfo shows it."""
    require_root()
    name = f"nsi-{uuid.uuid4().hex[:8]}"
    script = f"ip netns add {name} && stat -c %i /run/netns/{name} && exec sleep 300"
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        ino = int(proc.stdout.readline())
        wait_for(lambda: readlink_ns(proc.pid, "mnt") != node_truth()["mnt"] and comm(proc.pid) == "sleep", "the sleep")
        # In the node's mount namespace the mount point is an empty file, not the namespace.
        assert os.stat(f"/run/netns/{name}").st_ino != ino
        row = rows_by_ns(cli_json("node"))[ino]
        assert row["nprocs"] == 0 and row["type"] == "net"
        assert row["mounts"] == [{"path": f"/run/netns/{name}", "mnt_ns": readlink_ns(proc.pid, "mnt")}]
        # Opened through /proc/<pid>/root of a process in that mount namespace: its owner is known.
        assert row["ons"] == node_truth()["user"]
    finally:
        kill_session(proc)
        os.unlink(f"/run/netns/{name}")


UNSHARE_OPTION = {"cgroup": "cgroup", "ipc": "ipc", "mnt": "mount", "net": "net", "pid": "pid", "time": "time",
                  "user": "user", "uts": "uts"}


def kernel_relations(path: str, nstype: str) -> tuple[int, int, int]:
    """(inode, parent, owner) of the namespace at ``path``, from the kernel (ioctl on an fd of it); 0 for none."""
    def related(fd: int, request: int) -> int:
        try:
            rfd = fcntl.ioctl(fd, request)
        except OSError:
            return 0
        try:
            return os.fstat(rfd).st_ino
        finally:
            os.close(rfd)

    fd = os.open(path, os.O_RDONLY)
    try:
        parent = related(fd, hidden.NS_GET_PARENT) if nstype in ("pid", "user") else 0
        return os.fstat(fd).st_ino, parent, related(fd, hidden.NS_GET_USERNS)
    finally:
        os.close(fd)


@pytest.fixture
def pinned_every_type(tmp_path):
    """A namespace of each type that ``unshare --TYPE=FILE`` made and bind-mounted, no process left in them.

    The directory's name has the characters mountinfo escapes (space, newline, backslash); it is a private
    bind mount, as unshare wants for mount namespaces.  The user namespace owns the seven others."""
    require_root()
    pins = tmp_path / "pins a\nb\\c"
    pins.mkdir()
    subprocess.run(["mount", "--bind", pins, pins], check=True)
    try:
        subprocess.run(["mount", "--make-private", pins], check=True)
        for t in NS_TYPES:
            (pins / t).touch()
        subprocess.run(["unshare", *(f"--{UNSHARE_OPTION[t]}={pins / t}" for t in NS_TYPES), "--fork", "true"], check=True)
        yield {t: str(pins / t) for t in NS_TYPES}
    finally:
        for t in NS_TYPES:
            subprocess.run(["umount", pins / t], check=False, capture_output=True)
        subprocess.run(["umount", pins], check=False)


def test_every_type_pinned_by_a_bind_mount_with_and_without_t(pinned_every_type):
    """Rows of every type with NPROCS 0, the path as mountinfo's writer meant it, and PNS/ONS as the kernel
    answers on the path, with every type and with each ``-t``: ``-t`` without mnt reads the node's mountinfo
    through PID 1 or kthreadd (whichever lets us open its root), not through the mount namespace scan."""
    pins = pinned_every_type
    want = {t: kernel_relations(path, t) for t, path in pins.items()}
    user = want["user"][0]
    assert want["user"][1:] == (node_truth()["user"], node_truth()["user"])
    assert all(want[t][2] == user for t in NS_TYPES if t != "user")
    assert want["pid"][1] == node_truth()["pid"]
    for args in [(), *(("-t", t) for t in NS_TYPES)]:
        rows = rows_by_ns(cli_json("node", *args))
        for t in args[1:] or NS_TYPES:
            ino, pns, ons = want[t]
            r = rows[ino]
            assert (r["type"], r["nprocs"], r["pid"], r["nsfs"], r["pns"], r["ons"]) == (t, 0, None, pins[t], pns, ons), args
            assert r["mounts"] == [{"path": pins[t], "mnt_ns": node_truth()["mnt"]}], args
    # The table escapes the newline (not the space or the backslash, as lsns does not).
    line = next(line for line in run_cli("node", "-t", "uts").stdout.splitlines() if line.startswith(str(want["uts"][0])))
    assert line.endswith("(bind mount " + pins["uts"].replace("\n", "\\x0a") + ")")


HOLDER = """
import os, sys, time
pid = int(sys.argv[1])
fds = {t: os.open(f"/proc/{pid}/ns/{t}", os.O_RDONLY) for t in ("net", "uts", "ipc")}
print(" ".join(f"{t}={fd}" for t, fd in fds.items()), flush=True)
time.sleep(300)
"""


@pytest.fixture
def held_by_fds():
    """Namespaces whose only process exited while a helper keeps fds open on them."""
    require_root()
    owner = subprocess.Popen(["unshare", "--net", "--uts", "--ipc", "sleep", "300"], start_new_session=True)
    wait_for(lambda: comm(owner.pid) == "sleep", "unshare to exec sleep")
    inos = {t: readlink_ns(owner.pid, t) for t in ("net", "uts", "ipc")}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(owner.pid)], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    fds = {t: int(fd) for t, fd in (kv.split("=") for kv in holder.stdout.readline().split())}
    kill_session(owner)
    try:
        yield holder.pid, inos, fds
    finally:
        kill_session(holder)


def test_namespaces_held_by_open_fds(held_by_fds):
    pid, inos, fds = held_by_fds
    rows = rows_by_ns(cli_json("node"))
    for t, ino in inos.items():
        # The kernel's word: the helper's fd names the namespace, and nobody is in it.
        assert os.readlink(f"/proc/{pid}/fd/{fds[t]}") == f"{t}:[{ino}]"
        row = rows[ino]
        assert (row["type"], row["nprocs"], row["pid"], row["command"]) == (t, 0, None, None), t
        assert row["fds"] == [{"pid": pid, "fd": fds[t]}], t
        assert row["nsfs"] is None and row["mounts"] == []
        assert row["ons"] == node_truth()["user"]
    table = run_cli("node").stdout
    line = next(line for line in table.splitlines() if line.startswith(str(inos["net"])))
    assert line.endswith(f"(fd {fds['net']} of pid {pid})")
    wide = run_cli("node", "-o", "wide").stdout.splitlines()
    head = wide[0].split()
    assert head[-4:] == ["PNS", "ONS", "NSFS", "COMMAND"]


@pytest.fixture
def nested():
    """Nested user and pid namespaces:

    ``unshare --user --pid --fork sh -c 'exec unshare --user --pid --fork sleep'``:
    outer (U1, node pid ns) -> sh, then inner unshare (U2, P1) -> sleep (U2, P2);
    and a user namespace no process is in: ``unshare --user sh -c 'exec unshare --user sleep'``
    leaves G (its only process moved on into G2) as G2's parent and owner.
    """
    require_root()
    a = subprocess.Popen(["unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child", "sh", "-c",
                          "exec unshare --user --map-root-user --pid --fork --kill-child sleep 300"], start_new_session=True)
    b = subprocess.Popen(["unshare", "--user", "--map-root-user", "sh", "-c", "exec unshare --user --map-root-user sleep 300"],
                         start_new_session=True)
    try:
        def ready():
            inner = children(a.pid)
            leaf = children(inner[0]) if inner else []
            if leaf and comm(leaf[0]) == "sleep" and comm(b.pid) == "sleep":
                return a.pid, inner[0], leaf[0]
            return None

        outer, inner, leaf = wait_for(ready, "the nested namespaces")
        yield {
            "U1": readlink_ns(outer, "user"), "U2": readlink_ns(leaf, "user"),
            "P1": readlink_ns(inner, "pid"), "P2": readlink_ns(leaf, "pid"),
            "G2": readlink_ns(b.pid, "user"), "pids": (outer, inner, leaf, b.pid),
        }
    finally:
        kill_session(a)
        kill_session(b)


def test_hierarchy_pns_ons_match_the_kernel_and_lsns(nested):
    n, node = nested, node_truth()
    assert len({n["U1"], n["U2"], n["P1"], n["P2"], node["user"], node["pid"]}) == 6
    rows = rows_by_ns(cli_json("node"))
    want = {  # (pns, ons) from how the namespaces were made
        n["U1"]: (node["user"], node["user"]),
        n["U2"]: (n["U1"], n["U1"]),
        n["P1"]: (node["pid"], n["U1"]),
        n["P2"]: (n["P1"], n["U2"]),
    }
    for ino, rel in want.items():
        assert (rows[ino]["pns"], rows[ino]["ons"]) == rel, ino
    # Other types have no parent, and the node's are owned by the node's user namespace.
    assert rows[node["net"]]["pns"] == 0 and rows[node["net"]]["ons"] == node["user"]
    assert rows[node["user"]]["pns"] == 0 and rows[node["user"]]["ons"] == 0
    lsns = json.loads(subprocess.run(["lsns", "-J", "-l", "-o", "NS,TYPE,NPROCS,PNS,ONS"], check=True,
                                     capture_output=True, text=True).stdout)["namespaces"]
    theirs = {r["ns"]: r for r in lsns}
    for ino in want:
        assert (rows[ino]["pns"], rows[ino]["ons"], rows[ino]["nprocs"]) == (
            theirs[ino]["pns"], theirs[ino]["ons"], theirs[ino]["nprocs"]), ino


def test_ghost_parent_is_a_row(nested):
    """G has no process: it lives on as G2's parent and owner, and shows as lsns -T shows it."""
    rows = rows_by_ns(cli_json("node"))
    g2 = rows[nested["G2"]]
    g = rows[g2["pns"]]
    assert g2["ons"] == g2["pns"] and g["ns"] not in (0, nested["G2"])
    assert (g["type"], g["nprocs"], g["pid"], g["fds"], g["mounts"]) == ("user", 0, None, [], [])
    assert (g["pns"], g["ons"]) == (node_truth()["user"], node_truth()["user"])
    tree = json.loads(subprocess.run(["lsns", "-J", "--tree=owner", "-o", "NS,TYPE,NPROCS"], check=True,
                                     capture_output=True, text=True).stdout)["namespaces"]
    found = _find(tree, g["ns"])
    assert found is not None and found["nprocs"] == 0
    assert nested["G2"] in [c["ns"] for c in found.get("children", [])]


def _find(items: list[dict], ino: int) -> dict | None:
    for item in items:
        if item["ns"] == ino:
            return item
        deeper = _find(item.get("children", []), ino)
        if deeper is not None:
            return deeper
    return None


def _tree_lines(text: str, mine: set[int], column: str) -> list[tuple[str, str]]:
    """(tree cell, ns) of our namespaces' lines; the cell in NS (owner/parent) or COMMAND (process).

    The part of an NS prefix above the first of our lines depends on the rest of the machine: cut off."""
    lines = text.splitlines()
    start = lines[0].index(column) if column == "COMMAND" else 0
    out, cut = [], None
    for line in lines[1:]:
        body = line.lstrip("├└│─ ")
        ino = body.split()[0] if body.split() else ""
        if not ino.isdigit() or int(ino) not in mine:
            continue
        ns_cell = line[: len(line) - len(body)] + ino
        if column == "NS":
            prefix = ns_cell[: len(ns_cell) - len(ino)]
            cut = len(prefix) if cut is None else cut
            out.append((prefix[cut:], ino))
        else:
            out.append((line[start:].rstrip(), ino))
    return out


@pytest.mark.parametrize("how", ["owner", "parent", "process"])
def test_tree_is_drawn_as_lsns_draws_it(nested, how):
    n = nested
    mine = {n["U1"], n["U2"], n["P1"], n["P2"]}
    column = "COMMAND" if how == "process" else "NS"
    cols = "NS,TYPE,NPROCS,PID,USER,COMMAND"
    theirs = subprocess.run(["lsns", f"--tree={how}", "-o", cols, "-u"], check=True, capture_output=True, text=True,
                            env={**os.environ, "LANG": "C.UTF-8"}).stdout
    ours = run_cli("node", f"--tree={how}").stdout
    got, want = _tree_lines(ours, mine, column), _tree_lines(theirs, mine, column)
    assert sorted(int(i) for _c, i in got) == sorted(mine)
    assert got == want
    if how == "owner":  # U2 under U1, P2 under U2: nested branches
        assert [c for c, i in got if int(i) == n["P2"]][0].endswith("─")


def test_tree_with_t_draws_that_type_only(nested):
    """``-t pid --tree``: pid rows only, as lsns 2.39+ draws them (2.38 adds the owners as user rows with NPROCS 0,
    which would say the node's user namespace has no process): under their parent pid namespace, or roots."""
    n = nested
    for how in ("parent", "owner"):
        lines = run_cli("node", "-t", "pid", f"--tree={how}").stdout.splitlines()[1:]
        cells = {int(body.split()[0]): (line[: len(line) - len(body)], body.split()[1])
                 for line in lines for body in [line.lstrip("├└│─ ")] if body.split()[1] in NS_TYPES}
        assert {t for _prefix, t in cells.values()} == {"pid"} and n["P2"] in cells, how
        if how == "parent":  # P2 one level below P1, below the node's pid namespace (a root)
            assert cells[node_truth()["pid"]][0] == ""
            assert len(cells[n["P2"]][0]) == len(cells[n["P1"]][0]) + 2 > 2
        else:  # no owner is a row: every row is a root
            assert all(prefix == "" for prefix, _t in cells.values())


LSNS_COLUMNS = ("ns", "type", "nprocs", "pid", "ppid", "command", "uid", "user", "nsfs", "pns", "ons")


def _lsns_all_columns() -> dict[tuple[str, int], dict]:
    """``lsns -J -l`` with every column our JSON prints too (lsns 2.38 exits 1 when a process vanishes under it)."""
    cols = ",".join(c.upper() for c in LSNS_COLUMNS)
    for _ in range(5):
        r = subprocess.run(["lsns", "-J", "-l", "-o", cols], capture_output=True, text=True)
        if r.returncode == 0:
            return {(x["type"], x["ns"]): x for x in json.loads(r.stdout)["namespaces"]}
    raise AssertionError(f"lsns -J failed 5 times: {r.stderr}")


def _elsewhere(row: dict) -> bool:
    """Does a path of the row's bind mounts lead elsewhere in our mount namespace, which lsns 2.38 reads
    alone?  The pin is in another mount namespace (a containerd in a private one, as the cgroup v2 tests
    run it), or a later mount covers it."""
    for path in (row["nsfs"] or "").split("\n"):
        try:
            if path and os.stat(path).st_ino != row["ns"]:
                return True
        except OSError:
            return True
    return False


def test_every_row_and_column_lsns_prints(netns, held_by_fds, nested):
    """Every namespace of the node, every column lsns prints that our JSON has, in one go.  Other work on this
    machine comes and goes: lsns runs before and after us, and a value both runs agree on must be ours."""
    before = _lsns_all_columns()
    ours = {(r["type"], r["ns"]): r for r in cli_json("node")["namespaces"]}
    after = _lsns_all_columns()
    compared = 0
    for key, theirs in before.items():
        if key not in after:
            continue
        assert key in ours, key
        for col in LSNS_COLUMNS:
            if col == "nsfs" and _elsewhere(ours[key]):
                continue  # ours lists the paths of every mount namespace
            if theirs[col] == after[key][col]:
                assert ours[key][col] == theirs[col], (key, col)
                compared += 1
    assert compared >= len(LSNS_COLUMNS) * 10  # the node's 8 and the nested ones, at least
    # What lsns 2.38 cannot list (it has no --persistent) are rows no process is in.
    made = {("net", netns[1]), *held_by_fds[1].items()}
    assert made <= {k for k, r in ours.items() if r["nprocs"] == 0} and not made & before.keys()


def test_views_with_hidden_rows_through_the_wire(held_by_fds, netns, nested):
    """The agent's proto carries parents, owners, mounts and fds, in rows and in columns: the round trip gives the same view,
    and the fast JSON is the generic JSON."""
    with ProcFS() as proc:
        view = discover.node_view(proc, parallel=False)
    rows = {r.id.ino: r for r in view.namespaces}
    assert rows[netns[1]].mounts and all(rows[ino].fds for ino in held_by_fds[1].values())
    assert rows[nested["P2"]].parent is not None and rows[nested["U2"]].parent is not None  # this test's own nesting
    assert rows[nested["P2"]].owner is not None
    for columns in (False, True):
        back = convert.from_node(pb.NodeView.FromString(convert.to_node(view, columns=columns).SerializeToString()))
        assert back == view, f"columns={columns}"
    assert node_json(view) == dump_json(to_data(view))


CHROOTED = r"""
import os, subprocess, sys, time
root, outside = sys.argv[1], sys.argv[2]
for path in (os.path.join(root, "pin"), outside):
    open(path, "w").close()
    subprocess.run(["mount", "--bind", f"/proc/{os.getpid()}/ns/net", path], check=True)
print(os.stat(os.path.join(root, "pin")).st_ino, flush=True)
os.chroot(root)
os.chdir("/")
time.sleep(300)
"""


@pytest.fixture
def chrooted(tmp_path):
    """A process alone in private mount and net namespaces that bind-mounts its net namespace inside the
    directory it then chroots into and outside it: its mountinfo shows the first only, at /pin."""
    require_root()
    root = tmp_path / "root"
    root.mkdir()
    proc = subprocess.Popen(["unshare", "--mount", "--net", "--propagation", "private", sys.executable, "-c", CHROOTED,
                             str(root), str(tmp_path / "outside")], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        ino = int(proc.stdout.readline())
        wait_for(lambda: os.readlink(f"/proc/{proc.pid}/root") == str(root), "the chroot")
        yield proc.pid, ino
    finally:
        kill_session(proc)


def test_chrooted_process_shows_its_own_mounts(chrooted):
    """Mount points as that process sees them (lsns and mountinfo's view), not as its namespace's root does."""
    pid, ino = chrooted
    row = rows_by_ns(cli_json("node"))[ino]
    assert row["nprocs"] == 1 and row["pid"] == pid
    assert row["mounts"] == [{"path": "/pin", "mnt_ns": readlink_ns(pid, "mnt")}]
    c = procfs._c
    if c is not None:  # the C pass hands such a process to Python (mountinfo), and takes ours
        fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
        try:
            records, left = c.nsfs_mounts(fd, [str(pid), "self"], NS_TYPES)
        finally:
            os.close(fd)
        assert left == [0]
        assert all(k == 1 for k, *_ in records)


def _hidden_parts(view) -> dict:
    """What the passes after the scan add, per row."""
    return {(n.type, n.id.ino): (n.parent, n.owner, n.mounts, n.fds, n.nprocs == 0) for n in view.namespaces}


def test_fast_and_fallback_paths_agree(netns, held_by_fds, nested, chrooted, monkeypatch):
    """The C passes (listmount/statmount, fds, ioctls) and the Python ones (mountinfo, readlink, fcntl) give the
    same rows, one process and forked workers.  Other processes of this machine come and go between two views:
    a difference is looked at again (three times) before it counts."""
    c = procfs._c
    if c is None:
        if os.environ.get("CI"):
            pytest.fail("CI builds the C speed-up (python3 setup.py build_ext --inplace)")
        pytest.skip("the C speed-up is not built")
    monkeypatch.setattr(procfs, "PARALLEL_MIN_PIDS", 4)
    for parallel in (False, True):
        for _attempt in range(3):
            parts = []
            for module in (c, None):
                monkeypatch.setattr(procfs, "_c", module)
                with ProcFS() as proc:
                    parts.append(_hidden_parts(discover.node_view(proc, parallel=parallel)))
            fast, slow = parts
            if fast == slow:
                break
        assert fast == slow, {k: (fast.get(k), slow.get(k)) for k in fast.keys() ^ slow.keys() or fast if fast.get(k) != slow.get(k)}
        # The cases are in the comparison: a bind mount, fds, a ghost owner, the chrooted view.
        name, ino = netns
        assert [m.path for m in fast["net", ino][2]] == [f"/run/netns/{name}"]
        assert all(fast[t, i][3] for t, i in held_by_fds[1].items())
        assert fast["user", nested["G2"]][0] is not None and fast["user", fast["user", nested["G2"]][0].ino][4]
        assert [m.path for m in fast["net", chrooted[1]][2]] == ["/pin"]


def test_pins_of_other_mount_namespaces_with_and_without_t(tmp_path):
    """A namespace bind-mounted only inside a private mount namespace is found with or without ``-t``
    (lsns -t, and lsns at all, read only their own mount namespace): with ``-t net`` the mnt links are
    still read, to know every mount namespace."""
    require_root()
    pin = tmp_path / "pin"
    pin.touch()
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                             f"unshare --net={pin} true && echo ready && exec sleep 300"],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with open(f"/proc/{proc.pid}/mountinfo") as f:
            (line,) = [x for x in f if f" {pin} " in x and " - nsfs " in x]
        ino = int(line.split()[3].removeprefix("net:[").rstrip("]"))
        mnt = os.stat(f"/proc/{proc.pid}/ns/mnt").st_ino
        assert os.stat(pin).st_ino != ino  # from here the path is a plain file
        for args in ([], ["-t", "net"]):
            (row,) = [r for r in cli_json("node", *args)["namespaces"] if r["type"] == "net" and r["ns"] == ino]
            assert row["nprocs"] == 0 and row["nsfs"] == str(pin), args
            assert row["mounts"] == [{"path": str(pin), "mnt_ns": mnt}], args
    finally:
        kill_session(proc)


def test_path_pinned_in_two_mount_namespaces_whatever_the_slices(tmp_path, monkeypatch):
    """The same namespace bind-mounted at the same path in two private mount namespaces (not the
    node's): the path is shown once, with the mount namespace of the lower inode, however the pids are
    cut into slices (the lower inode's processes all in the second slice here), with and without ``-t``."""
    require_root()
    pin = tmp_path / "pin"
    pin.touch()
    holder = subprocess.Popen(["unshare", "--net", "sleep", "300"], start_new_session=True)
    started = [holder]

    def pinned_in_a_mount_namespace() -> subprocess.Popen:
        p = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                              f"mount --bind /proc/{holder.pid}/ns/net {pin} && echo ready && exec sleep 300"],
                             stdout=subprocess.PIPE, text=True, start_new_session=True)
        started.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        return p

    try:
        wait_for(lambda: readlink_ns(holder.pid, "net") != node_truth()["net"], "the holder's net namespace")
        net = readlink_ns(holder.pid, "net")
        first, second = pinned_in_a_mount_namespace(), pinned_in_a_mount_namespace()
        mnt = {p.pid: readlink_ns(p.pid, "mnt") for p in (first, second)}
        low_ino, high_ino = sorted((first, second), key=lambda p: mnt[p.pid])
        # The mount namespace with the lower inode moves to a process younger than the other's.
        moved = subprocess.Popen(["nsenter", "-t", str(low_ino.pid), "-m", "sleep", "300"], start_new_session=True)
        started.append(moved)
        wait_for(lambda: readlink_ns(moved.pid, "mnt") == mnt[low_ino.pid] and comm(moved.pid) == "sleep", "the move")
        kill_session(low_ino)
        if moved.pid < high_ino.pid:
            pytest.skip("pids wrapped around")
        want = [{"path": str(pin), "mnt_ns": mnt[low_ino.pid]}]
        for args in ([], ["-t", "net"]):
            (row,) = [r for r in cli_json("node", *args)["namespaces"] if r["type"] == "net" and r["ns"] == net]
            assert row["mounts"] == want, args
        cut = high_ino.pid
        monkeypatch.setattr(discover, "workers_for", lambda _n: 2)
        monkeypatch.setattr(discover, "slices", lambda pids, _n: [[p for p in pids if p <= cut], [p for p in pids if p > cut]])
        for parallel in (False, True):
            (row,) = [n for n in discover.node_view(ProcFS(), ("net",), parallel=parallel).namespaces if n.type == "net" and n.id.ino == net]
            assert [{"path": m.path, "mnt_ns": m.mnt_ns} for m in row.mounts] == want, parallel
    finally:
        for p in started:
            kill_session(p)
