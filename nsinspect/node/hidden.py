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
import select
from collections.abc import Collection, Iterable
from typing import Any

from nsinspect.limits import decimal
from nsinspect.model import Namespace, NamespaceId, NsFd, NsMount
from nsinspect.node import procfs

_NSIO = 0xB7
NS_GET_USERNS = (_NSIO << 8) | 0x1
NS_GET_PARENT = (_NSIO << 8) | 0x2

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# O_NONBLOCK | O_NOCTTY: a mount point replaced by a FIFO or a tty after we read mountinfo must not block or attach.
_NS_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY

_HIERARCHICAL = ("pid", "user")
_FD_MAX = (1 << 31) - 1  # an fd is an int
_MAX_DEPTH = 64  # user namespaces nest at most 32 deep; pid namespaces too


def parse_ns_target(target: str, types: Iterable[str]) -> tuple[str, int] | None:
    """``net:[4026531993]`` -> ("net", 4026531993) when the type is one of ``types``; else None."""
    t = target.partition(":[")[0]
    ino = procfs.parse_ns_link(target, t) if t in types else None
    return (t, ino) if ino else None  # 0 is no inode (as the C passes read it)


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


class MountTables:
    """The nsfs mounts of each mount namespace, kept between scans (the agent's warm ``node``).

    A mount namespace's table is listed again only when it changed: for each one kept, an open fd on
    its reader's ``mountinfo``, which poll(2) marks (POLLPRI) once a mount or unmount happened in that
    namespace since the last look (the kernel's per-namespace event count).  The fd is opened before the
    table is read, so a change while reading is seen next time.  A table is reused for the same reader
    only (pid and start time: its paths are relative to that process's root), and dropped with its
    namespace.  Not thread-safe: one scan at a time (the engine's lock).
    """

    def __init__(self, limit: int = 0):
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.limit = limit or max(0, (soft if soft != resource.RLIM_INFINITY else 1 << 20) // 2 - 64)
        # mount ns inode -> (reader entry, its start time, mountinfo fd, its nsfs mounts)
        self._kept: dict[int, tuple[str, int, int, list[tuple[str, int, str]]]] = {}
        self._poller = select.poll()  # every kept fd, for POLLPRI
        self._by_fd: dict[int, int] = {}  # kept fd -> mount ns inode
        self.reused = self.read = 0  # of the last scan

    def unchanged(self, procfd: int, readers: list[tuple[int, str]], known: dict[int, int] | None = None,
                  ran: set[int] | frozenset[int] = frozenset()) -> dict[int, list[tuple[str, int, str]]]:
        """The kept tables still good for these readers: {index in readers: mounts}.  Forgets the others.
        ``known``: start times the scan just read, by pid (the rest are read here); ``ran``: pids that may have
        changed their root since (chroot, pivot_root: the paths of a table are relative to its reader's root)."""
        known = known or {}
        starts = {k: known.get(int(entry)) or _start_time(procfd, entry) for k, (_mnt, entry) in enumerate(readers)}
        wanted = {mnt: (k, entry) for k, (mnt, entry) in enumerate(readers)}
        for mnt in [m for m in self._kept if m not in wanted]:
            self._forget(mnt)
        for mnt, (entry, start, _fd, _mounts) in list(self._kept.items()):
            k, want = wanted[mnt]
            if want != entry or starts[k] is None or starts[k] != start or int(entry) in ran:
                self._forget(mnt)
        for fd, ev in self._poller.poll(0):
            if ev & (select.POLLPRI | select.POLLERR | select.POLLNVAL):
                self._forget(self._by_fd[fd])
        out = {wanted[mnt][0]: kept[3] for mnt, kept in self._kept.items()}
        self.reused, self.read = len(out), len(readers) - len(out)
        self._starts = starts
        return out

    def watch(self, procfd: int, readers: list[tuple[int, str]], ks: Iterable[int]) -> dict[int, int]:
        """Before reading these readers' tables: an fd on each one's mountinfo {index: fd} (within the limit)."""
        out: dict[int, int] = {}
        for k in ks:
            if len(self._kept) + len(out) >= self.limit:
                break
            try:
                out[k] = os.open(f"{readers[k][1]}/mountinfo", os.O_RDONLY | os.O_CLOEXEC, dir_fd=procfd)
            except OSError:
                continue
        return out

    def keep(self, readers: list[tuple[int, str]], k: int, fd: int, mounts: list[tuple[str, int, str]]) -> None:
        mnt, entry = readers[k]
        start = self._starts.get(k)
        if start is None or mnt in self._kept:
            os.close(fd)
            return
        self._kept[mnt] = (entry, start, fd, mounts)
        self._poller.register(fd, select.POLLPRI)
        self._by_fd[fd] = mnt

    def fds(self) -> set[int]:
        """The mountinfo fds kept (none is on a namespace)."""
        return set(self._by_fd)

    def _forget(self, mnt: int) -> None:
        fd = self._kept.pop(mnt)[2]
        self._poller.unregister(fd)
        del self._by_fd[fd]
        os.close(fd)

    def close(self) -> None:
        for mnt in list(self._kept):
            self._forget(mnt)


def _start_time(procfd: int, entry: str) -> int | None:
    try:
        return procfs.parse_stat(_read_all(procfd, f"{entry}/stat"))[3]
    except (OSError, ValueError, IndexError):
        return None


def bind_mounts(
    procfd: int, readers: list[tuple[int, str]], types: tuple[str, ...], tables: MountTables | None = None,
    starts: dict[int, int] | None = None, ran: set[int] | frozenset[int] = frozenset(),
) -> dict[tuple[str, int], dict[str, tuple[int, str]]]:
    """nsfs mounts seen in the given mount namespaces: {(type, inode): {path: (mount ns inode, reader)}}.

    ``readers``: (mount namespace inode, procfs entry of a process in it), the node's first; a
    path is kept once, with the first mount namespace it was seen in.  With the C speed-up, a mount
    namespace is listed with listmount/statmount (no mountinfo text for the kernel to format); where
    it cannot tell (an older kernel, a reader whose root is not its namespace's), mountinfo is read.
    ``tables``: tables kept from earlier scans, reused where their namespace did not change (``starts``:
    the readers' start times, where the scan has them; ``ran``: readers whose tables are listed again, as their
    root may have moved).
    """
    found: dict[tuple[str, int], dict[str, tuple[int, str]]] = {}
    c = procfs._c
    listed: dict[int, list[tuple[str, int, str]]] = tables.unchanged(procfd, readers, starts, ran) if tables is not None else {}
    todo = [k for k in range(len(readers)) if k not in listed]
    watching = tables.watch(procfd, readers, todo) if tables is not None else {}
    left: list[int] = todo
    if c is not None and todo:
        # The C pass hands each (type, inode, path) back once per call, for its first reader. A table kept for
        # later must be its namespace's whole one (a pin it shares with another namespace stays when that one
        # unmounts it): with tables, one call per namespace.
        left = []
        for batch in ([[k] for k in todo] if tables is not None else [todo]):
            records, back = c.nsfs_mounts(procfd, [readers[k][1] for k in batch], types)
            for i, ti, ino, point in records:
                listed.setdefault(batch[i], []).append((types[ti], ino, os.fsdecode(point)))
            left += [batch[i] for i in back]
    unread = set(left)
    for k, (mnt_ino, entry) in enumerate(readers):
        if k in unread:
            try:
                mounts = parse_nsfs_mounts(_read_all(procfd, f"{entry}/mountinfo"), types)
            except OSError:  # the process exited, or is hidden from us: its mount namespace goes unread
                fd = watching.pop(k, None)
                if fd is not None:
                    os.close(fd)
                continue
        else:
            mounts = listed.get(k, [])
        fd = watching.pop(k, None)
        if fd is not None and tables is not None:
            tables.keep(readers, k, fd, mounts)
        for t, ino, path in mounts:
            found.setdefault((t, ino), {}).setdefault(path, (mnt_ino, entry))
    return found


# What the fd pass finds: {(type, inode): [(pid, fd)]}, fd tables not read, and (inode, pid, fd) of
# namespace fds whose type could not be read (``_fdinfo_holders``).
FdPass = tuple[dict[tuple[str, int], list[tuple[int, int]]], int, list[tuple[int, int, int]]]


def fd_holders(procfd: int, pids: list[int], types: tuple[str, ...], skip: Collection[int] = ()) -> FdPass:
    """Open fds on namespaces, the number of processes whose fd tables could not be read, and the
    namespace fds of unknown type (read through fdinfo: ``_fdinfo_holders``).  ``skip``: fd numbers not to read,
    in every table (the agent's own pidfds and mountinfo fds, thousands, none on a namespace)."""
    c = procfs._c
    if c is None:
        return _fd_holders_py(procfd, pids, types, skip)
    found: dict[tuple[str, int], list[tuple[int, int]]] = {}
    if skip:
        bits = bytearray((max(skip) >> 3) + 1)
        for num in skip:
            bits[num >> 3] |= 1 << (num & 7)
        held, retry = c.fds(procfd, pids, types, bytes(bits))
    else:
        held, retry = c.fds(procfd, pids, types)
    for ti, ino, pid, num in held:
        found.setdefault((types[ti], ino), []).append((pid, num))
    denied = 0
    untyped: list[tuple[int, int, int]] = []
    if retry:  # read in Python (a link C does not parse, a table C may not list), then put back in the order of ``pids``
        more, denied, untyped = _fd_holders_py(procfd, retry, types, skip)
        order = {pid: k for k, pid in enumerate(pids)}
        for key, held_by in more.items():
            found[key] = sorted(found.get(key, []) + held_by, key=lambda h: order[h[0]])
    return found, denied, untyped


def _fd_holders_py(procfd: int, pids: list[int], types: tuple[str, ...], skip: Collection[int] = ()) -> FdPass:
    found: dict[tuple[str, int], list[tuple[int, int]]] = {}
    untyped: list[tuple[int, int, int]] = []
    wanted = frozenset(types)
    denied = 0
    readlink, open_, close, listdir = os.readlink, os.open, os.close, os.listdir
    via_fdinfo: _FdInfo | None = None
    for pid in pids:
        try:
            dfd = open_(f"{pid}/fd", _DIR_FLAGS, dir_fd=procfd)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EPERM):
                continue  # gone
            # Another user's fd table (mode 0500) takes DAC powers to list: read its fdinfo instead.
            via_fdinfo = via_fdinfo or _FdInfo(procfd, wanted)
            denied += not via_fdinfo.read(pid, found, untyped)
            continue
        try:
            names = listdir(dfd)
            for name in names:
                num = decimal(name, _FD_MAX)
                if num is None or num in skip:
                    continue
                try:
                    target = readlink(name, dir_fd=dfd)
                except OSError as e:
                    if e.errno in (errno.EACCES, errno.EPERM):
                        raise
                    continue  # closed meanwhile
                ns = parse_ns_target(target, wanted)
                if ns is not None:
                    found.setdefault(ns, []).append((pid, num))
        except OSError as e:
            denied += e.errno in (errno.EACCES, errno.EPERM)
        finally:
            close(dfd)
    return found, denied, untyped


# ioctl(NS_GET_NSTYPE) answers a CLONE_NEW* flag.
_NS_GET_NSTYPE = (_NSIO << 8) | 0x3
_CLONE_TYPES = {0x02000000: "cgroup", 0x08000000: "ipc", 0x00020000: "mnt", 0x40000000: "net",
                0x20000000: "pid", 0x00000080: "time", 0x10000000: "user", 0x04000000: "uts"}
_SYS_PIDFD_GETFD = 438  # the same number on every architecture (a syscall newer than the split tables)


def parse_fdinfo(data: bytes) -> tuple[int | None, int | None]:
    """``/proc/<pid>/fdinfo/<fd>`` -> (mnt_id, ino); None for a field that is absent or malformed."""
    mnt_id = ino = None
    for line in data.split(b"\n"):
        key, sep, value = line.partition(b":")
        value = value.strip()
        if not sep or not (value.isascii() and value.isdigit()) or len(value) > 20:
            continue
        if key == b"mnt_id":
            mnt_id = int(value)
        elif key == b"ino":
            ino = int(value)
    return mnt_id, (ino if ino is not None and ino < 1 << 64 else None)


def _own_nsfs_mount_id() -> int | None:
    """The id of the kernel's internal nsfs mount, as fdinfo names it: from an ns fd of our own."""
    try:
        fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
            return parse_fdinfo(f.read())[0]
    except OSError:
        return None
    finally:
        os.close(fd)


class _FdInfo:
    """Namespace fds of a process whose fd table we may not list, found through ``fdinfo``.

    ``/proc/<pid>/fd`` of another user is mode 0500: listing it, or even looking a link up in it, takes
    CAP_DAC_READ_SEARCH, which the agent is not given.  ``/proc/<pid>/fdinfo`` is listable by all, and
    each ``fdinfo/<fd>`` passes the ptrace read check, which CAP_SYS_PTRACE does: an fd whose ``mnt_id``
    is the kernel's nsfs mount is a namespace, and its ``ino`` is the namespace's inode.  Its type comes
    from a duplicate of the fd (``pidfd_getfd``, a ptrace check that CAP_SYS_PTRACE passes too, then
    ``ioctl(NS_GET_NSTYPE)``, closed at once) where pids are ours to open (this procfs shows us); else
    it is left untyped, and the caller names it by inode if another row knows it, or reports it.
    """

    def __init__(self, procfd: int, wanted: frozenset[str]):
        self.procfd, self.wanted = procfd, wanted
        self.nsfs_mnt = _own_nsfs_mount_id()
        self.pidfds = _shows_us(procfd)

    def read(self, pid: int, found: dict[tuple[str, int], list[tuple[int, int]]], untyped: list[tuple[int, int, int]]) -> bool:
        """Add the process's namespace fds; False when its fdinfo cannot be read either."""
        if self.nsfs_mnt is None:
            return False
        try:
            names = _listdir_at(self.procfd, f"{pid}/fdinfo")
        except OSError as e:
            return e.errno not in (errno.EACCES, errno.EPERM)  # gone is not denied
        held: list[tuple[int, int]] = []
        for name in names:
            if not (name.isascii() and name.isdigit()):
                continue
            try:
                mnt_id, ino = parse_fdinfo(_read_all(self.procfd, f"{pid}/fdinfo/{name}"))
            except OSError as e:
                if e.errno in (errno.EACCES, errno.EPERM):
                    return False
                continue  # closed meanwhile
            if mnt_id == self.nsfs_mnt and ino is not None:
                held.append((ino, int(name)))
        if not held:
            return True
        types = self._types(pid, held)
        for (ino, num), t in zip(held, types, strict=True):
            if t is None:
                untyped.append((ino, pid, num))
            elif t in self.wanted:
                found.setdefault((t, ino), []).append((pid, num))
        return True

    def _types(self, pid: int, held: list[tuple[int, int]]) -> list[str | None]:
        """Each fd's namespace type, read from a duplicate of it; None where that cannot be done."""
        out: list[str | None] = [None] * len(held)
        if not self.pidfds:
            return out
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return out
        try:
            for k, (ino, num) in enumerate(held):
                fd = _pidfd_getfd(pidfd, num)
                if fd < 0:
                    continue
                try:
                    if os.fstat(fd).st_ino == ino:
                        out[k] = _CLONE_TYPES.get(fcntl.ioctl(fd, _NS_GET_NSTYPE))
                except OSError:
                    pass
                finally:
                    os.close(fd)
        finally:
            os.close(pidfd)
        return out



def _shows_us(procfd: int) -> bool:
    """Is this procfs of our pid namespace (its ``self`` is our pid), so that its pids are ours to open?"""
    try:
        return os.readlink("self", dir_fd=procfd) == str(os.getpid())
    except OSError:
        return False


_syscall: Any = None


def _pidfd_getfd(pidfd: int, num: int) -> int:
    """pidfd_getfd(2): a duplicate of fd ``num`` of the process, or -1."""
    global _syscall
    if _syscall is None:
        import ctypes

        _syscall = ctypes.CDLL(None, use_errno=True).syscall
        _syscall.restype = ctypes.c_long
    return int(_syscall(_SYS_PIDFD_GETFD, pidfd, num, 0))


def _dup_ns_fd(procfd: int, pid: int, num: int, want: NamespaceId) -> int | None:
    """A duplicate of a process's fd on the namespace ``want`` (for a table we may not look into), or None."""
    if not _shows_us(procfd):
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        fd = _pidfd_getfd(pidfd, num)
    finally:
        os.close(pidfd)
    return _if_names(fd, want) if fd >= 0 else None


def _if_names(fd: int, want: NamespaceId) -> int | None:
    """``fd`` if it is open on the namespace ``want``; else None, and it is closed."""
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != want:
        os.close(fd)
        return None
    return fd


def _listdir_at(procfd: int, path: str) -> list[str]:
    fd = os.open(path, _DIR_FLAGS, dir_fd=procfd)
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def _open_ns(procfd: int, path: str, want: NamespaceId, stat_first: bool = False) -> int | None:
    """An fd on the namespace at ``path`` (under the procfs root), if it is still ``want``."""
    try:
        if stat_first:  # a mount point: make sure it is the nsfs inode before opening it
            st = os.stat(path, dir_fd=procfd)
            if (st.st_dev, st.st_ino) != want:
                return None
        fd = os.open(path, _NS_FLAGS, dir_fd=procfd)
    except (OSError, ValueError):  # ValueError: a path with a NUL (a mount table no kernel writes)
        return None
    return _if_names(fd, want)


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
        known, relations = self.known, self.relations
        if parent is not None and parent not in known and parent not in relations and n.type in self.types:
            return False
        if owner is not None and owner not in known and owner not in relations and "user" in self.types:
            return False
        relations[n.id] = (parent, owner)
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


# What a slice's pass after the scan sends back (plain containers, for marshal): fds on namespaces,
# fd tables not read, nsfs mounts, each of its namespaces' (parent, owner) or None, and the namespace
# fds whose type could not be read, as (inode, pid, fd).
SlicePass = tuple[dict[Any, Any], int, dict[Any, Any], dict[Any, Any], list[tuple[int, int, int]]]


def slice_pass(
    procfd: int, pids: list[int], agg: dict[str, dict[int, list[int]]], types: tuple[str, ...], dev: int, node_mnt: int,
) -> SlicePass:
    """The passes after the scan for one slice of pids, read where its scan was (``discover.node_view``).

    ``agg``: the slice's scan, per type {inode: [nprocs, lowest pid in the slice]}, mnt always among
    them; ``types``: the types asked for.  Read: the fds of its processes; the nsfs mounts of its mount
    namespaces (one reader each: its lowest pid here; the node's first, then by inode); and the parent
    and owner of each of its namespaces of those types, through its lowest pid here.  A namespace met by
    two slices is read by both, to the same answer.
    """
    fds, denied, untyped = fd_holders(procfd, pids, types)
    readers = mount_readers(((ino, low) for ino, (_n, low) in agg["mnt"].items()), node_mnt)
    found = bind_mounts(procfd, readers, types)
    keys: list[tuple[str, int]] = []
    asked: list[tuple[str, int, int, bool]] = []
    for t in types:
        hierarchical = t in _HIERARCHICAL
        for ino, (_n, low) in agg[t].items():
            keys.append((t, ino))
            asked.append((f"{low}/ns/{t}", dev, ino, hierarchical))
    return fds, denied, found, dict(zip(keys, relations(procfd, asked), strict=True)), untyped


def mount_readers(lows: Iterable[tuple[int, int]], node_mnt: int) -> list[tuple[int, str]]:
    """(mount namespace inode, procfs entry of its reader) from (inode, lowest pid): the node's first, then by inode
    (the order every scan reads and merges mount tables in)."""
    return sorted(((ino, str(low)) for ino, low in lows), key=lambda r: (r[0] != node_mnt, r[0]))


def relations(procfd: int, asked: list[tuple[str, int, int, bool]]) -> list[Any]:
    """For each (path under the procfs root, dev, inode, hierarchical): (parent, owner) as (dev, inode) pairs, or
    None when the path no longer names that namespace; in C where it is built."""
    c = procfs._c
    return c.relations(procfd, asked) if c is not None else [_relations_py(procfd, *row) for row in asked]


def _relations_py(procfd: int, path: str, dev: int, ino: int, hierarchical: bool) -> tuple[tuple[int, int] | None, tuple[int, int] | None] | None:
    """What ``_scan.relations`` answers for one row: (parent, owner) as (dev, inode) pairs, or None
    when the link no longer names that namespace."""
    fd = _open_ns(procfd, path, NamespaceId(dev, ino))
    if fd is None:
        return None
    try:
        parent, pfd = _related(fd, NS_GET_PARENT) if hierarchical else (None, None)
        owner, ofd = _related(fd, NS_GET_USERNS)
        for rfd in (pfd, ofd):
            if rfd is not None:
                os.close(rfd)
        return (tuple(parent) if parent else None, tuple(owner) if owner else None)  # type: ignore[return-value]
    finally:
        os.close(fd)


def complete(
    procfd: int, namespaces: list[Namespace], types: tuple[str, ...], passes: list[SlicePass],
    node_ns: dict[str, NamespaceId], dev: int,
) -> tuple[list[Namespace], int, tuple[tuple[int, int, int], ...]]:
    """The scan's rows with their parents, owners, mounts and fds, plus the namespaces no process is in.

    ``passes``: what ``slice_pass`` read for each slice, in pid order.  A path pinned in several mount
    namespaces is shown once, with the node's if it is one of them, else the one of lowest inode.  Rows whose
    relations no slice read (held by a mount or an fd only), and ghosts (an owner or parent nothing
    else holds), are opened here.  Returns the rows, the number of processes whose fd tables could
    not be read, and the namespace fds whose type nothing told, as (inode, pid, fd): an fd whose
    inode is a row's is that row's (inodes are unique on nsfs).
    """
    node_mnt = node_ns["mnt"].ino if "mnt" in node_ns else None
    fds: dict[tuple[str, int], list[tuple[int, int]]] = {}
    mounts: dict[tuple[str, int], dict[str, tuple[int, str]]] = {}
    read: dict[tuple[str, int], Any] = {}
    fds_denied = 0
    # The node's mount namespace first, then the others by inode (as one slice reads them), whatever
    # slice read them: the same path in two mount namespaces is shown as however many workers read it.
    met = [(where[0] != node_mnt, where[0], key, path, where) for _fds, _denied, part_mounts, _read, _untyped in passes
           for key, paths in part_mounts.items() for path, where in paths.items()]
    met.sort(key=lambda m: m[:2])  # stable: each mount namespace's paths stay in mountinfo's order
    for _other, _mnt, key, path, where in met:
        mounts.setdefault(key, {}).setdefault(path, where)
    untyped: list[tuple[int, int, int]] = []
    for part_fds, denied, _mounts, part_read, part_untyped in passes:
        fds_denied += denied
        untyped.extend(part_untyped)
        for key, held in part_fds.items():
            fds.setdefault(key, []).extend(held)
        for key, answer in part_read.items():
            if answer is not None or key not in read:
                read[key] = answer
    rows = {(n.type, n.id.ino): n for n in namespaces}
    for key in list(mounts) + list(fds):
        if key not in rows:
            t, ino = key
            nsid = NamespaceId(dev, ino)
            rows[key] = Namespace(nsid, t, 0, 0, None, node_ns.get(t) == nsid)
    # (dev, inode) pairs become NamespaceIds once each: the parents and owners are a few namespaces
    # named thousands of times.
    ids: dict[tuple[int, int], NamespaceId] = {n.id: n.id for n in rows.values()}

    def interned(pair: tuple[int, int] | None) -> NamespaceId | None:
        if pair is None:
            return None
        got = ids.get(pair)
        if got is None:
            got = ids[pair] = NamespaceId(*pair)
        return got

    tree = _Hierarchy({n.id for n in rows.values()}, types)
    settle = tree.settle
    for key, n in rows.items():
        answer = read.get(key)
        if answer is not None and settle(n, interned(answer[0]), interned(answer[1])):
            continue
        fd = _open_row(procfd, n, fds.get(key, ()), mounts.get(key, {}))
        if fd is not None:
            try:
                tree.visit(fd, n.type, n.id)
            finally:
                os.close(fd)
    for t, ghost in tree.ghosts:
        rows.setdefault((t, ghost.ino), Namespace(ghost, t, 0, 0, None, node_ns.get(t) == ghost))
    unknown = _type_by_inode(untyped, rows, fds)
    out = []
    none: tuple[None, None] = (None, None)
    relation = tree.relations.get
    for key, n in rows.items():
        at, held = mounts.get(key), fds.get(key)
        # The row with its parent, owner, mounts and fds (_TAIL, the fields after the first eight), made in C as
        # Namespace._make does: thousands of rows.
        out.append(tuple.__new__(Namespace, (*n[:8], *relation(n.id, none),
                                             tuple(NsMount(procfs.clean(path), mnt) for path, (mnt, _entry) in at.items()) if at else (),
                                             tuple(NsFd(*f) for f in held) if held else ())))
    return out, fds_denied, unknown


_TAIL = ("parent", "owner", "mounts", "fds")
assert Namespace._fields[8:] == _TAIL, "complete() builds rows by position"


def _type_by_inode(untyped: list[tuple[int, int, int]], rows: dict[tuple[str, int], Namespace],
                   fds: dict[tuple[str, int], list[tuple[int, int]]]) -> tuple[tuple[int, int, int], ...]:
    """Give the fds of unknown type to the rows of their inodes (into ``fds``, in pid order); the rest back."""
    if not untyped:
        return ()
    by_inode = {key[1]: key for key in rows}
    left = []
    for ino, pid, num in sorted(untyped, key=lambda u: (u[1], u[2])):
        key = by_inode.get(ino)
        if key is None:
            left.append((ino, pid, num))
        else:
            fds[key] = sorted([*fds.get(key, []), (pid, num)], key=lambda h: h[0])
    return tuple(left)


def _open_row(procfd: int, n: Namespace, fds: Iterable[tuple[int, int]], mounts: dict[str, tuple[int, str]]) -> int | None:
    """An fd on a row's namespace: through its lowest process, else an fd holding it, else a bind mount."""
    if n.nprocs:
        fd = _open_ns(procfd, f"{n.pid}/ns/{n.type}", n.id)
        if fd is not None:
            return fd
    for pid, num in fds:
        fd = _open_ns(procfd, f"{pid}/fd/{num}", n.id)
        if fd is None:  # another user's fd table: through a duplicate of the fd (_FdInfo)
            fd = _dup_ns_fd(procfd, pid, num, n.id)
        if fd is not None:
            return fd
    for path, (_mnt, entry) in mounts.items():
        fd = _open_ns(procfd, f"{entry}/root{path}", n.id, stat_first=True)
        if fd is not None:
            return fd
    return None
