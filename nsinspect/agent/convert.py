"""The model to and from the agent's protobuf messages (``proto/nsinspect/agent/v1/agent.proto``).

The one module that knows both: the model stays free of protobuf, the renderers take the
model, and an answer that went through the agent renders byte for byte as a local one.
Every ``to_*`` has its ``from_*``; ``tests/test_convert.py`` round-trips real views.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from itertools import repeat
from typing import Any

from nsinspect import gcpause
from nsinspect.agent.v1 import agent_pb2 as pb
from nsinspect.errors import Unavailable
from nsinspect.model import (
    NS_TYPES,
    ContainerRef,
    IdRange,
    Member,
    MemberDetails,
    Namespace,
    NamespaceId,
    NodeView,
    NsFd,
    NsMount,
    PodInfo,
    PodRef,
    PodsView,
    PodView,
    Process,
    ProcessId,
    ProcessView,
    ScanStats,
    Stray,
    Verdict,
)
from nsinspect.sharing import explained, with_evidence

# -- small records --------------------------------------------------------------------------------


def _ns_map(target: Any, namespaces: Mapping[str, NamespaceId | None]) -> None:
    for t, ns in namespaces.items():
        if ns is not None:
            entry = target[t]
            entry.dev, entry.ino = ns.dev, ns.ino


def _ns_dict(source: Any) -> dict[str, NamespaceId]:
    return {t: NamespaceId(v.dev, v.ino) for t, v in sorted(source.items())}


def _process(target: Any, p: Process) -> None:
    target.id.pid, target.id.start_time = p.id.pid, p.id.start_time
    target.ppid, target.user, target.comm, target.cmdline = p.ppid, p.user, p.comm, p.cmdline
    if p.uid is not None:
        target.uid = p.uid


def _from_process(m: Any) -> Process:
    return Process(ProcessId(m.id.pid, m.id.start_time), m.ppid, m.uid if m.HasField("uid") else None, m.user, m.comm, m.cmdline)


def _stats(target: Any, s: ScanStats) -> None:
    target.processes, target.vanished, target.as_root = s.processes, s.vanished, s.as_root
    target.denied.extend(s.denied)
    target.fds_denied = s.fds_denied
    for ino, pid, fd in s.fds_untyped:
        target.fds_untyped.add(ino=ino, pid=pid, fd=fd)


def _from_stats(m: Any) -> ScanStats:
    return ScanStats(m.processes, m.vanished, tuple(m.denied), m.as_root, m.fds_denied,
                     tuple((u.ino, u.pid, u.fd) for u in m.fds_untyped))


def _namespace(target: Any, n: Namespace) -> None:
    target.id.dev, target.id.ino = n.id.dev, n.id.ino
    target.type, target.nprocs, target.pid, target.node = n.type, n.nprocs, n.pid, n.node
    if n.process is not None:
        _process(target.process, n.process)
    for r in n.pods:
        target.pods.add(namespace=r.namespace, name=r.name, uid=r.uid)
    for c in n.containers:
        target.containers.add(name=c.name, id=c.id)
    if n.parent is not None:
        target.parent.dev, target.parent.ino = n.parent
    if n.owner is not None:
        target.owner.dev, target.owner.ino = n.owner
    for mount in n.mounts:
        target.mounts.add(path=mount.path, mnt_ns=mount.mnt_ns)
    for f in n.fds:
        target.fds.add(pid=f.pid, fd=f.fd)


def _from_namespace(m: Any, ids: dict[tuple[int, int], NamespaceId] | None = None,
                    procs: dict[tuple[int, int], Process] | None = None) -> Namespace:
    """A row from its message; ``ids`` and ``procs``: the NamespaceIds and processes already made for this view (the
    same parents, owners and lowest processes are named by many rows).  Each field is read once: an attribute of a
    message costs a lookup in C, and a node has thousands of rows."""
    ids = {} if ids is None else ids
    procs = {} if procs is None else procs
    process = None
    if m.HasField("process"):
        p = m.process
        pid = p.id
        key = (pid.pid, pid.start_time)
        process = procs.get(key)
        if process is None:
            process = procs[key] = _from_process(p)
    pods, containers, mounts, fds = m.pods, m.containers, m.mounts, m.fds
    return Namespace(
        _interned(ids, m.id),
        m.type,
        m.nprocs,
        m.pid,
        process,
        m.node,
        tuple(PodRef(r.namespace, r.name, r.uid) for r in pods) if pods else (),
        tuple(ContainerRef(c.name, c.id) for c in containers) if containers else (),
        _interned(ids, m.parent) if m.HasField("parent") else None,
        _interned(ids, m.owner) if m.HasField("owner") else None,
        tuple(NsMount(x.path, x.mnt_ns) for x in mounts) if mounts else (),
        tuple(NsFd(x.pid, x.fd) for x in fds) if fds else (),
    )


def _interned(ids: dict[tuple[int, int], NamespaceId], m: Any) -> NamespaceId:
    key = (m.dev, m.ino)
    got = ids.get(key)
    if got is None:
        got = ids[key] = NamespaceId(*key)
    return got


def _ranges(target: Any, ranges: tuple[IdRange, ...]) -> None:
    for r in ranges:
        target.add(inside=r.inside, outside=r.outside, length=r.length)


def _from_ranges(source: Any) -> tuple[IdRange, ...]:
    return tuple(IdRange(r.inside, r.outside, r.length) for r in source)


# -- a member's evidence: the model's NamedTuples and the *Evidence messages have the same field names --


def _evidence(target: Any, value: Any) -> None:
    """Fill a message from an evidence NamedTuple (nested records, tuples of records or scalars, None: unset)."""
    for name in value._fields:
        v = getattr(value, name)
        if v is None:
            continue
        if hasattr(v, "_fields"):
            _evidence(getattr(target, name), v)
        elif isinstance(v, tuple):
            field = getattr(target, name)
            for item in v:
                if hasattr(item, "_fields"):
                    _evidence(field.add(), item)
                else:
                    field.append(item)
        else:
            setattr(target, name, v)


_HINTS: dict[type, dict[str, Any]] = {}


def _from_evidence(cls: Any, m: Any) -> Any:
    """The evidence NamedTuple ``cls`` from its message (the inverse of ``_evidence``)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    kw: dict[str, Any] = {}
    for name in cls._fields:
        tp = hints[name]
        args = typing.get_args(tp)
        if typing.get_origin(tp) is tuple:
            item = args[0]
            kw[name] = tuple(_from_evidence(item, x) if hasattr(item, "_fields") else x for x in getattr(m, name))
        elif type(None) in args:  # X | None: unset is None
            inner = next(a for a in args if a is not type(None))
            if m.HasField(name):
                v = getattr(m, name)
                kw[name] = _from_evidence(inner, v) if hasattr(inner, "_fields") else v
            else:
                kw[name] = None
        elif hasattr(tp, "_fields"):
            kw[name] = _from_evidence(tp, getattr(m, name))
        else:
            kw[name] = getattr(m, name)
    return cls(**kw)


# -- views --------------------------------------------------------------------------------------


def to_node(v: NodeView, columns: bool = False) -> pb.NodeView:
    """The message of a node view: its rows as ``namespaces``, or with ``columns`` as one ``NodeColumns``."""
    out = pb.NodeView(types=v.types, node=v.node, runtime=v.runtime, runtime_error=v.runtime_error)
    _ns_map(out.node_namespaces, v.node_namespaces)
    _stats(out.stats, v.stats)
    if columns:
        out.columns.CopyFrom(to_columns(v.namespaces))
        return out
    add = out.namespaces.add
    for n in v.namespaces:
        _namespace(add(), n)
    return out


def to_columns(rows: list[Namespace]) -> pb.NodeColumns:
    """Rows as columns (``NodeColumns``).  A row is a tuple, so ``zip(*rows)`` is every column at once, made in C;
    a column is then set in one call."""
    out = pb.NodeColumns()
    if not rows:
        return out
    ids, types, nprocs, pid, process, node, pods, containers, parents, owners, mounts, fds = zip(*rows, strict=True)
    names = list(dict.fromkeys(types))
    index = {t: i for i, t in enumerate(names)}
    procs: dict[Process, int] = {}
    add = procs.setdefault
    dev, ino = zip(*ids, strict=True)
    out.dev.extend(dev)
    out.ino.extend(ino)
    out.type.extend(map(index.__getitem__, types))
    out.type_names.extend(names)
    out.nprocs.extend(nprocs)
    out.pid.extend(pid)
    out.node.extend(node)
    out.process.extend([-1 if p is None else add(p, len(procs)) for p in process])
    if procs:
        proc_ids, ppid, uid, user, comm, cmdline = zip(*procs, strict=True)
        proc_pid, start = zip(*proc_ids, strict=True)
        out.proc_pid.extend(proc_pid)
        out.proc_start_time.extend(start)
        out.proc_ppid.extend(ppid)
        out.proc_uid.extend([0 if u is None else u for u in uid])
        out.proc_uid_unknown.extend([k for k, u in enumerate(uid) if u is None])
        out.proc_user.extend(user)
        out.proc_comm.extend(comm)
        out.proc_cmdline.extend(cmdline)
    for column, (at, dev_of, ino_of) in ((parents, (out.parent_row, out.parent_dev, out.parent_ino)),
                                         (owners, (out.owner_row, out.owner_dev, out.owner_ino))):
        some = [(row, ns) for row, ns in enumerate(column) if ns is not None]
        at.extend([row for row, _ns in some])
        dev_of.extend([ns.dev for _row, ns in some])
        ino_of.extend([ns.ino for _row, ns in some])
    # The sparse groups: each entry is a record whose fields are its group's value columns, in order.
    groups = ((pods, out.pod_row, (out.pod_namespace, out.pod_name, out.pod_uid)),
              (containers, out.container_row, (out.container_name, out.container_id)),
              (mounts, out.mount_row, (out.mount_path, out.mount_mnt_ns)),
              (fds, out.fd_row, (out.fd_pid, out.fd_fd)))
    for column, at, values in groups:
        for row, entries in enumerate(column):
            for entry in entries:
                at.append(row)
                for value_column, value in zip(values, entry, strict=True):
                    value_column.append(value)
    return out


class _Malformed(Exception):
    pass


def _same_length(n: int, *columns: list[Any]) -> None:
    if any(len(c) != n for c in columns):
        raise _Malformed("columns of different lengths")


def _records(cls: Any, *columns: list[Any]) -> list[Any]:
    """``[cls(*values) for values in zip(*columns)]`` for a NamedTuple ``cls``, made in C: ``tuple.__new__(cls, t)``
    is what ``cls._make(t)`` does, without a Python call per record."""
    return list(map(tuple.__new__, repeat(cls), zip(*columns, strict=True)))


def _sparse(rows: int, index: Any, *columns: Any) -> tuple[list[int], list[list[Any]]]:
    """A sparse group of columns: the rows they name and their values, checked."""
    at = list(index)
    values = [list(c) for c in columns]
    _same_length(len(at), *values)
    if at and max(at) >= rows:
        raise _Malformed("an entry names a row that is not there")
    return at, values


def _per_row(rows: int, at: list[int], entries: list[Any]) -> list[tuple[Any, ...]]:
    """Each row's entries (in their order) as a tuple; () for a row that has none."""
    out: list[Any] = [()] * rows
    for row, entry in zip(at, entries, strict=True):
        got = out[row]
        out[row] = (entry,) if not got else (*got, entry)
    return out


def _related(rows: int, group: tuple[list[int], list[list[Any]]], known: dict[tuple[int, int], NamespaceId]) -> list[Any]:
    """Each row's parent (or owner), the row's own NamespaceId where it is one; None for a row without."""
    at, (devs, inos) = group
    if len(set(at)) != len(at):
        raise _Malformed("a row with two parents or owners")
    out: list[Any] = [None] * rows
    get = known.get
    for row, key in zip(at, zip(devs, inos, strict=True), strict=True):
        got = get(key)
        out[row] = tuple.__new__(NamespaceId, key) if got is None else got
    return out


def from_columns(c: pb.NodeColumns) -> list[Namespace]:
    """The rows of ``NodeColumns``.  Each column is read in one call, then records are made from the lists."""
    dev, ino, nprocs, pid, node, at = list(c.dev), list(c.ino), list(c.nprocs), list(c.pid), list(c.node), list(c.process)
    n = len(ino)
    kinds = list(c.type)
    _same_length(n, dev, nprocs, pid, node, at, kinds)
    names = list(c.type_names)
    if kinds and max(kinds) >= len(names):
        raise _Malformed("a row's type is not in type_names")
    types = [names[k] for k in kinds]
    uids: list[int | None] = list(c.proc_uid)
    for k in c.proc_uid_unknown:
        if k >= len(uids):
            raise _Malformed("an unknown uid of a process that is not there")
        uids[k] = None
    pids, starts, ppids = list(c.proc_pid), list(c.proc_start_time), list(c.proc_ppid)
    users, comms, cmdlines = list(c.proc_user), list(c.proc_comm), list(c.proc_cmdline)
    _same_length(len(pids), starts, ppids, uids, users, comms, cmdlines)
    table: list[Process | None] = _records(Process, _records(ProcessId, pids, starts), ppids, uids, users, comms, cmdlines)
    if at and (min(at) < -1 or max(at) >= len(table)):
        raise _Malformed("a row's process is not in the process table")
    table.append(None)  # index -1
    row_ids = _records(NamespaceId, dev, ino)
    known = dict(zip(zip(dev, ino, strict=True), row_ids, strict=True))  # a parent or owner that is a row: the same NamespaceId
    pods_at, (namespaces, pod_names, pod_uids) = _sparse(n, c.pod_row, c.pod_namespace, c.pod_name, c.pod_uid)
    containers_at, (container_names, container_ids) = _sparse(n, c.container_row, c.container_name, c.container_id)
    mounts_at, (paths, mnt_ns) = _sparse(n, c.mount_row, c.mount_path, c.mount_mnt_ns)
    fds_at, (fd_pids, fd_fds) = _sparse(n, c.fd_row, c.fd_pid, c.fd_fd)
    return _records(
        Namespace, row_ids, types, nprocs, pid, [table[k] for k in at], node,
        _per_row(n, pods_at, _records(PodRef, namespaces, pod_names, pod_uids)),
        _per_row(n, containers_at, _records(ContainerRef, container_names, container_ids)),
        _related(n, _sparse(n, c.parent_row, c.parent_dev, c.parent_ino), known),
        _related(n, _sparse(n, c.owner_row, c.owner_dev, c.owner_ino), known),
        _per_row(n, mounts_at, _records(NsMount, paths, mnt_ns)),
        _per_row(n, fds_at, _records(NsFd, fd_pids, fd_fds)),
    )


class NodeEncoder:
    """``to_node`` for a caller that answers the same node again and again (the agent's GetNode).  The same answer
    (the same view, compared by identity first) is the same message.  In rows, each namespace's encoding is kept
    from the last answer and reused where its row is equal, as most are on a warm node; in columns, the message is
    made whole (a column is one pass).  A new answer replaces what is kept whole, so it never outgrows one node view.
    Safe to share between threads (a race only loses reuse)."""

    def __init__(self) -> None:
        self._rows: dict[Namespace, bytes] = {}
        self._last: tuple[NodeView, pb.NodeView] | None = None
        self._last_columns: tuple[NodeView, pb.NodeView] | None = None

    def encode(self, v: NodeView, columns: bool = False) -> pb.NodeView:
        with gcpause.paused():
            if not columns:
                return self._encode(v)
            last = self._last_columns
            if last is not None and last[0] == v:
                return last[1]
            out = to_node(v, columns=True)
            self._last_columns = (v, out)
            return out

    def _encode(self, v: NodeView) -> pb.NodeView:
        last = self._last
        if last is not None and last[0] == v:  # the same answer (the same rows: compared by identity first)
            return last[1]
        kept: dict[Namespace, bytes] = self._rows
        rows: dict[Namespace, bytes] = {}
        parts = [to_node(v._replace(namespaces=[])).SerializeToString()]
        for n in v.namespaces:
            data = kept.get(n)
            if data is None:
                row = pb.Namespace()
                _namespace(row, n)
                data = row.SerializeToString()
            rows[n] = data
            parts.append(_NAMESPACES_TAG + _varint(len(data)) + data)  # one element of NodeView.namespaces
        out: pb.NodeView = pb.NodeView.FromString(b"".join(parts))
        self._rows, self._last = rows, (v, out)
        return out


_NAMESPACES_TAG = bytes([1 << 3 | 2])  # field 1 of NodeView, length-delimited


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def from_node(m: pb.NodeView) -> NodeView:
    with gcpause.paused():  # thousands of rows, no cycle among them
        return _from_node(m)


def _from_node(m: pb.NodeView) -> NodeView:
    if m.HasField("columns"):
        if m.namespaces:
            raise Unavailable("the nsinspect agent answered a node view with both rows and columns; "
                              "check that client and agent are nsinspect")
        try:
            rows = from_columns(m.columns)
        except _Malformed as e:
            raise Unavailable(f"the nsinspect agent answered a node view whose columns do not add up ({e}); "
                              "check that client and agent are nsinspect") from None
    else:
        ids: dict[tuple[int, int], NamespaceId] = {}
        procs: dict[tuple[int, int], Process] = {}
        rows = [_from_namespace(n, ids, procs) for n in m.namespaces]
    return NodeView(
        rows,
        _ns_dict(m.node_namespaces),
        _from_stats(m.stats),
        tuple(m.types),
        m.node,
        m.runtime,
        m.runtime_error,
    )


def to_process(v: ProcessView) -> pb.ProcessView:
    out = pb.ProcessView(node=v.node, runtime_error=v.runtime_error)
    _process(out.process, v.process)
    _ns_map(out.namespaces, v.namespaces)
    _ns_map(out.node_namespaces, v.node_namespaces)
    if v.pod is not None:
        out.pod.namespace, out.pod.name, out.pod.uid = v.pod
    if v.container is not None:
        out.container.name, out.container.id = v.container
    return out


def from_process(m: pb.ProcessView) -> ProcessView:
    present = _ns_dict(m.namespaces)
    return ProcessView(
        _from_process(m.process),
        {t: present.get(t) for t in NS_TYPES},  # a missing type: the link is gone (zombie)
        _ns_dict(m.node_namespaces),
        PodRef(m.pod.namespace, m.pod.name, m.pod.uid) if m.HasField("pod") else None,
        ContainerRef(m.container.name, m.container.id) if m.HasField("container") else None,
        m.node,
        m.runtime_error,
    )


def _member(target: Any, x: Member) -> None:
    target.name, target.role, target.id, target.state = x.name, x.role, x.id, x.state
    if x.process is not None:
        _process(target.process, x.process)
    _ns_map(target.namespaces, x.namespaces)
    target.target_id, target.attempt, target.image = x.target_id, x.attempt, x.image
    target.created_at, target.finished_at = x.created_at, x.finished_at
    _ranges(target.uid_map, x.uid_map)
    _ranges(target.gid_map, x.gid_map)
    for s in x.strays:
        entry = target.strays.add()
        _process(entry.process, s.process)
        _ns_map(entry.differs, s.differs)
    if x.details is not None:
        _evidence(target.details, x.details)
    target.pinned.update(x.pinned)


def _from_member(m: Any) -> Member:
    return Member(
        m.name,
        m.role,
        m.id,
        m.state,
        _from_process(m.process) if m.HasField("process") else None,
        _ns_dict(m.namespaces),
        m.target_id,
        m.attempt,
        m.created_at,
        m.finished_at,
        m.image,
        uid_map=_from_ranges(m.uid_map),
        gid_map=_from_ranges(m.gid_map),
        strays=tuple(Stray(_from_process(s.process), _ns_dict(s.differs)) for s in m.strays),
        details=_from_evidence(MemberDetails, m.details) if m.HasField("details") else None,
        pinned=dict(m.pinned),
    )


def to_pod(v: PodView) -> pb.PodView:
    p = v.pod
    out = pb.PodView(runtime=v.runtime, notes=v.notes)
    info = out.pod
    info.namespace, info.name, info.uid, info.sandbox_id, info.node = p.namespace, p.name, p.uid, p.sandbox_id, p.node
    info.state, info.created_at, info.hostname = p.state, p.created_at, p.hostname
    info.options.update(p.options)
    info.labels.update(p.labels)
    _ranges(info.uid_mappings, p.uid_mappings)
    _ranges(info.gid_mappings, p.gid_mappings)
    add = out.members.add
    for x in v.members:
        _member(add(), x)
    for t, verdict in v.sharing.items():
        entry = out.sharing[t]
        if verdict.actual is not None:
            entry.actual = verdict.actual
        if verdict.expected is not None:
            entry.expected = verdict.expected
        entry.reason = verdict.reason
    _ns_map(out.node_namespaces, v.node_namespaces)
    for n in v.lsns:
        _namespace(out.lsns.add(), n)
    return out


def from_pod(m: pb.PodView) -> PodView:
    p = m.pod
    info = PodInfo(
        p.namespace, p.name, p.uid, p.sandbox_id, p.node, p.state, p.created_at, dict(p.options), p.hostname, dict(p.labels),
        _from_ranges(p.uid_mappings), _from_ranges(p.gid_mappings),
    )
    verdicts = {
        t: explained(Verdict(  # the sentence is not on the wire: the rules make it again
            m.sharing[t].actual if m.sharing[t].HasField("actual") else None,
            m.sharing[t].expected if m.sharing[t].HasField("expected") else None,
            m.sharing[t].reason,
        ))
        for t in NS_TYPES
        if t in m.sharing
    }
    members = [_from_member(x) for x in m.members]
    return PodView(
        info,
        members,
        with_evidence(verdicts, members, (info.uid_mappings, info.gid_mappings), _ns_dict(m.node_namespaces)),  # made again
        _ns_dict(m.node_namespaces),
        m.runtime,
        tuple(m.notes),
        tuple(_from_namespace(n) for n in m.lsns),
    )


def to_pods(v: PodsView) -> pb.PodList:
    out = pb.PodList(node=v.node, runtime=v.runtime)
    for pv in v.pods:
        out.pods.append(to_pod(pv))
    return out


def from_pods(m: pb.PodList) -> PodsView:
    return PodsView([from_pod(p) for p in m.pods], m.node, m.runtime)
