"""The model as plain data: the JSON/YAML contract (README, "Commands").

Keys shared with ``lsns -J`` keep lsns's names (ns, type, nprocs, pid, ppid, user, command).
Nothing here is truncated or escaped: JSON escaping is the serializer's job.
"""

from __future__ import annotations

from typing import Any

from nsinspect.model import (
    CheckView,
    ClusterPodsView,
    ContainerRef,
    IdRange,
    Member,
    Namespace,
    NamespaceId,
    NodeView,
    PodRef,
    PodSpec,
    PodsView,
    PodView,
    Process,
    ProcessView,
    ScanStats,
    Stray,
    Verdict,
)


def _ino(ns: NamespaceId | None) -> int | None:
    return ns.ino if ns is not None else None


def pod_ref(p: PodRef | None) -> dict[str, str] | None:
    return None if p is None else {"namespace": p.namespace, "name": p.name, "uid": p.uid}


def container_ref(c: ContainerRef | None) -> dict[str, str] | None:
    return None if c is None else {"name": c.name, "id": c.id}


def stats(s: ScanStats) -> dict[str, Any]:
    return {"processes": s.processes, "vanished": s.vanished, "denied": len(s.denied), "denied_pids": list(s.denied), "as_root": s.as_root,
            "fds_denied": s.fds_denied, "fds_untyped": [{"ns": ino, "pid": pid, "fd": fd} for ino, pid, fd in s.fds_untyped]}


def process(p: Process | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "pid": p.pid,
        "start_time": p.id.start_time,
        "ppid": p.ppid,
        "uid": p.uid,
        "user": p.user,
        "comm": p.comm,
        "command": p.command,
    }


def held(n: Namespace) -> dict[str, Any]:
    """The keys of a node row after ``containers``: lsns's pns, ons and nsfs, then what holds it.

    As lsns: pns/ons are 0 where the kernel names no parent/owner; nsfs is the bind mounts'
    paths joined by newlines, or null.  ``mounts`` adds the mount namespace of each path.
    """
    return {
        "pns": n.parent.ino if n.parent else 0,
        "ons": n.owner.ino if n.owner else 0,
        "nsfs": "\n".join(m.path for m in n.mounts) or None,
        "mounts": [{"path": m.path, "mnt_ns": m.mnt_ns} for m in n.mounts],
        "fds": [{"pid": f.pid, "fd": f.fd} for f in n.fds],
    }


def node(v: NodeView) -> dict[str, Any]:
    rows = []
    for n in v.namespaces:
        p = n.process
        rows.append(
            {
                "ns": n.id.ino,
                "type": n.type,
                "nprocs": n.nprocs,
                "pid": n.pid if n.nprocs else None,
                "ppid": p.ppid if p else None,
                "user": p.user if p else None,
                "uid": p.uid if p else None,
                "command": p.command if p else None,
                "node": n.node,
                "pods": [{"namespace": r.namespace, "name": r.name} for r in n.pods],
                "containers": [container_ref(c) for c in n.containers],
                **held(n),
            }
        )
    return {
        "namespaces": rows,
        "node_namespaces": {t: ns.ino for t, ns in v.node_namespaces.items()},
        "nsfs_dev": next(iter(v.node_namespaces.values())).dev if v.node_namespaces else None,
        "scan": stats(v.stats),
        **({"runtime_error": v.runtime_error} if v.runtime_error else {}),
    }


def node_json(v: object) -> str | None:
    """``node(v)`` serialized, fast: what one process contributes is encoded once.

    A busy node has thousands of namespace rows but few distinct lowest-pid processes;
    encoding their part once halves the cost of ``node -o json``.  Same text as
    ``dump_json(node(v))`` (a test holds them equal).
    """
    if not isinstance(v, NodeView):
        return None
    import json

    from nsinspect.render import dump_json

    enc = json.JSONEncoder(ensure_ascii=True).encode
    head = dump_json(node(NodeView([], v.node_namespaces, v.stats, v.types, runtime_error=v.runtime_error)))
    by_process: dict[int, str] = {}
    rows = []
    for n in v.namespaces:
        p = n.process
        key = id(p)
        part = by_process.get(key)
        if part is None:
            if p is None:
                part = '"ppid": null, "user": null, "uid": null, "command": null'
            else:
                uid = "null" if p.uid is None else str(p.uid)
                part = f'"ppid": {p.ppid}, "user": {enc(p.user)}, "uid": {uid}, "command": {enc(p.command)}'
            by_process[key] = part
        if n.pods or n.containers:
            tail = enc({"pods": [{"namespace": r.namespace, "name": r.name} for r in n.pods],
                        "containers": [container_ref(c) for c in n.containers]})[1:-1]
        else:
            tail = '"pods": [], "containers": []'
        node_flag = "true" if n.node else "false"
        if n.mounts or n.fds:
            rest = enc(held(n))[1:-1]
        else:
            rest = (f'"pns": {n.parent.ino if n.parent else 0}, "ons": {n.owner.ino if n.owner else 0}, '
                    '"nsfs": null, "mounts": [], "fds": []')
        pid = n.pid if n.nprocs else "null"
        rows.append(
            f'{{"ns": {n.id.ino}, "type": "{n.type}", "nprocs": {n.nprocs}, "pid": {pid}, {part}, '
            f'"node": {node_flag}, {tail}, {rest}}}'
        )
    if not rows:
        return head
    return head.replace('  "namespaces": []', '  "namespaces": [\n    ' + ",\n    ".join(rows) + "\n  ]", 1)


def process_view(v: ProcessView) -> dict[str, Any]:
    return {
        "pid": v.process.pid,
        "namespaces": {t: _ino(ns) for t, ns in v.namespaces.items()},
        "node": {t: (ns is not None and v.node_namespaces.get(t) == ns) for t, ns in v.namespaces.items()},
        "process": process(v.process),
        "pod": pod_ref(v.pod),
        "container": container_ref(v.container),
        **({"runtime_error": v.runtime_error} if v.runtime_error else {}),
    }


def id_map(ranges: tuple[IdRange, ...]) -> list[dict[str, int]]:
    return [{"inside": r.inside, "outside": r.outside, "length": r.length} for r in ranges]


def member(m: Member) -> dict[str, Any]:
    return {
        "name": m.name,
        "role": m.role,
        "id": m.id,
        "state": m.state,
        "pid": m.pid,
        "start_time": m.process.id.start_time if m.process else None,
        "namespaces": {t: ns.ino for t, ns in m.namespaces.items()},
        "target_id": m.target_id or None,
        "attempt": m.attempt,
        "image": m.image,
        "sidecar": m.sidecar,
        "uid_map": id_map(m.uid_map) if m.running else None,
        "gid_map": id_map(m.gid_map) if m.running else None,
        "strays": [stray(s) for s in m.strays],
        "details": plain(m.details),
        # A sandbox without a process: type -> the path its namespace was read from (pinned by the runtime).
        "pinned": dict(sorted(m.pinned.items())),
    }


def stray(s: Stray) -> dict[str, Any]:
    """A process of the member's cgroup outside some of its namespaces: ``differs`` maps each such type to
    the inode of the namespace it is in instead."""
    p = s.process
    return {"pid": p.pid, "start_time": p.id.start_time, "comm": p.comm, "command": p.command,
            "differs": {t: ns.ino for t, ns in sorted(s.differs.items())}}


def plain(value: Any) -> Any:
    """An evidence record as plain data: records as objects (their field names as keys), tuples as lists."""
    if hasattr(value, "_fields"):
        return {k: plain(v) for k, v in zip(value._fields, value, strict=True)}
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value


def pod_spec(s: PodSpec | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {
        "node": s.node,
        "phase": s.phase,
        "hostNetwork": s.host_network,
        "hostPID": s.host_pid,
        "hostIPC": s.host_ipc,
        "hostUsers": s.host_users,
        "shareProcessNamespace": s.share_process_namespace,
        "containers": [
            {"name": c.name, "role": c.role, "sidecar": c.sidecar, "targetContainerName": c.target or None, "state": c.state}
            for c in s.containers
        ],
    }


def verdict(v: Verdict) -> dict[str, Any]:
    return {"actual": v.actual, "expected": v.expected, "ok": v.ok, "reason": v.reason,
            "declared": v.declared, "declared_reason": v.declared_reason or None, "evidence": v.evidence or None}


def pod(v: PodView) -> dict[str, Any]:
    p = v.pod
    return {
        "pod": {
            "namespace": p.namespace,
            "name": p.name,
            "uid": p.uid,
            "sandbox_id": p.sandbox_id,
            "node": p.node,
            "state": p.state,
            "namespace_options": dict(sorted(p.options.items())),
            "userns_mappings": {"uids": id_map(p.uid_mappings), "gids": id_map(p.gid_mappings)}
            if p.uid_mappings or p.gid_mappings else None,
        },
        "runtime": v.runtime,
        "members": [member(m) for m in v.members],
        "sharing": {t: verdict(s) for t, s in v.sharing.items()},
        "node_namespaces": {t: ns.ino for t, ns in v.node_namespaces.items()},
        "notes": list(v.notes),
        "spec": pod_spec(v.spec),
    }


def pod_row(pv: PodView) -> dict[str, Any]:
    """One pod as a ``pods`` row."""
    return {
        "namespace": pv.pod.namespace,
        "name": pv.pod.name,
        "uid": pv.pod.uid,
        "sandbox_id": pv.pod.sandbox_id,
        "members": len(pv.members),
        "running": sum(1 for m in pv.members if m.running),
        "strays": pv.stray_count,
        "sharing": {t: {"actual": s.actual, "expected": s.expected, "ok": s.ok, "declared": s.declared}
                    for t, s in pv.sharing.items()},
        "ok": pv.ok,
    }


def pods(v: PodsView) -> dict[str, Any]:
    return {"node": v.node, "runtime": v.runtime, "pods": [pod_row(pv) for pv in v.pods]}


def cluster_pods(v: ClusterPodsView) -> dict[str, Any]:
    rows = []
    for pv in v.pods:
        row = pod_row(pv)
        row["node"] = pv.pod.node
        row["phase"] = pv.spec.phase if pv.spec else ""
        row["notes"] = list(pv.notes)
        rows.append(row)
    return {
        "namespace": v.namespace,
        "pods": rows,
        "nodes": [{"node": n.node, "runtime": n.runtime, "pods": n.pods, "ok": not n.error, "error": n.error or None,
                   "seconds": round(n.seconds, 3)} for n in v.nodes],
        "summary": {
            "pods": len(v.pods),
            "nodes": len(v.nodes),
            "nodes_failed": len(v.failed),
            "pods_not_ok": sum(1 for pv in v.pods if pv.members and not pv.ok),
        },
    }


_BY_TYPE = {NodeView: node, ProcessView: process_view, PodView: pod, PodsView: pods, ClusterPodsView: cluster_pods}


def to_data(view: object) -> Any:
    fn = _BY_TYPE.get(type(view))
    if fn is not None:
        return fn(view)  # type: ignore[operator]
    to_dict = getattr(view, "to_data", None)
    if to_dict is None:
        raise TypeError(f"no data form for {type(view).__name__}")
    return to_dict()


def check(v: CheckView) -> dict[str, Any]:
    return {
        "pod": pod(v.pod)["pod"],
        "ok": v.ok,
        "results": [
            {
                "type": r.type,
                "expected": r.expected,
                "actual": r.actual,
                "ok": r.ok,
                "evidence": [{"member": m, "role": role, "ns": ino} for m, role, ino in r.evidence],
                "apart": [{"member": m, "role": role, "ns": ino} for m, role, ino in r.apart],
                "apart_reason": r.apart_reason or None,
                "hint": r.hint,
            }
            for r in v.results
        ],
    }


_BY_TYPE[CheckView] = check
