"""Namespaces no process is in, and how namespaces nest: the passes after the scan.

``ProcFS.scan`` finds the namespaces processes are in.  ``complete`` then adds, each in a
pass of its own (the scan's hot loop stays as it is):

1. bind mounts: the ``nsfs`` lines of the mountinfo of one process per mount namespace
   (containerd's ``/run/netns/cni-*``, ``ip netns add``);
2. open file descriptors: ``/proc/<pid>/fd/*`` links that read ``type:[inode]``;
3. the hierarchy: on an fd of each namespace, ``ioctl(NS_GET_USERNS)`` gives the owning user
   namespace and, for pid and user namespaces, ``ioctl(NS_GET_PARENT)`` the parent; the
   answers are fds, compared as (dev, inode) with fstat.  An owner or parent nothing else
   holds (lsns's "ghost") becomes a row too, as in ``lsns -T``.

What cannot be read (a process gone, an fd table we may not list, a parent outside our user
namespace: EPERM) is left out, never guessed: PNS/ONS stay unknown (0, as lsns prints).

With the C speed-up (``procfs._c``, nsinspect/node/_scan.c) each pass runs its common case in C:
mount namespaces through listmount/statmount instead of their mountinfo text, fds and ioctls
without the interpreter; whatever C does not take is handed back to the Python code here, which
is also the whole path without it.  Both give the same rows (tests/test_hidden_real.py).
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterable
from typing import Any

from nsinspect.model import Namespace, NamespaceId, NsFd, NsMount
from nsinspect.node import procfs
from nsinspect.node.fanout import fanout, slices

_NSIO = 0xB7
NS_GET_USERNS = (_NSIO << 8) | 0x1
NS_GET_PARENT = (_NSIO << 8) | 0x2

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# O_NONBLOCK | O_NOCTTY: a mount point replaced by a FIFO or a tty after we read mountinfo must not block or attach.
_NS_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY

_HIERARCHICAL = ("pid", "user")
_MAX_DEPTH = 64  # user namespaces nest at most 32 deep; pid namespaces too


def parse_ns_target(target: str, types: Iterable[str]) -> tuple[str, int] | None:
    """``net:[4026531993]`` -> ("net", 4026531993) when the type is one of ``types``; else None."""
    t, sep, rest = target.partition(":[")
    if not sep or t not in types or not rest.endswith("]"):
        return None
    digits = rest[:-1]
    if not (digits.isascii() and digits.isdigit()):
        return None
    return t, int(digits)


def unescape_mount_path(raw: bytes) -> str:
    r"""A mountinfo path: the kernel writes space, tab, newline and backslash as ``\ooo``."""
    if b"\\" not in raw:
        return os.fsdecode(raw)
    out = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i]
        octal = raw[i + 1 : i + 4]
        if c == 0x5C and len(octal) == 3 and all(0x30 <= b <= 0x37 for b in octal):
            out.append(int(octal, 8) & 0xFF)
            i += 4
        else:
            out.append(c)
            i += 1
    return os.fsdecode(bytes(out))


def parse_nsfs_mounts(data: bytes, types: Iterable[str]) -> list[tuple[str, int, str]]:
    """The nsfs mounts of one mountinfo: (type, inode, mount point).

    A line: ``ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS``;
    for nsfs the ROOT names the namespace (``net:[4026532300]``).
    """
    out: list[tuple[str, int, str]] = []
    if b" - nsfs " not in data:
        return out
    for line in data.split(b"\n"):
        left, sep, right = line.partition(b" - ")
        if not sep or not right.startswith(b"nsfs "):
            continue
        fields = left.split(b" ")
        if len(fields) < 5:
            continue
        found = parse_ns_target(fields[3].decode("ascii", "replace"), types)
        if found is not None:
            out.append((found[0], found[1], unescape_mount_path(fields[4])))
    return out


def _read_all(procfd: int, path: str) -> bytes:
    """A whole procfs file (a read may stop short of the end: read until one returns nothing)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=procfd)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 18):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def bind_mounts(
    procfd: int, readers: list[tuple[int, str]], types: tuple[str, ...]
) -> dict[tuple[str, int], dict[str, tuple[int, str]]]:
    """nsfs mounts seen in the given mount namespaces: {(type, inode): {path: (mount ns inode, reader)}}.

    ``readers``: (mount namespace inode, procfs entry of a process in it), the node's first; a
    path is kept once, with the first mount namespace it was seen in.  With the C speed-up, a mount
    namespace is listed with listmount/statmount (no mountinfo text for the kernel to format); where
    it cannot tell (an older kernel, a reader whose root is not its namespace's), mountinfo is read.
    """
    found: dict[tuple[str, int], dict[str, tuple[int, str]]] = {}
    c = procfs._c
    listed: dict[int, list[tuple[str, int, str]]] = {}
    left = range(len(readers))
    if c is not None:
        records, left = c.nsfs_mounts(procfd, [entry for _mnt, entry in readers], types)
        for k, ti, ino, point in records:
            listed.setdefault(k, []).append((types[ti], ino, os.fsdecode(point)))
    unread = set(left)
    for k, (mnt_ino, entry) in enumerate(readers):
        if k in unread:
            try:
                mounts = parse_nsfs_mounts(_read_all(procfd, f"{entry}/mountinfo"), types)
            except OSError:  # the process exited, or is hidden from us: its mount namespace goes unread
                continue
        else:
            mounts = listed.get(k, [])
        for t, ino, path in mounts:
            found.setdefault((t, ino), {}).setdefault(path, (mnt_ino, entry))
    return found


def fd_holders(procfd: int, pids: list[int], types: tuple[str, ...]) -> tuple[dict[tuple[str, int], list[tuple[int, int]]], int]:
    """Open fds on namespaces: {(type, inode): [(pid, fd)]}, and how many processes' fd tables we could not list."""
    found: dict[tuple[str, int], list[tuple[int, int]]] = {}
    c = procfs._c
    if c is not None:
        held, denied, retry = c.fds(procfd, pids, types)
        for ti, ino, pid, num in held:
            found.setdefault((types[ti], ino), []).append((pid, num))
        if retry:  # read in Python (a link C does not parse), then put back in the order of ``pids``
            more, more_denied = _fd_holders_py(procfd, retry, types)
            order = {pid: k for k, pid in enumerate(pids)}
            for key, held_by in more.items():
                found[key] = sorted(found.get(key, []) + held_by, key=lambda h: order[h[0]])
            denied += more_denied
        return found, denied
    return _fd_holders_py(procfd, pids, types)


def _fd_holders_py(procfd: int, pids: list[int], types: tuple[str, ...]) -> tuple[dict[tuple[str, int], list[tuple[int, int]]], int]:
    found: dict[tuple[str, int], list[tuple[int, int]]] = {}
    wanted = frozenset(types)
    denied = 0
    readlink, open_, close, listdir = os.readlink, os.open, os.close, os.listdir
    for pid in pids:
        try:
            dfd = open_(f"{pid}/fd", _DIR_FLAGS, dir_fd=procfd)
        except OSError as e:
            denied += e.errno in (errno.EACCES, errno.EPERM)
            continue
        try:
            names = listdir(dfd)
            for name in names:
                try:
                    target = readlink(name, dir_fd=dfd)
                except OSError as e:
                    if e.errno in (errno.EACCES, errno.EPERM):
                        raise
                    continue  # closed meanwhile
                t, sep, rest = target.partition(":[")
                if sep and t in wanted and rest.endswith("]") and rest[:-1].isdigit():
                    found.setdefault((t, int(rest[:-1])), []).append((pid, int(name)))
        except OSError as e:
            denied += e.errno in (errno.EACCES, errno.EPERM)
        finally:
            close(dfd)
    return found, denied


def _open_ns(procfd: int, path: str, want: NamespaceId, stat_first: bool = False) -> int | None:
    """An fd on the namespace at ``path`` (under the procfs root), if it is still ``want``."""
    try:
        if stat_first:  # a mount point: make sure it is the nsfs inode before opening it
            st = os.stat(path, dir_fd=procfd)
            if (st.st_dev, st.st_ino) != want:
                return None
        fd = os.open(path, _NS_FLAGS, dir_fd=procfd)
    except OSError:
        return None
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != want:
        os.close(fd)
        return None
    return fd


def _related(fd: int, request: int) -> tuple[NamespaceId | None, int | None]:
    """The namespace an ioctl names, and an fd on it; (None, None) when the kernel will not say."""
    try:
        rfd = fcntl.ioctl(fd, request)
    except OSError:  # EPERM: outside our user namespace (or the top); ENOTTY: a kernel before 4.9
        return None, None
    st = os.fstat(rfd)
    return NamespaceId(st.st_dev, st.st_ino), rfd


class _Hierarchy:
    """Parents and owners of namespaces, and the ghosts found on the way."""

    def __init__(self, known: set[NamespaceId], types: tuple[str, ...]):
        self.known = known
        self.types = types
        self.relations: dict[NamespaceId, tuple[NamespaceId | None, NamespaceId | None]] = {}
        self.ghosts: list[tuple[str, NamespaceId]] = []

    def settle(self, n: Namespace, parent: NamespaceId | None, owner: NamespaceId | None) -> bool:
        """Take a row's relations as read in C; False when one of them is a ghost to follow (``visit`` does)."""
        for rel, rtype in ((parent, n.type), (owner, "user")):
            if rel is not None and rel not in self.known and rel not in self.relations and rtype in self.types:
                return False
        self.relations[n.id] = (parent, owner)
        return True

    def visit(self, fd: int, nstype: str, ns: NamespaceId, depth: int = 0) -> None:
        """Read the relations of the namespace ``fd`` is open on; follow unknown ones (and close their fds)."""
        parent, pfd = _related(fd, NS_GET_PARENT) if nstype in _HIERARCHICAL else (None, None)
        owner, ofd = _related(fd, NS_GET_USERNS)
        self.relations[ns] = (parent, owner)
        for rel, rfd, rtype in ((parent, pfd, nstype), (owner, ofd, "user")):
            if rfd is None or rel is None:
                continue
            try:
                if rel not in self.known and rel not in self.relations and depth < _MAX_DEPTH and rtype in self.types:
                    self.ghosts.append((rtype, rel))
                    self.visit(rfd, rtype, rel, depth + 1)
            finally:
                os.close(rfd)


def complete(
    procfd: int, namespaces: list[Namespace], types: tuple[str, ...], pids: list[int],
    readers: list[tuple[int, str]], node_ns: dict[str, NamespaceId], dev: int, workers: int = 1,
) -> tuple[list[Namespace], int]:
    """The scan's rows with their parents, owners, mounts and fds, plus the namespaces no process is in.

    ``readers``: one procfs entry per mount namespace (the node's first) whose mountinfo is read.
    ``workers`` > 1: each pass is cut into that many slices, all but one read by forked workers.
    Returns the rows and the number of processes whose fd tables could not be listed.
    """
    def holders(chunk: tuple[list[int], list[tuple[int, str]]]) -> tuple[dict[Any, Any], int, dict[Any, Any]]:
        fds, denied = fd_holders(procfd, chunk[0], types)
        return fds, denied, bind_mounts(procfd, chunk[1], types)

    fds: dict[tuple[str, int], list[tuple[int, int]]] = {}
    mounts: dict[tuple[str, int], dict[str, tuple[int, str]]] = {}
    fds_denied = 0
    for part_fds, denied, part_mounts in fanout(holders, list(zip(slices(pids, workers), slices(readers, workers), strict=True))):
        fds_denied += denied
        for key, held in part_fds.items():
            fds.setdefault(key, []).extend(held)
        for key, paths in part_mounts.items():  # slices keep the readers' order: the node's paths win
            into = mounts.setdefault(key, {})
            for path, where in paths.items():
                into.setdefault(path, where)
    rows = {(n.type, n.id.ino): n for n in namespaces}
    for key in list(mounts) + list(fds):
        if key not in rows:
            t, ino = key
            nsid = NamespaceId(dev, ino)
            rows[key] = Namespace(nsid, t, 0, 0, None, node_ns.get(t) == nsid)
    known = {n.id for n in rows.values()}

    def relate(keys: list[tuple[str, int]]) -> tuple[dict[Any, Any], list[Any]]:
        tree = _Hierarchy(known, types)
        fast = _relations_c(procfd, [rows[key] for key in keys])
        for key, rel in zip(keys, fast, strict=True):
            n = rows[key]
            if rel is not None and tree.settle(n, *rel):
                continue
            fd = _open_row(procfd, n, fds.get(key, ()), mounts.get(key, {}))
            if fd is not None:
                try:
                    tree.visit(fd, n.type, n.id)
                finally:
                    os.close(fd)
        return ({(ns.dev, ns.ino): (tuple(p) if p else None, tuple(o) if o else None)
                 for ns, (p, o) in tree.relations.items()}, [(t, tuple(ns)) for t, ns in tree.ghosts])

    relations: dict[NamespaceId, tuple[NamespaceId | None, NamespaceId | None]] = {}
    for part, ghosts in fanout(relate, slices(list(rows), workers)):
        for (d, i), (p, o) in part.items():
            relations[NamespaceId(d, i)] = (NamespaceId(*p) if p else None, NamespaceId(*o) if o else None)
        for t, (d, i) in ghosts:
            rows.setdefault((t, i), Namespace(NamespaceId(d, i), t, 0, 0, None, node_ns.get(t) == NamespaceId(d, i)))
    out = []
    for key, n in rows.items():
        parent, owner = relations.get(n.id, (None, None))
        held_at = tuple(NsMount(path, mnt) for path, (mnt, _entry) in mounts.get(key, {}).items())
        out.append(n._replace(parent=parent, owner=owner, mounts=held_at, fds=tuple(NsFd(*f) for f in fds.get(key, ()))))
    return out, fds_denied


def _relations_c(procfd: int, rows: list[Namespace]) -> list[tuple[NamespaceId | None, NamespaceId | None] | None]:
    """(parent, owner) of each row read in C through its lowest process; None where Python opens the row."""
    c = procfs._c
    if c is None:
        return [None] * len(rows)
    asked = [n for n in rows if n.nprocs]
    answers = iter(c.relations(procfd, [(f"{n.pid}/ns/{n.type}", n.id.dev, n.id.ino, n.type in _HIERARCHICAL) for n in asked]))
    out: list[tuple[NamespaceId | None, NamespaceId | None] | None] = []
    for n in rows:
        got = next(answers) if n.nprocs else None
        if got is not None:
            p, o = got
            got = (NamespaceId(*p) if p else None, NamespaceId(*o) if o else None)
        out.append(got)
    return out


def _open_row(procfd: int, n: Namespace, fds: Iterable[tuple[int, int]], mounts: dict[str, tuple[int, str]]) -> int | None:
    """An fd on a row's namespace: through its lowest process, else an fd holding it, else a bind mount."""
    if n.nprocs:
        fd = _open_ns(procfd, f"{n.pid}/ns/{n.type}", n.id)
        if fd is not None:
            return fd
    for pid, num in fds:
        fd = _open_ns(procfd, f"{pid}/fd/{num}", n.id)
        if fd is not None:
            return fd
    for path, (_mnt, entry) in mounts.items():
        fd = _open_ns(procfd, f"{entry}/root{path}", n.id, stat_first=True)
        if fd is not None:
            return fd
    return None
