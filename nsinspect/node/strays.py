"""Stray processes: processes of a member's cgroup that left some of the member's namespaces.

A process that called unshare(2) or setns(2) stays in its container's cgroup while it leaves (some of) the
container's namespaces.  For each running member:

 1. its cgroup: the main process's line in ``/proc/<pid>/cgroup`` for one hierarchy (a v2 node: the unified
    one; v1: pids, else memory, cpu, name=systemd);
 2. the cgroup's processes, those of the cgroups below it included: ``cgroup.procs`` under the node's cgroupfs
    (``<host root>/sys/fs/cgroup``) when this process sees pids and cgroup paths as that procfs does (the
    same pid namespace; a path inside our cgroup namespace).  Otherwise (the agent's pod: pid and cgroup
    namespaces of its own, the node's /proc mounted) every process whose ``/proc/<pid>/cgroup`` puts it in
    that cgroup or below it: one read per process of the node, done once for all the members asked about;
 3. each process's namespaces against the main process's.  One that differs is described, then kept only if
    it is still the same process (pid and start time), not a zombie, and still in the cgroup after its links
    were read.

A member whose cgroup is the root, or holds another member's cgroup, is not looked at (every process there
would look stray); the pod gets a note saying so.  Only thread-group leaders are seen (``/proc/<pid>/ns``).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence

from nsinspect.errors import AccessDenied, NoSuchProcess
from nsinspect.model import Member, Stray
from nsinspect.node.procfs import ProcFS

# The v1 hierarchy a member's cgroup is read from: the first the process has (runc puts a container in
# the same path in every hierarchy).  A v2 node has one, the unified hierarchy ("").
V1_HIERARCHIES = ("pids", "memory", "cpu", "name=systemd")


def hierarchy(cgroups: dict[str, str], cgroup2: bool) -> str | None:
    """The key of the hierarchy to use among a process's cgroups (``ProcFS.cgroups``)."""
    if not cgroup2:
        for want in V1_HIERARCHIES:
            for key in cgroups:
                if want in key.split(","):
                    return key
    return "" if "" in cgroups else None


def within(path: str, top: str) -> bool:
    """Is cgroup ``path`` the cgroup ``top`` or below it?"""
    return path == top or path.startswith(top.rstrip("/") + "/")


def cgroupfs_root(host_root: str | None) -> str:
    """Where the node's cgroupfs is mounted (``--host-root`` prefixes it)."""
    return os.path.join(host_root or "/", "sys/fs/cgroup")


class Finder:
    """Finds the strays of the members of one or more pods, from one look at the node."""

    def __init__(self, proc: ProcFS, cgroupfs: str, cgroup2: bool, direct: bool | None = None):
        """``direct``: read cgroup.procs (True) or every /proc/<pid>/cgroup (False); None: cgroup.procs where it can."""
        self.proc = proc
        self.cgroupfs = cgroupfs
        self.cgroup2 = cgroup2
        self._direct = direct
        self._by_path: dict[str, tuple[list[str], dict[str, list[int]]]] = {}  # hierarchy -> (sorted paths, path -> pids)
        self._dirs: dict[str, str | None] = {}

    def direct(self) -> bool:
        """May cgroup.procs be read here: are its pids the procfs's pids?"""
        if self._direct is None:
            self._direct = self.proc.shows_us() and os.path.isdir(self.cgroupfs)
        return self._direct

    def pod(self, members: Sequence[Member]) -> tuple[list[Member], list[str]]:
        """The members with their strays, and a note for each running member not looked at."""
        where: dict[str, tuple[str, str]] = {}  # member id -> (hierarchy, cgroup path)
        notes = []
        for m in members:
            if not m.running or m.pid is None:
                continue
            try:
                cgroups = self.proc.cgroups(m.pid)
            except (NoSuchProcess, AccessDenied):
                continue  # it exited: the next look shows the member stopped
            key = hierarchy(cgroups, self.cgroup2)
            if key is None:
                notes.append(f"stray processes not looked for in {m.name}: its process is in no cgroup hierarchy nsinspect reads")
                continue
            where[m.id] = (key, cgroups[key])
        out = []
        for m in members:
            if m.id not in where:
                out.append(m)
                continue
            key, path = where[m.id]
            others = [o.name for o in members if o.id != m.id and o.id in where and within(where[o.id][1], path)]
            if path == "/":
                notes.append(f"stray processes not looked for in {m.name}: it is in the root cgroup, "
                             "with every process that has no cgroup of its own")
            elif others:
                notes.append(f"stray processes not looked for in {m.name}: its cgroup {path} holds "
                             f"{', '.join(others)} too")
            else:
                out.append(m._replace(strays=self._strays(m, key, path, {x.pid for x in members if x.pid})))
                continue
            out.append(m)
        return out, notes

    def _strays(self, m: Member, key: str, path: str, mains: set[int | None]) -> tuple[Stray, ...]:
        found = []
        for pid in sorted(self._pids(key, path) - mains):
            try:
                links = self.proc.ns_links(pid)
                if not any(ns is not None and m.namespaces.get(t) not in (None, ns) for t, ns in links.items()):
                    continue
                # It differs: hold its identity (pid and start time) around a second read of the links and its cgroup.
                process = self.proc.process(pid)
                links = self.proc.ns_links(pid)
                still = within(self.proc.cgroups(pid).get(key, ""), path)
                if not still or not self.proc.runs(process.id):  # gone, or a zombie (its links are gone)
                    continue
            except (NoSuchProcess, AccessDenied):
                continue
            differs = {t: ns for t, ns in links.items() if ns is not None and m.namespaces.get(t) not in (None, ns)}
            if differs:
                found.append(Stray(process, differs))
        return tuple(found)

    def _pids(self, key: str, path: str) -> set[int]:
        """The processes of the cgroup ``path`` of hierarchy ``key`` and of the cgroups below it."""
        if self.direct() and not path.startswith("/.."):
            top = self._dir(key)
            if top is not None:
                pids = _cgroup_procs(os.path.join(top, path.lstrip("/")))
                if pids is not None:
                    return pids
        scanned = self._by_path.get(key)
        if scanned is None:
            by_path = self._scan(key)
            scanned = self._by_path[key] = (sorted(by_path), by_path)
        paths, by_path = scanned
        out = set(by_path.get(path, ()))
        below = path.rstrip("/") + "/"
        for p in paths[bisect.bisect_left(paths, below):]:  # the cgroups below it sort right after that prefix
            if not p.startswith(below):
                break
            out.update(by_path[p])
        return out

    def _dir(self, key: str) -> str | None:
        """Where hierarchy ``key`` is mounted under the cgroupfs root."""
        if key not in self._dirs:
            self._dirs[key] = self._find_dir(key)
        return self._dirs[key]

    def _find_dir(self, key: str) -> str | None:
        if key == "":
            unified = os.path.join(self.cgroupfs, "unified")  # a hybrid node's v2 tree
            return self.cgroupfs if self.cgroup2 or not os.path.isdir(unified) else unified
        for name in (key, *key.split(",")):
            d = os.path.join(self.cgroupfs, name.removeprefix("name="))
            if os.path.isdir(d):
                return d
        return None

    def _scan(self, key: str) -> dict[str, list[int]]:
        """Every process of the node by its cgroup in hierarchy ``key``: one read of /proc/<pid>/cgroup each."""
        out: dict[str, list[int]] = {}
        for pid in self.proc.pids():
            try:
                path = self.proc.cgroups(pid).get(key)
            except (NoSuchProcess, AccessDenied):
                continue
            if path is not None:
                out.setdefault(path, []).append(pid)
        return out


def _cgroup_procs(top: str) -> set[int] | None:
    """The pids in ``cgroup.procs`` of ``top`` and of every cgroup below it; None when ``top`` cannot be read."""
    pids: set[int] = set()
    todo = [top]
    while todo:
        d = todo.pop()
        try:
            with open(os.path.join(d, "cgroup.procs"), "rb") as f:
                pids.update(int(x) for x in f.read().split())
            with os.scandir(d) as entries:
                todo.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
        except (OSError, ValueError):
            if d == top:
                return None
            continue  # a cgroup below removed while we looked
    pids.discard(0)  # v2 lists processes of other pid namespaces as 0
    return pids
