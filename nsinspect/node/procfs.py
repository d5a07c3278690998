"""Reading procfs: the only module that touches /proc.

Every path is relative to one procfs root (``/proc``, ``/host/proc`` or a test fixture),
opened once as a directory fd; every read is an ``*at()`` call on it.  OS errors are
mapped to meaning in one place (``_classify``): ENOENT/ESRCH -> the process is gone,
EACCES/EPERM -> access denied.  Everything above speaks in those terms.

The full scan is the hot path of ``nsinspect node``; see ``ProcFS.scan`` for how it
stays within 2x of a C readlinkat loop.
"""

from __future__ import annotations

import bisect
import errno
import os
import pwd
import threading
from collections import Counter
from typing import Any

from nsinspect.errors import AccessDenied, InvalidArgument, NoSuchProcess
from nsinspect.limits import INODE_MAX, PID_MAX_LIMIT, decimal
from nsinspect.model import NS_TYPES, IdRange, NamespaceId, Process, ProcessId, ScanStats
from nsinspect.node.fanout import fanout, slices


def _speedup() -> Any:
    """The scan's hot loop in C (nsinspect/node/_scan.c), built at install time when a compiler is
    there; without it (or with NSINSPECT_PURE_PYTHON=1) the same loop runs in Python."""
    if os.environ.get("NSINSPECT_PURE_PYTHON"):
        return None
    try:
        from nsinspect.node import _scan
    except ImportError:
        return None
    return _scan


_c: Any = _speedup()

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# /proc/<pid>/ns is opened only to readlinkat() its entries by name: O_PATH asks for no read permission
# on the directory (mode 0511, owned by the process's uid), so uid 0 with only CAP_SYS_PTRACE -- the
# agent's powers -- reads another user's links: the lookup needs search permission (granted to all)
# and each link the ptrace read check, which CAP_SYS_PTRACE passes.
_NS_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_CLOEXEC

# Below this many processes one worker is faster than forking a second one.
PARALLEL_MIN_PIDS = 1500
MAX_WORKERS = 4

_GONE = (errno.ENOENT, errno.ESRCH)
_DENIED = (errno.EACCES, errno.EPERM)
# Never from a procfs: a tree where <pid>/ns is a file, or a link loop (a fixture, or --proc at the wrong place).
_MALFORMED = (errno.ENOTDIR, errno.ELOOP)


_CAP_SYS_PTRACE = 19


def can_trace() -> bool:
    """Do we hold root's power to read every process's namespaces: uid 0 with CAP_SYS_PTRACE effective?

    (The ptrace read check on each ns link is what guards them; the DaemonSet grants exactly this.)
    Read each time: a process that changes its uid loses its capabilities."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/status", "rb") as f:
            caps = next((int(line.split()[1], 16) for line in f if line.startswith(b"CapEff:")), 0)
    except (OSError, ValueError, IndexError):
        return False
    return bool(caps >> _CAP_SYS_PTRACE & 1)


def _classify(exc: OSError, pid: int) -> Exception:
    """Map an OS error met while reading /proc/<pid>/... to what it means."""
    if exc.errno in _GONE:
        return NoSuchProcess(pid)
    if exc.errno in _MALFORMED:
        return NoSuchProcess(pid, f"/proc/{pid} is malformed ({exc.strerror}); is the procfs root a procfs?")
    if exc.errno in _DENIED:
        if can_trace():
            return AccessDenied(
                pid,
                f"the kernel refuses to show the namespaces of pid {pid} even with CAP_SYS_PTRACE (a sandbox, a security "
                "module or a user namespace guards it); inspect another process of the same container",
            )
        if os.geteuid() == 0:
            return AccessDenied(
                pid,
                f"reading the namespaces of pid {pid} takes CAP_SYS_PTRACE, which this process lacks; "
                "add it (the DaemonSet does) or run nsinspect with root's full powers",
            )
        return AccessDenied(pid)
    return exc


def parse_ns_link(target: str, nstype: str) -> int | None:
    """``net:[4026531993]`` -> 4026531993; anything else -> None."""
    prefix = nstype + ":["
    if target.startswith(prefix) and target.endswith("]"):
        return decimal(target[len(prefix) : -1], INODE_MAX)
    return None


def _inode(target: str, nstype: str) -> int:
    """``parse_ns_link`` for the fast loops: ValueError (read the process again, link by link) instead of None."""
    ino = parse_ns_link(target, nstype)
    if ino is None:
        raise ValueError(target)
    return ino


def _number(field: bytes, maximum: int) -> int:
    """A number field of a stat line; ValueError when it is not one the kernel writes."""
    value = decimal(field, maximum)
    if value is None:
        raise ValueError(field)
    return value


def parse_stat(data: bytes) -> tuple[str, str, int, int]:
    """Parse /proc/<pid>/stat -> (comm, state, ppid, start time in clock ticks).

    The command name may hold spaces and parentheses: it ends at the *last* ')'.
    """
    lpar = data.index(b"(")
    rpar = data.rindex(b")")
    comm = os.fsdecode(data[lpar + 1 : rpar])
    fields = data[rpar + 2 :].split()
    # fields[0] is field 3 (state); ppid is field 4; starttime is field 22.
    return comm, fields[0].decode("ascii", "replace"), _number(fields[1], PID_MAX_LIMIT), _number(fields[19], INODE_MAX)


def _pid_name(name: str) -> int | None:
    """A procfs root's entry as a pid (``"42"`` -> 42); None for ``self``, ``sys``, ``0``, ``007``, ``99999999``."""
    return decimal(name, PID_MAX_LIMIT) or None


def looks_like_procfs(procfd: int) -> bool:
    """Is this directory a procfs (or a test's tree shaped like one)?  It has ``self``, or a pid directory with a
    ``stat``.  A structural test, not statfs's PROC_SUPER_MAGIC: the tests point ``--proc`` at such trees."""
    try:
        os.stat("self", dir_fd=procfd, follow_symlinks=False)
        return True
    except OSError:
        pass
    with os.scandir(procfd) as entries:
        for entry in entries:
            if _pid_name(entry.name):
                try:
                    os.stat(f"{entry.name}/stat", dir_fd=procfd)
                    return True
                except OSError:
                    continue
    return False


_user_cache: dict[int, str] = {}


_ID_MAX = (1 << 32) - 1


def parse_id_map(data: bytes) -> tuple[IdRange, ...]:
    """``/proc/<pid>/uid_map`` or ``gid_map``: one "inside outside length" line per range."""
    out = []
    for line in data.split(b"\n"):
        fields = line.split()
        if len(fields) == 3:
            inside, outside, length = (decimal(f, _ID_MAX) for f in fields)
            if inside is not None and outside is not None and length:  # ids are u32: a length may be 2^32 - 1
                out.append(IdRange(inside, outside, length))
    return tuple(out)


def parse_cgroup(data: bytes) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` -> {controllers: path}: ``pids``, ``cpu,cpuacct``, ``name=systemd`` (v1), and ""
    for the unified hierarchy's ``0::/path`` (v2).  Paths are relative to the reader's cgroup namespace."""
    out = {}
    for line in os.fsdecode(data).split("\n"):
        _hid, sep, rest = line.partition(":")
        controllers, sep2, path = rest.partition(":")
        if sep and sep2:
            out[controllers] = path
    return out


def user_name(uid: int | None) -> str:
    if uid is None:
        return ""
    name = _user_cache.get(uid)
    if name is None:
        try:
            name = clean(pwd.getpwuid(uid).pw_name)
        except KeyError:
            name = str(uid)
        _user_cache[uid] = name
    return name


# What a worker learns about one process: (start time, ppid, uid, comm, cmdline).
_Desc = tuple[int, int, "int | None", str, str]

# A slice's scan, as plain containers so marshal can carry it between processes: per type
# {inode: [nprocs, lowest pid]}, processes, vanished, denied pids, the lowest processes' descriptions,
# and the lowest pids found gone before they could be described (no other process of their namespace
# in the slice: another slice's may take their place when merged).
_Chunk = tuple[list[dict[int, list[int]]], int, int, list[int], dict[int, "_Desc | None"], list[int]]


def _read_at(procfd: int, path: str, limit: int = 65536) -> bytes:
    fd = os.open(path, _FILE_FLAGS, dir_fd=procfd)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _describe(procfd: int, pid: int) -> _Desc:
    """Identity and description of one process.  Raises NoSuchProcess or AccessDenied."""
    try:
        data = _read_at(procfd, f"{pid}/stat")
    except OSError as e:
        raise _classify(e, pid) from None
    try:
        comm, _state, ppid, start = parse_stat(data)
    except (ValueError, IndexError):
        raise NoSuchProcess(pid, f"cannot parse /proc/{pid}/stat; is the procfs root a procfs?") from None
    try:
        uid: int | None = os.stat(str(pid), dir_fd=procfd).st_uid
    except OSError as e:
        err = _classify(e, pid)
        if isinstance(err, NoSuchProcess):
            raise err from None
        uid = None
    try:
        raw = _read_at(procfd, f"{pid}/cmdline", 4096)
    except OSError as e:
        err = _classify(e, pid)
        if isinstance(err, NoSuchProcess):
            raise err from None
        raw = b""
    raw = raw.rstrip(b"\0")
    cmdline = " ".join(os.fsdecode(a) for a in raw.split(b"\0")) if raw else ""
    return start, ppid, uid, comm, cmdline


def clean(s: str) -> str:
    """Bytes that are not UTF-8 (kept by os.fsdecode as lone surrogates) written as \\xNN, so the text can
    cross the agent's wire (protobuf strings are UTF-8), is valid in JSON, and reads the same on every front door."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _to_process(pid: int, d: _Desc) -> Process:
    start, ppid, uid, comm, cmdline = d
    return Process(ProcessId(pid, start), ppid, uid, user_name(uid), clean(comm), clean(cmdline))


def _read_links_slow(nsfd: int, types: tuple[str, ...]) -> list[int | None]:
    """Read each link on its own, telling missing links (zombies) from a vanished process.

    Raises FileNotFoundError if the process is gone, PermissionError if it is not ours to read.
    """
    out: list[int | None] = []
    missing = 0
    for t in types:
        try:
            target = os.readlink(t, dir_fd=nsfd)
        except OSError as e:
            if e.errno in _GONE:
                missing += 1
                out.append(None)
                continue
            if e.errno == errno.EINVAL:  # not a link: a malformed procfs tree
                out.append(None)
                continue
            raise
        out.append(parse_ns_link(target, t))
    if missing:
        # Links are gone: a zombie (it keeps its pid and user links), or a process reaped
        # while we read it, whose partial answer must not count.  Only a reaped one has no pid link.
        try:
            os.readlink("pid", dir_fd=nsfd)
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "process vanished") from None
        except OSError as e:
            if e.errno != errno.EINVAL:  # EINVAL: not a link, a malformed tree; the links read stand
                raise
    return out


def _scan_pids(procfd: int, pids: list[int], types: tuple[str, ...], agg: list[dict[int, list[int]]]) -> tuple[int, list[int]]:
    """Read the ns links of these pids into ``agg``: per type, {inode: [nprocs, lowest pid]}.

    Returns (vanished, denied pids).  Each pid on its own, with every error told apart: for the pids
    the bulk readers (``_links_py``, ``_scan.links``) hand back.
    """
    vanished = 0
    denied: list[int] = []
    readlink, open_, close = os.readlink, os.open, os.close
    for pid in pids:
        try:
            nsfd = open_(f"{pid}/ns", _NS_DIR_FLAGS, dir_fd=procfd)
        except OSError as e:
            if e.errno in _GONE or e.errno in _MALFORMED:  # malformed: not a process to count
                vanished += 1
                continue
            if e.errno in _DENIED:
                denied.append(pid)
                continue
            raise
        try:
            try:
                inos: list[int | None] = [_inode(readlink(t, dir_fd=nsfd), t) for t in types]
            except (OSError, ValueError):
                inos = _read_links_slow(nsfd, types)
        except OSError as e:
            if e.errno in _GONE:
                vanished += 1
                continue
            if e.errno in _DENIED:
                denied.append(pid)
                continue
            raise
        finally:
            close(nsfd)
        for seen, ino in zip(agg, inos, strict=True):
            if ino is None:
                continue
            entry = seen.get(ino)
            if entry is None:
                seen[ino] = [1, pid]
            else:
                entry[0] += 1
                if pid < entry[1]:
                    entry[1] = pid
    return vanished, denied


def _links_py(procfd: int, pids: list[int], types: tuple[str, ...]) -> tuple[list[dict[int, list[int]]], int, list[int], list[int]]:
    """``_scan.links`` in Python: the common case per pid, aggregated per type at the end.

    Returns (per type {inode: [nprocs, lowest pid]}, vanished, denied pids, pids to read again
    with ``_scan_pids``: any link that did not read as ``type:[inode]``).
    """
    vanished = 0
    denied: list[int] = []
    retry: list[int] = []
    rows: list[list[int]] = []
    read: list[int] = []
    readlink, open_, close = os.readlink, os.open, os.close
    for pid in pids:
        try:
            nsfd = open_(f"{pid}/ns", _NS_DIR_FLAGS, dir_fd=procfd)
        except OSError as e:
            if e.errno in _GONE:
                vanished += 1
            elif e.errno in _DENIED:
                denied.append(pid)
            else:
                retry.append(pid)
            continue
        try:
            rows.append([_inode(readlink(t, dir_fd=nsfd), t) for t in types])
            read.append(pid)
        except (OSError, ValueError):
            retry.append(pid)
        finally:
            close(nsfd)
    # Per type: counts by Counter, and the lowest pid of each inode by a dict built from the
    # highest pid down (the last write, the lowest pid, wins): both loops run in C.
    order = sorted(range(len(read)), key=read.__getitem__, reverse=True)
    down = [read[i] for i in order]
    agg: list[dict[int, list[int]]] = []
    for k in range(len(types)):
        column = [rows[i][k] for i in order]
        lowest = dict(zip(column, down, strict=True))
        agg.append({ino: [n, lowest[ino]] for ino, n in Counter(column).items()})
    return agg, vanished, denied, retry


def scan_slice(procfd: int, pids: list[int], types: tuple[str, ...], described: tuple[str, ...] | None = None) -> _Chunk:
    """One slice of the scan (``ProcFS.scan``, or a worker of ``discover.node_view``): its aggregate,
    and the lowest process of each of its namespaces of the ``described`` types (default: all) described.
    Plain containers only (marshal)."""
    # The common case in C, or in Python; what it hands back (errors, odd links) is read pid by pid.
    agg, vanished, denied, retry = (_c.links if _c is not None else _links_py)(procfd, pids, types)
    if retry:
        more_vanished, more_denied = _scan_pids(procfd, retry, types, agg)
        vanished += more_vanished
        denied += more_denied
    descs: dict[int, _Desc | None] = {}
    gone: set[int] = set()
    for nstype, seen in zip(types, agg, strict=True):
        if described is not None and nstype not in described:
            continue
        for ino, entry in seen.items():
            low = entry[1]
            if low not in descs:
                descs[low] = _describe_any(procfd, low)
            if descs[low] is None and not _next_lowest(procfd, pids, nstype, ino, entry, descs):
                gone.add(low)
    return agg, len(pids), vanished, denied, descs, sorted(gone)


def _describe_any(procfd: int, pid: int) -> _Desc | None:
    """A process described in C, else in Python; None when it is gone or hidden."""
    d = _c.describe(procfd, pid) if _c is not None else None
    if d is None:
        try:
            d = _describe(procfd, pid)
        except (NoSuchProcess, AccessDenied):
            pass
    return d


def _next_lowest(procfd: int, pids: list[int], nstype: str, ino: int, entry: list[int], descs: dict[int, _Desc | None]) -> bool:
    """The lowest process of a namespace exited between reading its links and describing it: show the
    next one of ``pids`` still in that namespace (lsns, which reads each process whole, would show it),
    if any.  Only for a process that is gone, not one that is hidden from us.  False when it is gone
    and none of ``pids`` took its place."""
    try:
        os.stat(str(entry[1]), dir_fd=procfd)
        return True  # still there (hidden, or a zombie): nothing better to find
    except FileNotFoundError:
        pass
    except OSError:
        return True
    want = f"{nstype}:[{ino}]"
    for pid in pids[bisect.bisect_right(pids, entry[1]):]:
        try:
            if os.readlink(f"{pid}/ns/{nstype}", dir_fd=procfd) != want:
                continue
        except OSError:
            continue
        if pid not in descs:
            descs[pid] = _describe_any(procfd, pid)
        if descs[pid] is not None:
            entry[1] = pid
            return True
    return False


def _merge(into: _Chunk, other: _Chunk) -> _Chunk:
    """Two slices' scans as one: counts added, the lowest pid kept (one found gone only if no slice has
    another: as the scan of both slices in one would have found)."""
    agg, processes, vanished, denied, descs, gone_list = into
    descs.update(other[4])
    gone = {*gone_list, *other[5]}
    for seen, theirs in zip(agg, other[0], strict=True):
        for ino, (count, low) in theirs.items():
            entry = seen.get(ino)
            if entry is None:
                seen[ino] = [count, low]
            else:
                entry[0] += count
                if (low in gone, low) < (entry[1] in gone, entry[1]):
                    entry[1] = low
    return agg, processes + other[1], vanished + other[2], denied + other[3], descs, sorted(gone)


def _exited(pidfd: int) -> bool:
    """Has the process of this pidfd exited (zombie or reaped)?  A pidfd turns readable then."""
    import select

    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))


def _workers_for(npids: int) -> int:
    """How many slices to cut the pids into: one per CPU for big scans, while this process has a single thread
    (fork() is only safe then: the agent has many, and reads one slice, keeping what it read: node.warm)."""
    if npids < PARALLEL_MIN_PIDS or threading.active_count() > 1:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS, npids // (PARALLEL_MIN_PIDS // 2)))


class ProcFS:
    """A procfs tree, rooted at ``root``."""

    def __init__(self, root: str = "/proc", watch: bool = False):
        """``watch``: keep a pidfd of each process found alive, so that checking it again is one
        poll() while it runs (for a long-lived caller that checks the same processes over and
        over: the agent's ``CachedEngine``)."""
        self.root = root
        self._fd: int | None = None
        self._nsfs_dev: int | None = None
        self.watch = watch
        self._pidfds: dict[ProcessId, int] = {}  # read without the lock: a dict lookup is atomic
        self._by_fd: dict[int, ProcessId] = {}
        self._epoll: Any = None  # every kept pidfd is registered here: one epoll_wait(0) tells every exit
        self._pidfds_max = 0  # set when pidfds can be used here (then > 0)
        self._pidfd_lock = threading.Lock()  # held to change the three above

    # -- plumbing -------------------------------------------------------------------------
    @property
    def fd(self) -> int:
        if self._fd is None:
            try:
                fd = os.open(self.root, _DIR_FLAGS)
            except OSError as e:
                raise InvalidArgument(
                    f"cannot open the procfs root {self.root!r} ({e.strerror}); "
                    "pass --proc with the path of a mounted procfs such as /proc or /host/proc"
                ) from None
            if not looks_like_procfs(fd):
                os.close(fd)
                raise InvalidArgument(f"{self.root!r} is not a procfs (no 'self', no process directories); "
                                      "pass --proc with the path of a mounted procfs such as /proc or /host/proc")
            self._fd = fd
        return self._fd

    def close(self) -> None:
        with self._pidfd_lock:
            for fd in self._pidfds.values():
                os.close(fd)
            self._pidfds.clear()
            self._by_fd.clear()
            if self._epoll is not None:
                self._epoll.close()
                self._epoll = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ProcFS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- single-process reads -------------------------------------------------------------
    def pids(self) -> list[int]:
        """Every process (thread-group leader) listed in the procfs root, ascending.

        Listed through a directory fd of its own: ``os.listdir(self.fd)`` reads through a dup of the shared fd,
        whose offset two threads (the agent's GetNode and GetPod) would share, and each get part of the list."""
        if _c is not None:
            return list(_c.pids(self.fd))  # the same rule, in C (the agent lists the node on every warm call)
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.fd)
        try:
            names = os.listdir(fd)
        finally:
            os.close(fd)
        # _pid_name's rule, inlined (thousands of names): ASCII digits, no leading zero, within PID_MAX_LIMIT.
        width = len(str(PID_MAX_LIMIT))
        out = [int(n) for n in names if n.isdigit() and n.isascii() and n[0] != "0" and len(n) <= width]
        out = [pid for pid in out if pid <= PID_MAX_LIMIT]
        out.sort()
        return out

    def ns_links(self, pid: int, types: tuple[str, ...] = NS_TYPES) -> dict[str, NamespaceId | None]:
        """The namespaces of one process; None for a link that is gone (a zombie's).

        Raises NoSuchProcess or AccessDenied.
        """
        dev = self.nsfs_dev()
        try:
            nsfd = os.open(f"{pid}/ns", _NS_DIR_FLAGS, dir_fd=self.fd)
        except OSError as e:
            raise _classify(e, pid) from None
        try:
            inos = _read_links_slow(nsfd, types)
        except OSError as e:
            raise _classify(e, pid) from None
        finally:
            os.close(nsfd)
        return {t: (NamespaceId(dev, ino) if ino is not None else None) for t, ino in zip(types, inos, strict=True)}

    def id_maps(self, pid: int) -> tuple[tuple[IdRange, ...], tuple[IdRange, ...]]:
        """The uid and gid maps of the process's user namespace.  Raises NoSuchProcess or AccessDenied."""
        try:
            return parse_id_map(_read_at(self.fd, f"{pid}/uid_map")), parse_id_map(_read_at(self.fd, f"{pid}/gid_map"))
        except OSError as e:
            raise _classify(e, pid) from None

    def cgroups(self, pid: int) -> dict[str, str]:
        """The cgroups of one process (``parse_cgroup``).  Raises NoSuchProcess or AccessDenied."""
        try:
            return parse_cgroup(_read_at(self.fd, f"{pid}/cgroup"))
        except OSError as e:
            raise _classify(e, pid) from None

    def shows_us(self) -> bool:
        """Does this procfs show this process as itself (``self`` is our pid): is it our pid namespace's?"""
        try:
            return os.readlink("self", dir_fd=self.fd) == str(os.getpid())
        except OSError:
            return False
    def read(self, pid: int, name: str, limit: int = 1 << 20) -> bytes:
        """A file of /proc/<pid> (``net/dev``, ``mountinfo``, ``cgroup``, ``status``), at most ``limit`` bytes.

        Raises NoSuchProcess or AccessDenied."""
        try:
            fd = os.open(f"{pid}/{name}", _FILE_FLAGS, dir_fd=self.fd)
        except OSError as e:
            raise _classify(e, pid) from None
        try:
            chunks, size = [], 0
            while size < limit:
                chunk = os.read(fd, min(65536, limit - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            return b"".join(chunks)
        except OSError as e:
            raise _classify(e, pid) from None
        finally:
            os.close(fd)

    def open_ns(self, pid: int, nstype: str) -> int:
        """An fd of the process's namespace of this type (it pins the namespace, whatever the process does
        next).  The caller closes it.  Raises NoSuchProcess or AccessDenied."""
        try:
            return os.open(f"{pid}/ns/{nstype}", _FILE_FLAGS, dir_fd=self.fd)
        except OSError as e:
            raise _classify(e, pid) from None

    def members_of(self, nstype: str, inos: set[int], first: int) -> dict[int, tuple[int, list[int]]]:
        """How many processes are in each of these namespaces of one type, and the ``first`` lowest pids of
        each: {inode: (nprocs, [pid, ...])}.

        The counts come from the scan's bulk reader (C when built); the pids from a second pass of one
        readlink per process that starts at the lowest pid of the namespaces and stops once each has its
        ``first`` (a container's processes are few and its first pids close together)."""
        import bisect

        pids = self.pids()
        types = (nstype,)
        agg, _vanished, _denied, retry = (_c.links if _c is not None else _links_py)(self.fd, pids, types)
        if retry:
            _scan_pids(self.fd, retry, types, agg)
        counts = {ino: agg[0].get(ino, [0, 0]) for ino in inos}
        need = {ino: min(n, first) for ino, (n, _low) in counts.items() if n}
        found: dict[int, list[int]] = {ino: [] for ino in inos}
        start = min((low for n, low in counts.values() if n), default=None)
        if start is not None:
            readlink = os.readlink
            left = sum(need.values())
            for pid in pids[bisect.bisect_left(pids, start):]:
                if left <= 0:
                    break
                try:
                    ino = _inode(readlink(f"{pid}/ns/{nstype}", dir_fd=self.fd), nstype)
                except (OSError, ValueError):
                    continue  # gone, or a zombie's missing link: not a process it can be shown
                got = found.get(ino)
                if got is not None and len(got) < need.get(ino, 0):
                    got.append(pid)
                    left -= 1
        return {ino: (counts[ino][0], found[ino]) for ino in inos}

    def start_time(self, pid: int) -> int:
        try:
            data = _read_at(self.fd, f"{pid}/stat")
        except OSError as e:
            raise _classify(e, pid) from None
        try:
            return parse_stat(data)[3]
        except (ValueError, IndexError):
            raise NoSuchProcess(pid) from None

    def process(self, pid: int) -> Process:
        """Identity and description of one process.  Raises NoSuchProcess or AccessDenied."""
        return _to_process(pid, _describe(self.fd, pid))

    def is_alive(self, proc_id: ProcessId, exits_noted: bool = False) -> bool:
        """Is this exact process (pid *and* start time) still there?

        One read of /proc/<pid>/stat.  With ``watch``, a pidfd opened before a check that found
        the process is kept, registered in one epoll set: while the process runs, the answer is a
        dict lookup after one ``epoll_wait(0)`` that reports every kept process that exited since
        (no lock, no stat line for the kernel to format).  Once a process exits (a zombie is still
        "there", as in the stat check), its pidfd is dropped and the stat line answers again.
        ``exits_noted``: the caller called ``note_exits()`` just before (to check many processes
        with one system call).
        """
        if self.watch and proc_id in self._pidfds:
            if not exits_noted:
                self.note_exits()
            if proc_id in self._pidfds:
                return True
        fd = self._pidfd(proc_id.pid) if self.watch else None
        try:
            alive = self.start_time(proc_id.pid) == proc_id.start_time
        except (NoSuchProcess, AccessDenied):
            alive = False
        if fd is not None:
            # Opened before the check: if the check found the process, the pidfd is that process.
            if alive and not _exited(fd):
                fd = self._keep(proc_id, fd)
            if fd is not None:
                os.close(fd)
        return alive

    def _keep(self, proc_id: ProcessId, fd: int) -> int | None:
        """Keep ``fd`` as the pidfd of ``proc_id``; returns it when it was not kept (full, or already one)."""
        import select

        with self._pidfd_lock:
            if proc_id in self._pidfds:
                return fd
            if len(self._pidfds) >= self._pidfds_max:
                self.note_exits(locked=True)  # room left by processes that exited (pods deleted)
                if len(self._pidfds) >= self._pidfds_max:
                    return fd
            if self._epoll is None:
                self._epoll = select.epoll()
            self._epoll.register(fd, select.EPOLLIN)
            self._pidfds[proc_id], self._by_fd[fd] = fd, proc_id
        return None

    def note_exits(self, locked: bool = False) -> None:
        """Close the kept pidfds of processes that exited: one epoll_wait(0) for all of them.

        The set is level-triggered: an exit is reported until its pidfd is dropped, so any check
        that follows this call sees every exit that happened before it."""
        epoll = self._epoll
        if epoll is None:
            return
        try:
            # Room for every kept pidfd (Python's default is 1023 events: more exits would wait a call).
            events = epoll.poll(0, max(self._pidfds_max, 1))
        except (OSError, ValueError):  # closed meanwhile (close())
            return
        if not events:
            return
        if not locked:
            with self._pidfd_lock:
                self._drop(events)
        else:
            self._drop(events)

    def _drop(self, events: list[tuple[int, int]]) -> None:
        for fd, _mask in events:
            # Another thread may have dropped it already (and the number may be a new pidfd's:
            # then that one is dropped too, and its process is checked by its stat line again).
            proc_id = self._by_fd.pop(fd, None)
            if proc_id is not None:
                del self._pidfds[proc_id]
                self._epoll.unregister(fd)
                os.close(fd)

    def _pidfd(self, pid: int) -> int | None:
        """A pidfd of ``pid`` (our pid namespace must be the procfs root's), or None."""
        if not self._pidfds_max:
            try:
                ours = os.readlink("self", dir_fd=self.fd) == str(os.getpid()) and hasattr(os, "pidfd_open")
            except OSError:
                ours = False
            if not ours:
                self.watch = False  # a fixture tree, or the procfs of another pid namespace
                return None
            import resource

            # Room for every member of a busy node's pods, well within the open-files limit.
            self._pidfds_max = max(16, min(1024, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 4))
        try:
            return os.pidfd_open(pid)
        except OSError:
            return None

    def runs(self, proc_id: ProcessId) -> bool:
        """Is this exact process still there and not a zombie (whose namespace links are gone)?"""
        try:
            _comm, state, _ppid, start = parse_stat(_read_at(self.fd, f"{proc_id.pid}/stat"))
        except (OSError, ValueError, IndexError):
            return False
        return start == proc_id.start_time and state not in ("Z", "X")

    def nsfs_dev(self) -> int:
        """The device of the nsfs filesystem (one superblock holds every namespace).

        Read once, from the first process whose ns link we may stat; 0 in fixture trees
        whose links point nowhere.
        """
        if self._nsfs_dev is None:
            self._nsfs_dev = 0
            for pid in (os.getpid(), 1, 2):
                try:
                    self._nsfs_dev = os.stat(f"{pid}/ns/net", dir_fd=self.fd).st_dev
                    break
                except OSError:
                    continue
        return self._nsfs_dev

    # -- the full scan --------------------------------------------------------------------
    def scan(
        self, types: tuple[str, ...] = NS_TYPES, pids: list[int] | None = None, parallel: bool = True
    ) -> tuple[dict[str, dict[int, tuple[int, int, Process | None]]], ScanStats]:
        """Read the ns links of every process: per type, {inode: (nprocs, lowest pid, its process)}.

        The work is a readlinkat() per link from a per-pid ``ns`` directory fd (short path
        walks); aggregation, and reading the lowest-pid process of each namespace, are done
        where the links are read.  With many processes the pids are cut into contiguous
        slices, one per forked worker (a namespace's processes are mostly neighbours, so few
        processes are described twice); workers send their results back with marshal, and a
        worker that fails is redone here.  The process with the lowest pid is described once
        (the None of a vanished one stands: lsns shows such a row too).
        """
        if pids is None:
            pids = self.pids()
        workers = _workers_for(len(pids)) if parallel else 1
        fd = self.fd
        return finish_scan(fanout(lambda share: scan_slice(fd, share, types), slices(pids, workers)), types)


def finish_scan(chunks: list[_Chunk], types: tuple[str, ...], made: dict[tuple[int, _Desc], Process] | None = None,
                ) -> tuple[dict[str, dict[int, tuple[int, int, Process | None]]], ScanStats]:
    """The slices' aggregates, in pid order, merged: per type {inode: (nprocs, lowest pid, its process)}.  ``made``:
    the processes an earlier call made, by (pid, description), reused where they describe the same (the agent's
    warm node); on return it holds this call's only."""
    result = chunks[0]
    for theirs in chunks[1:]:
        result = _merge(result, theirs)
    agg, processes, vanished, denied, descs, _gone = result
    procs: dict[int, Process | None] = {}
    earlier = dict(made or {})
    out: dict[str, dict[int, tuple[int, int, Process | None]]] = {}
    for t, seen in zip(types, agg, strict=True):
        rows = out[t] = {}
        for ino, (count, low) in seen.items():
            if low not in procs:
                d = descs.get(low)
                procs[low] = None if d is None else earlier.get((low, d)) or _to_process(low, d)
            rows[ino] = (count, low, procs[low])
    if made is not None:
        made.clear()
        for pid, p in procs.items():
            d = descs.get(pid)
            if p is not None and d is not None:
                made[pid, d] = p
    return out, ScanStats(processes, vanished, tuple(sorted(denied)), can_trace())
