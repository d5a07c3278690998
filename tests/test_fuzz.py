"""Hostile input, found by machines (issue 21, docs/fuzzing.md).

The fuzz targets of tests/fuzz_targets.py driven three ways: the committed corpus and every crash ever
found, replayed; hypothesis, with bytes and with structured inputs; and a bounded coverage-guided run of
atheris (scripts/fuzz.py) per target.  Plus the findings with a rule of their own, checked against the
reference: kubeconfigs that kubectl refuses, nsinspect refuses too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fuzz_targets
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsinspect.limits import INODE_MAX, decimal
from nsinspect.model import NS_TYPES
from nsinspect.node import hidden, procfs

ROOT = Path(__file__).resolve().parent.parent
FUZZ = Path(__file__).resolve().parent / "fuzz"
TARGETS = sorted(fuzz_targets.TARGETS)
SLOW = {"proc_tree"}  # each input runs the command line four times, in C and in Python


@pytest.mark.parametrize("target", TARGETS)
def test_corpus_and_crashes_replay(target):
    """Every committed input of the target, and every crash found so far, now passes the property."""
    files = [p for d in ("corpus", "crashes") for p in sorted((FUZZ / d / target).glob("*"))]
    assert (FUZZ / "corpus" / target).is_dir() and files, f"no corpus for {target}: run scripts/fuzz.py --keep {target}"
    for p in files:
        try:
            fuzz_targets.TARGETS[target](p.read_bytes())
        except Exception as e:
            raise AssertionError(f"{p.relative_to(ROOT)}: {type(e).__name__}: {e}") from e


@pytest.mark.parametrize("target", TARGETS)
def test_any_bytes(target):
    """hypothesis: random bytes through each door end in an answer or in the contract's error."""
    fn = fuzz_targets.TARGETS[target]

    @settings(max_examples=40 if target in SLOW else 300, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(max_size=600))
    def prop(data):
        fn(data)

    prop()


_NUMBERS = st.one_of(st.integers(0, INODE_MAX + 10).map(str), st.from_regex(r"\A[0-9٠-٩ _+-]{0,24}\Z"), st.text(max_size=8))


@settings(max_examples=500, deadline=None, database=None)
@given(st.sampled_from(NS_TYPES), _NUMBERS)
def test_ns_link_numbers_are_strict(nstype, digits):
    """A link's inode: ASCII digits, no sign, space, ``_`` or leading zero, at most 2^64-1 -- by both readers."""
    target = f"{nstype}:[{digits}]"
    plain = digits.isascii() and digits.isdigit() and (digits == "0" or not digits.startswith("0"))
    want = int(digits) if plain and int(digits) <= INODE_MAX else None
    assert procfs.parse_ns_link(target, nstype) == want
    assert hidden.parse_ns_target(target, NS_TYPES) == ((nstype, want) if want else None)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.integers(-5, 2**70).map(str), st.text(max_size=12)))
def test_pid_argument(text):
    """``pid TEXT``: a process (exit 0), not found (3) or a usage error (2) -- never 70, never int()'s leniency."""
    code, out, err = fuzz_targets.run_cli(["pid", "--", text] if text.startswith("-") else ["pid", text])
    fuzz_targets.check_outcome(code, out, err, f"pid {text!r}")
    if decimal(text, 1 << 22) is None:
        assert code == 2, (text, code, err)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(NS_TYPES), st.integers(1, 6)), min_size=1, max_size=8),
       st.binary(max_size=40), st.binary(max_size=60))
def test_structured_tree_c_and_python_agree(links, comm, cmdline):
    """A well-formed tree with odd names: C and Python give the same bytes, and every namespace is in the answer."""
    with fuzz_targets.scratch() as tmp:
        root = tmp / "proc"
        root.mkdir()
        by_pid: dict[int, dict[str, int]] = {}
        for i, (t, n) in enumerate(links):
            by_pid.setdefault(2 + i % 3, {})[t] = 4026532000 + n
        host = {t: 4026531835 + i for i, t in enumerate(NS_TYPES)}
        for pid, ns in {1: host, **{p: {**host, **own} for p, own in by_pid.items()}}.items():  # every link: no zombie
            d = root / str(pid)
            (d / "ns").mkdir(parents=True)
            for t, ino in ns.items():
                os.symlink(f"{t}:[{ino}]", d / "ns" / t)
            name = comm.replace(b"\n", b"") if pid > 1 else b"init"
            (d / "stat").write_bytes(f"{pid} (".encode() + name + b") S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7 0\n")
            (d / "cmdline").write_bytes(cmdline)
        args = ["--proc", str(root), "node", "-o", "json"]
        fast, pure = fuzz_targets.run_cli(args), fuzz_targets.run_cli(args, pure=True)
        fuzz_targets.check_outcome(*fast, what="node")
        assert fast == pure
        import json

        shown = {(n["type"], n["ns"]) for n in json.loads(fast[1])["namespaces"]}
        assert {(t, ino) for ns in by_pid.values() for t, ino in ns.items()} <= shown


# -- kubeconfigs kubectl refuses ----------------------------------------------------------------------
_BASE = """apiVersion: v1
kind: Config
current-context: lab
clusters:
- name: lab
  cluster: {cluster}
users:
- name: me
  user: {user}
contexts:
- name: lab
  context: {{cluster: lab, user: me}}
"""
_REFUSED = {
    "server a number": ("{server: 123}", "{token: abc}"),
    "cluster a string": ("ecure}", "{token: abc}"),
    "as-groups of numbers": ('{server: "https://127.0.0.1:1"}', "{token: abc, as: me, as-groups: [1]}"),
    "token a number": ('{server: "https://127.0.0.1:1"}', "{token: 5}"),
    "insecure a string": ('{server: "https://127.0.0.1:1", insecure-skip-tls-verify: "yes"}', "{token: abc}"),
    "server not a URL": ('{server: "https://[::1"}', "{token: abc}"),
}


@pytest.mark.parametrize("case", sorted(_REFUSED))
def test_kubeconfig_that_kubectl_refuses(tmp_path, case):
    """Fuzzing found kubeconfigs that ended in exit 70 (a value of the wrong type, a server that is no URL);
    the real kubectl refuses each of them on load, and so does nsinspect: one sentence, exit 2."""
    cluster, user = _REFUSED[case]
    path = tmp_path / "config"
    path.write_text(_BASE.format(cluster=cluster, user=user))
    ref = subprocess.run(["kubectl", "--kubeconfig", str(path), "get", "pods", "--request-timeout=2s"],
                         capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert ref.returncode != 0 and ("error loading config file" in ref.stderr or "must be a URL" in ref.stderr), ref.stderr
    code, out, err = fuzz_targets.run_cli(["--kubeconfig", str(path), "pods"])
    fuzz_targets.check_outcome(code, out, err, case)
    assert code == 2 and "kubeconfig" in err, err


# -- the bounded coverage-guided run --------------------------------------------------------------------
def test_bounded_fuzz_run():
    """scripts/fuzz.py, every target, a few seconds each: a crash fails the suite and is saved to commit."""
    try:
        import atheris  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("atheris must be installed in CI (pip install '.[test]')")
        pytest.skip("atheris is not installed")
    seconds = os.environ.get("NSINSPECT_FUZZ_SECONDS", "15")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "fuzz.py"), "--seconds", seconds],
                       capture_output=True, text=True, timeout=len(TARGETS) * (int(seconds) + 60))
    print(r.stdout)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


# -- what fuzzing found in procfs trees, each on its own ---------------------------------------------------------
def _tree_with(tmp: Path, build) -> str:
    root = tmp / "proc"
    make = __import__("helpers").make_proc
    make(root, 1, {t: 4026531835 + i for i, t in enumerate(NS_TYPES)}, comm="init", ppid=0)
    build(root)
    return str(root)


@pytest.mark.parametrize("pure", [False, True], ids=["c", "python"])
def test_a_link_missing_beside_a_pid_entry_that_is_no_link(tmp_path, pure):
    """A pid whose ``ns/net`` is missing and whose ``ns/pid`` is a directory: was exit 70 (EINVAL from readlink)."""
    def build(root):
        __import__("helpers").make_proc(root, 15, {"mnt": 4026532001}, comm="odd")
        (root / "15" / "ns" / "pid").mkdir()

    code, out, err = fuzz_targets.run_cli(["--proc", _tree_with(tmp_path, build), "node", "-o", "json"], pure=pure)
    fuzz_targets.check_outcome(code, out, err, "node")
    assert code == 0 and '"ns": 4026532001' in out


def test_an_nsfs_mount_point_with_a_nul(tmp_path):
    """A mountinfo whose nsfs mount point unescapes to a NUL: was exit 70 (ValueError from os.stat)."""
    def build(root):
        (root / "1" / "mountinfo").write_bytes(b"30 25 0:4 net:[4026532700] /run/a\\000b rw shared:1 - nsfs nsfs rw\n")

    code, out, err = fuzz_targets.run_cli(["--proc", _tree_with(tmp_path, build), "node", "-o", "json"])
    fuzz_targets.check_outcome(code, out, err, "node")
    assert code == 0


def test_the_command_line_lets_go_of_its_files(tmp_path):
    """Run in a process that goes on (a test's, a fuzzer's), the command line closes its engine: it leaked fds."""
    root = _tree_with(tmp_path, lambda root: None)
    fuzz_targets.run_cli(["--proc", root, "node"])
    before = len(os.listdir("/proc/self/fd"))
    for args in (["node"], ["node", "-o", "json"], ["pid", "1"], ["pid", "7"]):
        for _ in range(5):
            fuzz_targets.run_cli(["--proc", root, *args])
    assert len(os.listdir("/proc/self/fd")) <= before
