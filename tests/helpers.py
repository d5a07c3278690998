"""Test helpers: run the real CLI, build procfs fixture trees, make real namespaces."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

NS_TYPES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")


def require_root() -> None:
    """Real-kernel tests need root.  Under CI a missing privilege is a failure, never a skip."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("this test needs root, and CI must run it")
        pytest.skip("needs root")


def run_cli(*args: str, env: dict[str, str] | None = None, user: int | None = None, timeout: float = 60,
            prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run ``nsinspect ARGS`` as users do: a separate process, real exit code and streams
    (``prefix``: a command that runs it, such as nsenter)."""
    if user is not None:
        return run_cli_as(user, *args)
    cmd = [*prefix, sys.executable, "-m", "nsinspect", *args]
    # Hermetic: no node-side settings and no Kubernetes configuration unless a test passes them.
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("NSINSPECT_PROC", "CONTAINER_RUNTIME_ENDPOINT", "KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    full_env.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)


def run_cli_as(uid: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``nsinspect ARGS`` as an unprivileged user, in a forked child that drops root.

    (A fresh interpreter could not import its packages when they live in root's home.)
    Everything the CLI imports lazily is imported before the fork.
    """
    import tempfile

    import yaml  # noqa: F401

    import nsinspect.cli
    import nsinspect.node.engine  # noqa: F401
    import nsinspect.render.data  # noqa: F401
    import nsinspect.render.table  # noqa: F401

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = os.fork()
        if child == 0:  # pragma: no cover - child
            code = 70
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout = open(1, "w", closefd=False)
                sys.stderr = open(2, "w", closefd=False)
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                nsinspect.cli.main(list(args))
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(child, 0)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(list(args), os.waitstatus_to_exitcode(status), out.read().decode(), err.read().decode())


def cli_json(*args: str, **kw) -> dict:
    r = run_cli(*args, "-o", "json", **kw)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def assert_one_sentence_error(r: subprocess.CompletedProcess[str], code: int) -> None:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines, "an error must say something on stderr"
    assert r.stdout == ""


# -- ground truth from the kernel -----------------------------------------------------------
def readlink_ns(pid: int, nstype: str) -> int | None:
    try:
        target = os.readlink(f"/proc/{pid}/ns/{nstype}")
    except (FileNotFoundError, PermissionError):  # gone, or hidden (PID 1 here)
        return None
    return int(target[len(nstype) + 2 : -1])


def truth(pid: int) -> dict[str, int | None]:
    return {t: readlink_ns(pid, t) for t in NS_TYPES}


def node_truth() -> dict[str, int]:
    """The node's namespaces as the kernel says: PID 1's, or kthreadd's when PID 1 is hidden."""
    for pid in (1, 2):
        try:
            return {t: int(os.readlink(f"/proc/{pid}/ns/{t}")[len(t) + 2 : -1]) for t in NS_TYPES}
        except PermissionError:
            continue
    raise AssertionError("neither PID 1 nor PID 2 is readable")


def children_of(pid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        if int(data[data.rindex(b")") + 2 :].split()[1]) == pid:
            out.append(int(name))
    return sorted(out)


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = children_of(p)
        out.extend(kids)
        todo.extend(kids)
    return sorted(out)


@dataclass
class Tree:
    """A process tree started with unshare(1), in its own session."""

    proc: subprocess.Popen
    pids: list[int] = field(default_factory=list)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def spawn_tree(unshare_flags: list[str], script: str, expect: int, timeout: float = 10) -> Tree:
    """Run ``unshare FLAGS --fork sh -c SCRIPT`` and wait until it has EXPECT processes (itself included)."""
    proc = subprocess.Popen(
        ["unshare", *unshare_flags, "--fork", "--kill-child", "sh", "-c", script],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    tree = Tree(proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tree.pids = sorted([proc.pid, *descendants(proc.pid)])
        if len(tree.pids) >= expect:
            # The children must have exec'd (their ns are final once they run sleep).
            if all(comm(p) in ("sleep", "unshare", "sh") for p in tree.pids):
                return tree
        time.sleep(0.02)
    tree.stop()
    raise AssertionError(f"unshare tree did not reach {expect} processes: {tree.pids}")


def comm(pid: int) -> str:
    """A process's command name ('' when it is gone)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def lsns_flat() -> list[dict]:
    """``lsns -J`` with its nested pid/user children flattened.

    lsns exits 1 with no output when a process it is reading exits under it (other work on a busy
    machine); such a run is repeated, a few times at most."""
    for _ in range(5):
        r = subprocess.run(["lsns", "-J"], capture_output=True, text=True)
        if r.returncode == 0:
            break
    assert r.returncode == 0, f"lsns -J failed 5 times: {r.stderr}"
    data = json.loads(r.stdout)
    out: list[dict] = []

    def walk(items: list[dict]) -> None:
        for item in items:
            out.append(item)
            walk(item.get("children", []))

    walk(data["namespaces"])
    return out


# -- fixture procfs trees ---------------------------------------------------------------------
def make_proc(
    root: Path,
    pid: int,
    links: dict[str, int | str | None],
    comm: str = "proc",
    ppid: int = 1,
    start: int = 100,
    cmdline: list[str] | None = None,
) -> None:
    """One fixture process: ns links (int -> ``type:[int]``, str -> raw target, None -> absent), stat, cmdline."""
    d = root / str(pid)
    (d / "ns").mkdir(parents=True)
    for t, v in links.items():
        if v is None:
            continue
        target = f"{t}:[{v}]" if isinstance(v, int) else v
        os.symlink(target, d / "ns" / t)
    fields = ["S", str(ppid)] + ["0"] * 17 + [str(start)] + ["0"] * 30
    (d / "stat").write_bytes(f"{pid} ({comm}) ".encode() + " ".join(fields).encode() + b"\n")
    (d / "cmdline").write_bytes(b"".join(a.encode("utf-8", "surrogateescape") + b"\0" for a in (cmdline or [])))


def read_pty(primary: int) -> bytes:
    """Everything a child writes to the terminal whose primary side is ``primary``, until it closes it."""
    out = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    return out
