"""The procfs layer and the node view on fixture trees the tests build (no privileges needed)."""

from __future__ import annotations

import json
import sys

import pytest
from helpers import NS_TYPES, assert_one_sentence_error, make_proc, run_cli

from nsinspect.errors import InvalidArgument, NoSuchProcess
from nsinspect.node import discover
from nsinspect.node.procfs import ProcFS, parse_ns_link, parse_stat
from nsinspect.render import dump_json
from nsinspect.render.data import node_json, to_data

HOST = {t: 4026531830 + i for i, t in enumerate(NS_TYPES)}


@pytest.mark.parametrize(
    "line, expected",
    [
        (b"42 (bash) S 1 42 42 0 -1 4194560 " + b"0 " * 12 + b"777 0 0\n", ("bash", "S", 1, 777)),
        (b"7 (a b) R 3 " + b"0 " * 17 + b"9 0\n", ("a b", "R", 3, 9)),
        # The command name may contain ') ' and '(': parse after the *last* ')'.
        (b"8 (evil) S 999 (x) Z 5 " + b"0 " * 17 + b"12345 0\n", ("evil) S 999 (x", "Z", 5, 12345)),
        (b"9 ()) S 2 " + b"0 " * 17 + b"1 0\n", (")", "S", 2, 1)),
    ],
)
def test_parse_stat(line, expected):
    assert parse_stat(line) == expected


@pytest.mark.parametrize(
    "target, nstype, expected",
    [
        ("net:[4026531993]", "net", 4026531993),
        ("pid:[1]", "pid", 1),
        ("net:[4026531993]", "ipc", None),  # wrong type
        ("net:[]", "net", None),
        ("net:[12a]", "net", None),
        ("/some/file", "net", None),
        ("net:[\u0661\u0662]", "net", None),  # non-ASCII digits are not an inode
    ],
)
def test_parse_ns_link(target, nstype, expected):
    assert parse_ns_link(target, nstype) == expected


@pytest.fixture
def tree(tmp_path):
    """pid 1 (node), 2 (kthreadd), 10 and 11 sharing a net ns, 12 a zombie, 13 with a garbage link."""
    root = tmp_path / "proc"
    make_proc(root, 1, HOST, comm="init", ppid=0, cmdline=["/sbin/init"])
    make_proc(root, 2, HOST, comm="kthreadd", ppid=0)
    pod = dict(HOST, net=4026532500, uts=4026532501)
    make_proc(root, 10, pod, comm="pause", cmdline=["/pause"])
    make_proc(root, 11, dict(pod, mnt=4026532502), comm="web server", cmdline=["nginx", "-g", "daemon off;"])
    # A zombie keeps only its pid and user links.
    make_proc(root, 12, {"pid": HOST["pid"], "user": HOST["user"]}, comm="defunct")
    make_proc(root, 13, dict(HOST, ipc="not-a-namespace"), comm="odd")
    (root / "self").mkdir()  # non-numeric entries are not processes
    return root


def test_scan_counts_like_lsns(tree):
    view = discover.node_view(ProcFS(str(tree)), parallel=False)
    rows = {(n.type, n.id.ino): n for n in view.namespaces}
    assert rows[("net", 4026532500)].nprocs == 2
    assert rows[("net", 4026532500)].pid == 10
    assert rows[("mnt", 4026532502)].nprocs == 1
    assert rows[("mnt", 4026532502)].pid == 11
    # Host net: pids 1, 2, 13 (not the zombie, whose net link is gone).
    assert rows[("net", HOST["net"])].nprocs == 3
    # Host pid/user: the zombie still counts.
    assert rows[("pid", HOST["pid"])].nprocs == 6
    assert rows[("user", HOST["user"])].nprocs == 6
    # The garbage ipc link of 13 is not a namespace.
    assert rows[("ipc", HOST["ipc"])].nprocs == 4
    assert rows[("net", HOST["net"])].node and not rows[("net", 4026532500)].node
    assert view.stats.processes == 6 and view.stats.vanished == 0 and view.stats.denied == ()
    assert rows[("mnt", 4026532502)].process.command == "nginx -g daemon off;"
    assert rows[("mnt", 4026532502)].process.comm == "web server"


def test_vanished_processes_are_counted(tree):
    seen, stats = ProcFS(str(tree)).scan(pids=[1, 2, 10, 4242], parallel=False)
    assert stats.vanished == 1 and stats.processes == 4
    assert seen["net"][4026532500][0] == 1


@pytest.fixture(params=["C", "python"])
def racy_proc(request, tmp_path, monkeypatch):
    """A fixture procfs root, read by the C scan or the Python one, and ``exit_when_described(*pids)``:
    those processes exit right after their links were read, just before they are described."""
    import shutil

    from nsinspect.node import procfs

    if request.param == "python":
        monkeypatch.setattr(procfs, "_c", None)
    elif procfs._c is None:
        pytest.fail("the C speed-up is not built (python3 setup.py build_ext --inplace)")
    root = tmp_path / "proc"
    real = procfs._describe_any

    def exit_when_described(*pids: int) -> None:
        def exiting(procfd, pid):
            if pid in pids:
                shutil.rmtree(root / str(pid), ignore_errors=True)
            return real(procfd, pid)

        monkeypatch.setattr(procfs, "_describe_any", exiting)

    return root, exit_when_described


def test_lowest_process_gone_before_it_is_described(racy_proc):
    """The lowest process of a namespace exits between the links and its description: the row shows the
    next process still in it (as lsns, reading each process whole, would), not a blank command."""
    root, exit_when_described = racy_proc
    make_proc(root, 1, dict(HOST), comm="init")
    make_proc(root, 20, {**HOST, "net": 4026532600}, comm="exits")
    make_proc(root, 21, {**HOST, "net": 4026532600}, comm="stays", ppid=20)
    make_proc(root, 30, {**HOST, "uts": 4026532601}, comm="alone")
    make_proc(root, 31, dict(HOST), comm="other")
    exit_when_described(20, 30)
    seen, stats = ProcFS(str(root)).scan(pids=[1, 20, 21, 30, 31], parallel=False)
    nprocs, pid, process = seen["net"][4026532600]
    assert (nprocs, pid, process.comm, process.ppid) == (2, 21, "stays", 20)
    # Nobody else is in 30's uts namespace: its row keeps the pid, with nothing to describe.
    assert seen["uts"][4026532601] == (1, 30, None)
    # The host's rows are described by 1, which stayed.
    assert seen["net"][HOST["net"]][1] == 1 and seen["net"][HOST["net"]][2].comm == "init"


def test_lowest_process_gone_with_its_replacement_in_another_slice(racy_proc):
    """The same exit, when the namespace's other process is in the next slice of pids (a forked worker's):
    the merged row shows that process, as the scan of both slices in one does."""
    from nsinspect.node import procfs

    root, exit_when_described = racy_proc
    make_proc(root, 1, dict(HOST), comm="init")
    make_proc(root, 20, {**HOST, "net": 4026532600}, comm="exits")
    make_proc(root, 40, {**HOST, "net": 4026532600}, comm="stays", ppid=1)
    make_proc(root, 41, dict(HOST), comm="other")
    exit_when_described(20)
    with ProcFS(str(root)) as proc:
        chunks = [procfs.scan_slice(proc.fd, share, NS_TYPES) for share in ([1, 20], [40, 41])]
        seen, _stats = procfs.finish_scan(chunks, NS_TYPES)
    nprocs, pid, process = seen["net"][4026532600]
    assert (nprocs, pid, process.comm) == (2, 40, "stays")
    assert seen["net"][HOST["net"]][:2] == (2, 1)  # the host's: 1 and 41


def test_node_namespaces_fall_back_to_kthreadd(tree):
    import shutil

    shutil.rmtree(tree / "1")
    (tree / "2" / "ns" / "net").unlink()
    (tree / "2" / "ns" / "net").symlink_to("net:[4026539999]")
    node = discover.node_namespaces(ProcFS(str(tree)))
    assert node["net"].ino == 4026539999


def test_zombie_process_view(tree):
    view = discover.process_view(ProcFS(str(tree)), 12)
    assert view.namespaces["net"] is None and view.namespaces["pid"].ino == HOST["pid"]


def test_unknown_pid_and_bad_root(tree):
    with pytest.raises(NoSuchProcess):
        discover.process_view(ProcFS(str(tree)), 777)
    with pytest.raises(InvalidArgument):
        ProcFS(str(tree / "nope")).pids()


def test_fast_json_equals_generic_json(tree):
    view = discover.node_view(ProcFS(str(tree)), parallel=False)
    assert node_json(view) == dump_json(to_data(view))
    json.loads(node_json(view))


def test_cli_on_fixture_tree_via_env_and_flag(tree):
    by_flag = json.loads(run_cli("--proc", str(tree), "node", "-o", "json").stdout)
    by_env = json.loads(run_cli("node", "-o", "json", env={"NSINSPECT_PROC": str(tree)}).stdout)
    assert by_flag == by_env
    rows = {(r["type"], r["ns"]): r for r in by_flag["namespaces"]}
    assert rows[("net", 4026532500)]["nprocs"] == 2
    assert rows[("net", 4026532500)]["command"] == "/pause"
    assert by_flag["node_namespaces"]["net"] == HOST["net"]
    only_net = json.loads(run_cli("--proc", str(tree), "node", "-t", "net", "-o", "json").stdout)
    assert {r["type"] for r in only_net["namespaces"]} == {"net"}


def test_hostile_names_are_escaped(tmp_path):
    root = tmp_path / "proc"
    make_proc(root, 2, HOST, comm="kthreadd", ppid=0)
    evil = "\x1b[31mred\x1b[0m [bold]x[/bold] \u202etxt.exe \udcff"
    make_proc(root, 50, dict(HOST, net=4026532600), comm="\x1b]0;pwned\x07", cmdline=[evil])
    r = run_cli("--proc", str(root), "node", "-t", "net")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "\\x1b[31mred\\x1b[0m" in out
    assert "[bold]x[/bold]" in out  # shown literally, never interpreted as markup
    assert "\\u202e" in out and "\\xff" in out
    for fmt in ("json", "yaml", "wide"):
        r = run_cli("--proc", str(root), "node", "-t", "net", "-o", fmt)
        assert r.returncode == 0 and "\x1b" not in r.stdout and "\u202e" not in r.stdout, fmt
    data = json.loads(run_cli("--proc", str(root), "node", "-o", "json").stdout)
    # JSON keeps the exact text, with bytes that are not UTF-8 as \xNN (valid JSON, and what the agent's
    # UTF-8 wire carries too, so every front door answers the same)
    assert any(row["command"] == evil.replace("\udcff", "\\xff") for row in data["namespaces"])


def test_bad_proc_root_is_a_usage_error(tmp_path):
    r = run_cli("--proc", str(tmp_path / "missing"), "node")
    assert_one_sentence_error(r, 2)
    assert "--proc" in r.stderr


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys, nsinspect.cli\n"
        "heavy = [m for m in ('rich', 'grpc', 'kubernetes', 'yaml', 'google.protobuf') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_pids_listed_by_threads_at_once(tmp_path):
    """The agent lists /proc from several threads at once (GetNode beside GetPod): each gets the whole list.
    Through the one shared fd (a dup shares its offset) each got part of it, often nothing."""
    import threading

    for pid in range(1, 600):
        make_proc(tmp_path, pid, {"net": 4026531840})
    proc = ProcFS(str(tmp_path))
    want = list(range(1, 600))
    got: list[int] = []

    def run() -> None:
        for _ in range(100):
            got.append(len(proc.pids()) if proc.pids() == want else -1)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    proc.close()
    assert got == [len(want)] * 400
