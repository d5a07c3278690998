"""What only the inside of a namespace shows: a UTS namespace's hostname, an IPC namespace's System V objects.

``/proc/sys/kernel/hostname`` and ``/proc/sysvipc/*`` answer for the namespaces of the process that
reads them, so reading a member's means entering its namespace with setns(2).  setns changes the
calling thread, and the agent serves requests from threads: no thread of nsinspect ever enters a
namespace.  A short-lived process does, and writes what it read back over a pipe: a fork of this
process when it has one thread (the CLI), else a fresh interpreter running this file (the agent,
whose threads make fork unsafe).  Answers come back in marshal's format (the same interpreter on
both ends; nothing to import).  It is given namespace fds opened by the caller (an fd pins its
namespace, whatever the process does next), enters each in turn, and exits.

The agent starts a fork server (``start_forker``) before its threads: a request then costs a fork of
that small server rather than an interpreter's start.  This file is also the helper's script: standard library only, run as ``python -I -S enter.py``.
"""

from __future__ import annotations

# Only what the helper needs at module level: its start-up is part of every agent request with details.
import errno
import marshal
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
FLAGS = {"uts": CLONE_NEWUTS, "ipc": CLONE_NEWIPC}
SYSVIPC = ("shm", "sem", "msg")
LIMIT = 4 << 20  # what the helper may write back, in all
TIMEOUT = 5.0


def _setns_call() -> Any:
    """setns(2): os.setns on Python 3.12+, else libc's through ctypes (loaded before any fork)."""
    setns = getattr(os, "setns", None)
    if setns is not None:
        return setns
    import ctypes

    libc_setns = ctypes.CDLL(None, use_errno=True).setns

    def call(fd: int, flag: int) -> None:
        if libc_setns(fd, flag) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    return call


def _read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read(LIMIT // 4).decode("utf-8", "backslashreplace")


def _has_sys_admin() -> bool:
    """Is CAP_SYS_ADMIN (21) in our effective set?"""
    try:
        with open("/proc/self/status", "rb") as f:
            caps = next((int(line.split()[1], 16) for line in f if line.startswith(b"CapEff:")), 0)
    except (OSError, ValueError, IndexError):
        return False
    return bool(caps >> 21 & 1)


def _why(e: OSError, what: str) -> str:
    if e.errno in (errno.EPERM, errno.EACCES):
        if os.geteuid() == 0 and not _has_sys_admin():  # the agent: CAP_SYS_PTRACE only, read-only by design
            return (f"{what}: not read (the kernel shows it only inside the namespace, and entering one takes "
                    "CAP_SYS_ADMIN, which this process is not given; run nsinspect on the node with root's full powers)")
        return f"{what}: permission denied (entering a namespace needs CAP_SYS_ADMIN: run as root)"
    return f"{what}: {e.strerror or e}"


def collect(proc_root: str, jobs: list[tuple[str, int]], setns: Any = None) -> list[dict[str, Any]]:
    """In the helper: enter each (type, fd) and read what it shows.  One dict per job, in order:
    uts {"hostname"}, ipc {"shm", "sem", "msg"} (the /proc/sysvipc files, as text), or {"error"}."""
    setns = setns or _setns_call()
    out: list[dict[str, Any]] = []
    for nstype, fd in jobs:
        try:
            setns(fd, FLAGS[nstype])
        except OSError as e:
            out.append({"error": _why(e, f"entering the {nstype} namespace")})
            continue
        try:
            if nstype == "uts":
                out.append({"hostname": os.uname().nodename})
            else:
                # /proc/sysvipc shows the ipc namespace of the process that opens it: this one, now.
                out.append({k: _read(os.path.join(proc_root, "sysvipc", k)) for k in SYSVIPC})
        except OSError as e:
            out.append({"error": _why(e, f"reading inside the {nstype} namespace")})
    return out


def enter(proc_root: str, jobs: list[tuple[str, int]], timeout: float = TIMEOUT) -> list[dict[str, Any]]:
    """Run ``collect`` in a helper process; every job gets an answer or an error."""
    import subprocess
    import threading

    if not jobs:
        return []
    try:
        forker = _FORKER
        raw = None
        if threading.active_count() == 1:
            raw = _forked(proc_root, jobs, timeout)
        elif forker is not None and forker.proc_root == proc_root and forker.alive:
            try:
                raw = forker.ask(jobs, timeout)
            except OSError:
                raw = None  # the fork server is retired: a fresh interpreter answers from now on
        if raw is None:
            raw = _spawned(proc_root, jobs, timeout)
        answers = marshal.loads(raw)
        if not isinstance(answers, list) or len(answers) != len(jobs):
            raise ValueError("a short answer")
        return [a if isinstance(a, dict) else {"error": "the helper answered nonsense"} for a in answers]
    except (OSError, ValueError, EOFError, TypeError, subprocess.SubprocessError) as e:
        why = f"the helper process that enters namespaces failed ({e})"
        return [{"error": why} for _ in jobs]


def _forked(proc_root: str, jobs: list[tuple[str, int]], timeout: float) -> bytes:
    import select
    import time

    from nsinspect.node.fanout import spawn  # here, not at the top: this file also runs as a script (_spawned)

    setns = _setns_call()  # nothing is imported in the child
    child, r = spawn(lambda: collect(proc_root, jobs, setns))
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    poller = select.poll()  # not select(): an fd above 1023 (the agent keeps thousands open) is fine
    poller.register(r, select.POLLIN)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                os.kill(child, 9)
                raise OSError(errno.ETIMEDOUT, f"no answer in {timeout:.0f} s")
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            if sum(map(len, chunks)) > LIMIT:
                os.kill(child, 9)
                raise OSError(errno.EFBIG, "too long an answer")
    finally:
        os.close(r)
        os.waitpid(child, 0)
    return b"".join(chunks)


def _spawned(proc_root: str, jobs: list[tuple[str, int]], timeout: float) -> bytes:
    import subprocess

    args = [sys.executable, "-I", "-S", os.path.abspath(__file__), proc_root, *(f"{t}:{fd}" for t, fd in jobs)]
    done = subprocess.run(args, pass_fds=[fd for _t, fd in jobs], stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise OSError(errno.EIO, tail[0][:200])
    return done.stdout


# -- the agent's fork server -----------------------------------------------------------------------

_FORKER: Forker | None = None
_HEADER = 4  # every message on the fork server's socket: a 4-byte big-endian length, then that many bytes


def start_forker(proc_root: str) -> bool:
    """For a long-lived process (the agent), called while it still has one thread: fork a server that
    forks one helper per request, so that requests made later from threads cost a fork, not an
    interpreter's start.  False (and the fresh-interpreter path stays) when threads already run."""
    global _FORKER
    import threading

    if threading.active_count() != 1:
        return False
    if _FORKER is None or not _FORKER.alive:
        _FORKER = Forker(proc_root)
    return True


def stop_forker() -> None:
    global _FORKER
    if _FORKER is not None:
        _FORKER.close()
        _FORKER = None


def _send(sock: Any, data: bytes, fds: list[int] | None = None) -> None:
    import socket

    framed = len(data).to_bytes(_HEADER, "big") + data
    sent = socket.send_fds(sock, [framed], fds) if fds else sock.send(framed)
    if sent < len(framed):
        sock.sendall(framed[sent:])


def _recv(sock: Any, limit: int, with_fds: bool = False) -> tuple[bytes, list[int]]:
    import socket

    fds: list[int] = []
    if with_fds:
        head, fds, _flags, _addr = socket.recv_fds(sock, _HEADER, 64)
    else:
        head = sock.recv(_HEADER)
    while head and len(head) < _HEADER:
        more = sock.recv(_HEADER - len(head))
        if not more:
            break
        head += more
    if len(head) < _HEADER:
        return b"", fds
    size = int.from_bytes(head, "big")
    if size > limit:
        raise OSError(errno.EFBIG, "too long an answer")
    chunks, got = [], 0
    while got < size:
        chunk = sock.recv(min(65536, size - got))
        if not chunk:
            raise OSError(errno.EPIPE, "the fork server went away")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks), fds


class Forker:
    """A process forked while the agent had one thread.  For each request (namespace types, with their
    fds passed over a unix socket) it forks a helper that enters, answers on the socket, and exits; the
    server itself never enters anything.  Requests are serial; any failure retires it."""

    def __init__(self, proc_root: str):
        import socket
        import threading

        self.proc_root = proc_root
        self.alive = True
        self._lock = threading.Lock()
        setns = _setns_call()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - runs in the fork server
            ours.close()
            _serve(theirs, proc_root, setns)
        theirs.close()
        self._sock = ours

    def ask(self, jobs: list[tuple[str, int]], timeout: float) -> bytes:
        with self._lock:
            if not self.alive:
                raise OSError(errno.EPIPE, "the fork server is gone")
            try:
                self._sock.settimeout(timeout)
                _send(self._sock, ",".join(t for t, _fd in jobs).encode(), [fd for _t, fd in jobs])
                data, _ = _recv(self._sock, LIMIT)
                if not data:
                    raise OSError(errno.EPIPE, "the fork server went away")
                return data
            except OSError:
                self.close()  # a late answer would be read as the next one's
                raise

    def close(self) -> None:
        self.alive = False
        self._sock.close()
        try:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        except OSError:
            pass


def _serve(sock: Any, proc_root: str, setns: Any) -> None:  # pragma: no cover - runs in the fork server
    code = 0
    try:
        while True:
            data, fds = _recv(sock, 1 << 16, with_fds=True)
            if not data:
                break
            types = data.decode().split(",")
            helper = os.fork()
            if helper == 0:
                try:
                    answer = collect(proc_root, list(zip(types, fds, strict=False)), setns)
                    if len(answer) != len(types):
                        answer = [{"error": "namespace fds were lost on the way to the helper"} for _ in types]
                    _send(sock, marshal.dumps(answer))
                finally:
                    os._exit(0)
            for fd in fds:
                os.close(fd)
            os.waitpid(helper, 0)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def main(argv: list[str]) -> int:  # pragma: no cover - runs in the helper
    jobs = []
    for arg in argv[1:]:
        t, _, fd = arg.partition(":")
        jobs.append((t, int(fd)))
    sys.stdout.buffer.write(marshal.dumps(collect(argv[0], jobs)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
