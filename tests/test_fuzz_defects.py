"""The defects issue 21's first crafted-input pass found, each through the real command line (docs/fuzzing.md)."""

from __future__ import annotations

import json

import pytest
from helpers import NS_TYPES, assert_one_sentence_error, make_proc, run_cli

from nsinspect.limits import INODE_MAX, PID_MAX_LIMIT, decimal
from nsinspect.node.procfs import ProcFS, parse_ns_link, parse_stat

HOST = {t: 4026531830 + i for i, t in enumerate(NS_TYPES)}
PURE, FAST = {"NSINSPECT_PURE_PYTHON": "1"}, {"NSINSPECT_PURE_PYTHON": ""}
BOTH = pytest.mark.parametrize("env", [PURE, FAST], ids=["python", "c"])


def _file_ns_tree(root):
    """The issue's tree: pid 15's ``ns`` is a regular file; pid 2 is a normal process beside it."""
    make_proc(root, 2, HOST, comm="kthreadd", ppid=0)
    make_proc(root, 15, {}, comm="f", cmdline=["f"])
    (root / "15" / "ns").rmdir()
    (root / "15" / "ns").write_text("x\n")
    return root


@BOTH
def test_ns_a_regular_file_is_malformed_not_internal(tmp_path, env):
    """(a) was exit 70 NotADirectoryError, in C and Python: now the pid is skipped (counted as vanished)."""
    root = _file_ns_tree(tmp_path / "proc")
    r = run_cli("--proc", str(root), "node", "-o", "json", env=env)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["scan"]["processes"] == 2 and data["scan"]["vanished"] == 1
    assert {n["pid"] for n in data["namespaces"]} == {2}
    r = run_cli("--proc", str(root), "pid", "15", env=env)
    assert_one_sentence_error(r, 3)
    assert "malformed" in r.stderr and "procfs" in r.stderr


@pytest.mark.parametrize("where", ["/etc", "empty"])
def test_not_a_procfs_is_a_usage_error(tmp_path, where):
    """(b) ``--proc /etc node`` answered an empty table, exit 0: now one sentence, exit 2."""
    path = where if where.startswith("/") else str(tmp_path)
    r = run_cli("--proc", path, "node")
    assert_one_sentence_error(r, 2)
    assert "is not a procfs" in r.stderr


def test_a_tree_shaped_like_procfs_is_accepted(tmp_path):
    """What (b) keeps: fixture trees with ``self``, or with only pid directories holding a ``stat``, and /proc."""
    root = tmp_path / "proc"
    make_proc(root, 7, HOST)
    assert ProcFS(str(root)).pids() == [7]
    (tmp_path / "selfonly" / "self").mkdir(parents=True)
    assert ProcFS(str(tmp_path / "selfonly")).pids() == []
    assert ProcFS("/proc").pids()


@pytest.mark.parametrize("arg", ["\u0663", " 1", "1 ", "+1", "1_000", "0", "01", "\u00b2", "0x10", str(PID_MAX_LIMIT + 1),
                                 "9" * 30, ""])
def test_pid_is_ascii_digits_only(arg):
    """(c) ``pid ٣`` and ``pid ' 1'`` were read as 3 and 1 (int()'s leniency): now usage errors."""
    r = run_cli("--proc", "/proc", "pid", arg)
    assert_one_sentence_error(r, 2)
    assert "ASCII digits" in r.stderr


@pytest.mark.parametrize("address", ["127.0.0.1:\u0663", "127.0.0.1:\u00b2", "127.0.0.1: 9870", "127.0.0.1:+9870",
                                     "127.0.0.1:9_870", "127.0.0.1:65536", "127.0.0.1:0"])
def test_agent_port_is_ascii_digits_only(address):
    """(c) for ports: ``--agent host:²`` was exit 70 (``isdigit`` took it, ``int`` did not)."""
    r = run_cli("--agent", address, "pid", "1")
    assert_one_sentence_error(r, 2)


def test_values_the_kernel_cannot_produce():
    """(d) an inode beyond 64 bits, a pid beyond PID_MAX_LIMIT: malformed, not numbers to show."""
    assert parse_ns_link("net:[99999999999999999999999999]", "net") is None
    assert parse_ns_link(f"net:[{INODE_MAX + 1}]", "net") is None
    assert parse_ns_link(f"net:[{INODE_MAX}]", "net") == INODE_MAX
    line = b"5 (x) S %d " + b"0 " * 17 + b"9 0\n"
    assert parse_stat(line % PID_MAX_LIMIT)[2] == PID_MAX_LIMIT
    with pytest.raises(ValueError):
        parse_stat(line % (PID_MAX_LIMIT + 1))
    assert decimal("4194304", PID_MAX_LIMIT) == PID_MAX_LIMIT and decimal("4194305", PID_MAX_LIMIT) is None


@BOTH
def test_huge_inode_and_pid_directories_are_not_shown(tmp_path, env):
    """(d) through the command line: the 27-digit inode was emitted in JSON; pid directories beyond the limit listed."""
    root = tmp_path / "proc"
    make_proc(root, 2, HOST, comm="kthreadd", ppid=0)
    make_proc(root, 3, dict(HOST, net="net:[99999999999999999999999999]"))
    make_proc(root, PID_MAX_LIMIT + 1, HOST)
    (root / "0042").mkdir()
    r = run_cli("--proc", str(root), "node", "-o", "json", env=env)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert max(n["ns"] for n in data["namespaces"]) <= INODE_MAX
    assert data["scan"]["processes"] == 2
