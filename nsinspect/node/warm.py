"""The agent's warm node view: each call reads again what changed since the last one, and keeps the rest.

What a process shows in a node scan (its ns links, its fds on namespaces, its description) changes only by
its own doing: ``setns``, ``unshare``, ``open``, ``close``, ``exec``, ``prctl`` are system calls a thread makes
for itself.  A thread that makes one runs, and the kernel charges the time it ran to its process's CPU clock
(``clock_gettime`` of ``CLOCK_PROCESS_CPUTIME_ID`` of a pid: every thread's run time, those gone included;
any process may read it, no privilege asked).  So a process whose CPU clock shows the same nanoseconds as
when it was read last has done nothing, and what was read of it stands.  Each call:

1. lists the pids, and polls a pidfd kept for every process (one ``epoll_wait``): one that exited (a
   zombie, or a pid lent to someone new) is read again, with its start time; a zombie once, then its stat
   line is checked on each call (nothing else of it changes until it is reaped);
2. reads the CPU clock of every other process; one whose clock moved is read again (links, fds), the
   others are kept;
3. reads again the fd tables of the processes that held an fd on a namespace last time, and when a
   process's fds on namespaces changed, finds the processes that share its fd table (``clone(CLONE_FILES)``
   without ``CLONE_THREAD``: an idle one's table changes with the busy one's) with ``kcmp(KCMP_FILES)``;
4. describes a namespace's lowest process again when it was read again or its parent exited (PPID);
5. asks a namespace's parent and owner again unless a process that kept still is in it (then it is the
   same namespace as when they were asked: inode numbers are reused only once a namespace is gone);
6. lists the mount tables that changed (``hidden.MountTables``), and completes the rows as a cold scan does.

The answer is what a cold scan reads, fresher: a cold scan's first process is read a whole scan before its
last.  One window is left: the kernel charges a thread that is on a CPU at each scheduler tick or when it
stops running, so a process running right now that changed itself within the last tick (1-10 ms) may be
shown as it was at that tick.  On ``nohz_full`` CPUs a lone running thread may go a second without a tick:
there every process is read again on every call.  Not thread-safe: one call at a time.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import select
import time
from typing import Any

from nsinspect import gcpause
from nsinspect.model import NS_TYPES, NodeView
from nsinspect.node import hidden, procfs
from nsinspect.node.discover import finish_view, node_namespaces
from nsinspect.node.procfs import ProcFS, _Desc

_KCMP = {"x86_64": 312, "aarch64": 272, "ppc64le": 354, "s390x": 343, "riscv64": 272}.get(platform.machine())
_KCMP_FILES = 2


def cpu_clock(pid: int) -> int:
    """The CPU time (ns) of every thread of a process, those gone included: ``clock_gettime`` of the clock
    id the kernel makes of a pid (``(~pid << 3) | CPUCLOCK_SCHED``).  Raises OSError when it is gone."""
    return time.clock_gettime_ns((~pid << 3) | 2)


def moved(pids: list[int], clocks: list[int]) -> list[tuple[int, int]]:
    """The processes whose CPU clock is not the one given: [(index, clock now, or -1 when gone)] (in C: ``_scan.moved``)."""
    c = procfs._c
    if c is not None:
        return c.moved(pids, clocks)  # type: ignore[no-any-return]
    out = []
    for k, (pid, was) in enumerate(zip(pids, clocks, strict=True)):
        try:
            now = cpu_clock(pid)
        except OSError:
            now = -1
        if now != was or now < 0:
            out.append((k, now))
    return out


def ticks_everywhere() -> bool:
    """Does every CPU keep its scheduler tick while it runs a task (no ``nohz_full`` CPUs)?"""
    try:
        with open("/sys/devices/system/cpu/nohz_full", "rb") as f:
            cpus = f.read().strip()
    except OSError:
        return True  # no such file: a kernel without NO_HZ_FULL
    return cpus in (b"", b"(null)")


def _more_files() -> int:
    """Raise the soft limit of open files to the hard one (no privilege needed) and return it: a pidfd is kept
    for every process of the node, and a mountinfo fd for every mount namespace."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (OSError, ValueError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class _Kcmp:
    """kcmp(2) on fd tables: do two processes share one?  None when the kernel or the sandbox will not say."""

    def __init__(self) -> None:
        self._call: Any = None
        if _KCMP is not None:
            libc = ctypes.CDLL(None, use_errno=True)
            self._call = libc.syscall
            self._call.restype = ctypes.c_long

    def same_files(self, a: int, b: int) -> bool | None:
        if self._call is None:
            return None
        r = self._call(_KCMP, ctypes.c_long(a), ctypes.c_long(b), _KCMP_FILES, 0, 0)
        if r >= 0:
            return bool(r == 0)
        if ctypes.get_errno() in (errno.ENOSYS, errno.EPERM):  # no CONFIG_KCMP, or a seccomp filter: it never will
            self._call = None
        return None


class _Record:
    """What was read of one process (its CPU clock then, if it can be trusted: ``WarmNode._clocks``)."""

    __slots__ = ("start", "pidfd", "links", "denied", "fds", "fds_denied", "untyped", "desc", "ppid", "fresh", "zombie")

    def __init__(self, start: int, pidfd: int):
        self.start, self.pidfd = start, pidfd
        self.links: tuple[int | None, ...] | None = None  # per NS_TYPES; None: vanished or denied
        self.denied = False  # its links may not be read
        self.fds: list[tuple[str, int, int]] = []  # (type, inode, fd) of its fds on namespaces, as read
        self.fds_denied = False
        self.untyped: list[tuple[int, int, int]] = []
        self.desc: _Desc | None = None
        self.ppid = 0
        self.fresh = True  # read in this call
        self.zombie = False  # read once it had exited: nothing of it changes until it is reaped (its pidfd is closed)


class WarmNode:
    """The node view kept between calls, read again where it changed (see the module's docstring)."""

    def __init__(self, proc: ProcFS):
        soft = _more_files()
        self.proc = proc
        self.tables = hidden.MountTables()  # half the open-files limit, less 64
        self._pidfds_max = max(0, soft // 2 - 64 - 64)  # the other half, less what gRPC and requests need
        self._recs: dict[int, _Record] = {}
        # Which records are which, kept as they change (so a call walks the processes that ran, not every record):
        # trusted CPU clocks {pid: clock}; records read again on every call (no clock to trust, not zombies);
        # zombies; records holding fds on namespaces; records read in this call.
        self._clocks: dict[int, int] = {}
        self._unsure: set[int] = set()
        self._zombies: set[int] = set()
        self._holding: set[int] = set()
        self._fresh: set[int] = set()
        self._by_fd: dict[int, int] = {}  # pidfd -> pid
        self._epoll = select.epoll()
        self._relations: dict[tuple[str, int], Any] = {}  # (type, inode) -> (parent, owner) as read
        self._made: dict[tuple[int, Any], Any] = {}  # the lowest processes of the last view, by (pid, description)
        # Per NS_TYPES index, kept as the records change: {inode: pids in it} and {inode: [nprocs, lowest pid]}.
        self._members: list[dict[int, set[int]]] = [{} for _ in NS_TYPES]
        self._agg: list[dict[int, list[int]]] = [{} for _ in NS_TYPES]
        self._kcmp = _Kcmp()
        self._trust_clocks = ticks_everywhere() and proc.shows_us() and hasattr(os, "pidfd_open")
        self.reread = self.kept = 0  # processes read again / kept, in the last call
        # The last answer built: (types, pids, view, mounts); whether the last call answered with it again.
        self._last: tuple[tuple[str, ...], list[int], NodeView, Any] | None = None
        self.same_answer = False

    # -- records ---------------------------------------------------------------------------------
    def _set_links(self, pid: int, rec: _Record, links: tuple[int | None, ...] | None) -> None:
        """The record's links, and the per-namespace counts and lowest pids with them."""
        old = rec.links
        if old == links:
            return
        rec.links = links
        for i, ino in enumerate(old or ()):
            if ino is not None:
                members = self._members[i][ino]
                members.discard(pid)
                if not members:
                    del self._members[i][ino], self._agg[i][ino]
                    continue
                kept = self._agg[i][ino]
                kept[0] -= 1
                if kept[1] == pid:
                    kept[1] = min(members)
        for i, ino in enumerate(links or ()):
            if ino is not None:
                members = self._members[i].setdefault(ino, set())
                members.add(pid)
                entry = self._agg[i].get(ino)
                if entry is None:
                    self._agg[i][ino] = [1, pid]
                else:
                    entry[0] += 1
                    entry[1] = min(entry[1], pid)

    def _drop(self, pid: int) -> None:
        rec = self._recs.pop(pid)
        self._set_links(pid, rec, None)
        self._clocks.pop(pid, None)
        for kind in (self._unsure, self._zombies, self._holding, self._fresh):
            kind.discard(pid)
        if rec.pidfd >= 0:
            self._by_fd.pop(rec.pidfd, None)
            self._epoll.unregister(rec.pidfd)
            os.close(rec.pidfd)

    def _exited(self) -> set[int]:
        return {self._by_fd[fd] for fd, _ev in self._epoll.poll(0, max(len(self._by_fd), 1)) if fd in self._by_fd}

    def _new(self, pid: int) -> _Record | None:
        """A record of the process now at ``pid``, identity read (None: gone); its pidfd opened first."""
        fd = self.proc.fd
        pidfd = -1
        if self._trust_clocks and len(self._by_fd) < self._pidfds_max:
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                return None
            except OSError:  # out of fds: a process without a pidfd is read again on every call
                pidfd = -1
        try:
            _comm, _state, ppid, start = procfs.parse_stat(procfs._read_at(fd, f"{pid}/stat"))
        except (OSError, ValueError, IndexError):
            if pidfd >= 0:
                os.close(pidfd)
            return None
        rec = _Record(start, pidfd)
        rec.ppid = ppid
        self._unsure.add(pid)
        if pidfd >= 0:
            self._epoll.register(pidfd, select.EPOLLIN)
            self._by_fd[pidfd] = pid
        self._recs[pid] = rec
        return rec

    def _set_clock(self, pid: int, rec: _Record, clock: int | None) -> None:
        """The clock to compare with next call (None: read it again then)."""
        if clock is None:
            self._clocks.pop(pid, None)
            if not rec.zombie:
                self._unsure.add(pid)
        else:
            self._clocks[pid] = clock
            self._unsure.discard(pid)

    def _same_zombie(self, pid: int, rec: _Record) -> bool:
        """Is ``pid`` still this record's process, a zombie (exited, not reaped: its links and fds are gone for good)?"""
        try:
            _comm, state, ppid, start = procfs.parse_stat(procfs._read_at(self.proc.fd, f"{pid}/stat"))
        except (OSError, ValueError, IndexError):
            return False
        return state == "Z" and start == rec.start and ppid == rec.ppid

    def _read_links(self, pid: int, rec: _Record) -> bool:
        """Its links into the record; False when it vanished."""
        fd = self.proc.fd
        c = procfs._c
        agg, vanished, denied, retry = (c.links if c is not None else procfs._links_py)(fd, [pid], NS_TYPES)
        if retry:
            more_vanished, more_denied = procfs._scan_pids(fd, retry, NS_TYPES, agg)
            vanished, denied = vanished + more_vanished, denied + more_denied
        if vanished:
            return False
        rec.denied = bool(denied)
        self._set_links(pid, rec, None if denied else tuple(next(iter(seen), None) for seen in agg))
        return True

    def _read_fds(self, pid: int, rec: _Record) -> bool:
        """Its fds on namespaces into the record; True when they are not what it held before.  In our own table, the
        pidfds and mountinfo fds we keep are not read (thousands, none on a namespace, and none closed or reused while
        we look: only this call closes them)."""
        before = (rec.fds, rec.fds_denied, rec.untyped)
        skip = set(self._by_fd) | self.tables.fds() if pid == os.getpid() else ()
        found, denied, untyped = hidden.fd_holders(self.proc.fd, [pid], NS_TYPES, skip)
        rec.fds = sorted(((t, ino, num) for (t, ino), held in found.items() for _pid, num in held), key=lambda f: f[2])
        rec.fds_denied, rec.untyped = bool(denied), untyped
        if rec.fds:
            self._holding.add(pid)
        else:
            self._holding.discard(pid)
        return (rec.fds, rec.fds_denied, rec.untyped) != before

    # -- the view --------------------------------------------------------------------------------
    def view(self, types: tuple[str, ...] = NS_TYPES) -> NodeView:
        """Every namespace of the given types on this node: ``discover.node_view``'s answer (the cyclic garbage
        collector paused: ``nsinspect.gcpause``)."""
        with gcpause.paused():
            return self._view(types)

    def _view(self, types: tuple[str, ...]) -> NodeView:
        proc, fd = self.proc, self.proc.fd
        pids = proc.pids()
        vanished, parents_changed, changed = self._read_changed(pids)
        scanned = types if "mnt" in types else (*types, "mnt")
        unwitnessed, denied = self._unwitnessed(scanned)
        self.same_answer = not changed and self._same_answer(types, pids, unwitnessed)
        if self.same_answer and self._last is not None:
            return self._last[2]
        agg = self._aggregate(scanned)
        descs, gone = self._descriptions(pids, scanned, types, agg, parents_changed)
        seen, stats = procfs.finish_scan([(agg, len(pids), vanished, denied, descs, gone)], scanned, self._made)
        node_ns = node_namespaces(proc)
        dev = proc.nsfs_dev()
        node_mnt = node_ns["mnt"].ino if "mnt" in node_ns else 0
        # Each mount namespace read through its lowest process (the node's first), as the cold scan's slices merge.
        readers = hidden.mount_readers(((ino, low) for ino, (_n, low, _p) in seen["mnt"].items()), node_mnt)
        starts = {p.id.pid: p.id.start_time for _n, _low, p in seen["mnt"].values() if p is not None}
        mounts = hidden.bind_mounts(fd, readers, types, self.tables, starts, self._ran())
        relations = self._ask_relations(scanned, types, agg, unwitnessed, dev)
        fds, fds_denied, untyped = self._fd_pass(pids, types)
        view = finish_view(fd, seen, stats, types, [(fds, fds_denied, mounts, relations, untyped)], node_ns, dev)
        self._last = (types, pids, view, mounts)
        return view

    def _same_answer(self, types: tuple[str, ...], pids: list[int], unwitnessed: list[set[int]]) -> bool:
        """Is the last answer this call's, when no process changed what it shows (``_read_changed``)?  It is if the same
        pids are there, every namespace still has a process that kept still in it (so each is the namespace it was:
        its parent, owner and ghosts stand), the lowest processes that ran describe as before, and no mount table
        changed.  Fds on namespaces are held by kept processes only (``_read_changed`` says changed otherwise)."""
        last = self._last
        if last is None or last[0] != types or last[1] != pids or any(unwitnessed):
            return False
        fd, recs = self.proc.fd, self._recs
        shown = [(i, self._agg[i]) for i, t in enumerate(NS_TYPES) if t in types]
        for pid in sorted(self._fresh):  # the lowest processes that ran
            links = recs[pid].links
            if links is not None and any((ino := links[i]) is not None and seen[ino][1] == pid for i, seen in shown) \
                    and procfs._describe_any(fd, pid) != recs[pid].desc:
                return False
        view = last[2]
        if node_namespaces(self.proc) != view.node_namespaces or procfs.can_trace() != view.stats.as_root:
            return False
        node_mnt = view.node_namespaces["mnt"].ino if "mnt" in view.node_namespaces else 0
        mnt = self._agg[NS_TYPES.index("mnt")]
        readers = hidden.mount_readers(((ino, low) for ino, (_n, low) in mnt.items()), node_mnt)
        starts = {low: recs[low].start for _n, low in mnt.values()}
        return bool(hidden.bind_mounts(fd, readers, types, self.tables, starts, self._ran()) == last[3])

    def _ran(self) -> set[int]:
        """The processes read again this call: a reader among them may have a new root (its table is listed again)."""
        return set(self._fresh)

    def _read_changed(self, pids: list[int]) -> tuple[int, set[int], bool]:
        """Steps 1-3: read again the processes that ran, exited or are new.  Returns how many vanished meanwhile,
        the pids whose children may have a new parent (they exited), and whether any process came, went, or shows
        other links or fds than it did (a process read again that holds an fd on a namespace counts as changed: the
        namespace may be another one under the same inode)."""
        recs = self._recs
        listed = set(pids)
        dropped = sorted(recs.keys() - listed)
        changed = bool(dropped)
        for pid in dropped:
            self._drop(pid)
        for pid in self._fresh:  # the last call's
            recs[pid].fresh = False
        self._fresh = set()
        # Exits, then clocks, then exits again (a pid lent to a new process after the first look).  Read again: new
        # pids, records without a clock to trust, zombies no longer the same, processes whose clock moved, exits.
        exited = self._exited()
        clocks: dict[int, int | None] = dict.fromkeys(listed - recs.keys())
        clocks.update(dict.fromkeys(self._unsure))
        for pid in self._zombies:
            if not self._same_zombie(pid, recs[pid]):
                clocks[pid] = None
        known, was = list(self._clocks), list(self._clocks.values())
        for k, clock in moved(known, was):
            clocks[known[k]] = clock if clock >= 0 else None
        exited |= self._exited()
        for pid in exited:
            clocks[pid] = None
        ours = os.getpid()
        if ours in listed:
            clocks.setdefault(ours, None)  # our own fd table holds what this call opens
        vanished = 0
        # A process's PPID changes without it running when its parent exits (it is reparented).
        parents_changed: set[int] = {*exited, *dropped}
        fds_changed: list[int] = []
        for pid in sorted(clocks):
            old = self._recs.get(pid)
            if pid in exited or old is None or old.pidfd < 0:
                if old is not None:
                    self._drop(pid)
                rec = self._new(pid)
                try:
                    now: int | None = cpu_clock(pid) if rec is not None else None
                except OSError:
                    now = None
            else:
                rec, now = old, clocks[pid]
            links = rec.links if rec is not None and rec is old else None
            if rec is None or not self._read_links(pid, rec):
                if rec is not None:
                    self._drop(pid)
                vanished += 1
                parents_changed.add(pid)
                changed = True
                continue
            rec.fresh = True  # its description is read again where it is shown (_descriptions, _same_answer)
            self._fresh.add(pid)
            fds_moved = self._read_fds(pid, rec)
            if fds_moved and pid != ours:
                fds_changed.append(pid)
            changed = changed or fds_moved or rec is not old or rec.links != links or bool(rec.fds or rec.untyped)
            # Trusted next time only if it was this process, alive, once everything was read (checked below).
            self._set_clock(pid, rec, now if (now is not None and rec.pidfd >= 0 and not rec.denied and not rec.fds_denied) else None)
        for pid in self._exited():  # exited while we read it: read again, unless it was a zombie already then
            rec = self._recs[pid]
            if self._same_zombie(pid, rec):
                self._by_fd.pop(rec.pidfd)
                self._epoll.unregister(rec.pidfd)
                os.close(rec.pidfd)
                rec.pidfd, rec.zombie = -1, True
                self._zombies.add(pid)
                self._unsure.discard(pid)
            self._set_clock(pid, rec, None)
        # fd tables that held namespaces, and the idle sharers of a table whose namespaces changed.
        for pid in sorted(self._holding - self._fresh):
            changed = self._read_fds(pid, self._recs[pid]) or changed
        for pid in fds_changed:
            changed = self._sharers(pid) or changed
        self.reread = len(self._fresh)
        self.kept = len(self._recs) - self.reread
        return vanished, parents_changed, changed

    def _unwitnessed(self, scanned: tuple[str, ...]) -> tuple[list[set[int]], list[int]]:
        """Per type, the inodes no kept process is in (every process in it was read again this call), and the pids
        whose links may not be read."""
        recs = self._recs
        unwitnessed: list[set[int]] = []
        fresh = [links for pid in self._fresh if (links := recs[pid].links) is not None]
        for t in scanned:
            i = NS_TYPES.index(t)
            members = self._members[i]
            unwitnessed.append({ino for links in fresh if (ino := links[i]) is not None
                                and all(recs[p].fresh for p in members[ino])})
        denied = sorted(pid for pid in (*self._unsure, *self._zombies) if recs[pid].links is None)
        return unwitnessed, denied

    def _aggregate(self, scanned: tuple[str, ...]) -> list[dict[int, list[int]]]:
        """Per type {inode: [nprocs, lowest pid]} (``procfs.scan_slice``'s): a copy of the one kept, for the view to
        build on."""
        return [{ino: [n, low] for ino, (n, low) in self._agg[NS_TYPES.index(t)].items()} for t in scanned]

    def _fd_pass(self, pids: list[int], types: tuple[str, ...]) -> tuple[dict[tuple[str, int], list[tuple[int, int]]], int,
                                                                          list[tuple[int, int, int]]]:
        """``hidden.fd_holders``'s answer, from the records: fds on namespaces, tables not read, fds of unknown type."""
        fds: dict[tuple[str, int], list[tuple[int, int]]] = {}
        untyped: list[tuple[int, int, int]] = []
        denied = 0
        wanted = frozenset(types)
        for pid in pids:
            rec = self._recs.get(pid)
            if rec is None:
                continue
            denied += rec.fds_denied
            untyped.extend(rec.untyped)
            for t, ino, num in rec.fds:
                if t in wanted:
                    fds.setdefault((t, ino), []).append((pid, num))
        return fds, denied, untyped

    def _sharers(self, pid: int) -> bool:
        """Read again the fd tables of the idle processes that share ``pid``'s (all of them, if kcmp cannot say);
        True when one of them changed."""
        changed = False
        for other, rec in self._recs.items():
            if rec.fresh or other == pid:
                continue
            same = self._kcmp.same_files(pid, other)
            if same is None or same:
                changed = self._read_fds(other, rec) or changed
        return changed

    def _descriptions(self, pids: list[int], scanned: tuple[str, ...], types: tuple[str, ...], agg: list[dict[int, list[int]]],
                      parents_changed: set[int]) -> tuple[dict[int, _Desc | None], list[int]]:
        """The lowest process of each namespace of the asked types described (kept where it and its parent kept
        still), and the lowest pids found gone (as ``procfs.scan_slice``)."""
        fd = self.proc.fd
        descs: dict[int, _Desc | None] = {}
        gone: set[int] = set()
        for nstype, seen in zip(scanned, agg, strict=True):
            if nstype not in types:
                continue
            for ino, entry in seen.items():
                low = entry[1]
                if low not in descs:
                    rec = self._recs.get(low)
                    if rec is not None and rec.desc is not None and not rec.fresh and rec.desc[1] not in parents_changed \
                            and (rec.desc[1] in self._recs or rec.desc[1] == 0):
                        descs[low] = rec.desc
                    else:
                        descs[low] = procfs._describe_any(fd, low)
                        if rec is not None:
                            rec.desc = descs[low]
                if descs[low] is None and not procfs._next_lowest(fd, pids, nstype, ino, entry, descs):
                    gone.add(low)
        return descs, sorted(gone)

    def _ask_relations(self, scanned: tuple[str, ...], types: tuple[str, ...], agg: list[dict[int, list[int]]],
                       unwitnessed: list[set[int]], dev: int) -> dict[tuple[str, int], Any]:
        """Each process-held namespace's (parent, owner): kept where a process that kept still is in it, else read
        (``hidden.slice_pass``'s question, through its lowest process)."""
        answers: dict[tuple[str, int], Any] = {}
        keys: list[tuple[str, int]] = []
        asked: list[tuple[str, int, int, bool]] = []
        for k, t in enumerate(scanned):
            if t not in types:
                continue
            hierarchical = t in hidden._HIERARCHICAL
            for ino, (_n, low) in agg[k].items():
                key = (t, ino)
                kept = self._relations.get(key)
                if kept is not None and ino not in unwitnessed[k]:
                    answers[key] = kept
                else:
                    keys.append(key)
                    asked.append((f"{low}/ns/{t}", dev, ino, hierarchical))
        answers.update(zip(keys, hidden.relations(self.proc.fd, asked), strict=True))
        self._relations = {key: a for key, a in answers.items() if a is not None}
        return answers

    def close(self) -> None:
        for pid in list(self._recs):
            self._drop(pid)
        self._epoll.close()
        self.tables.close()
