"""Discovery on one node: from procfs to the model.

``node_view``: every namespace of every process (the lsns view);
``process_view``: one process and its eight namespaces;
``node_namespaces``: the node's own namespace of each type.
Pods and containers are attached on top by ``nsinspect.node.pods``.
"""

from __future__ import annotations

from typing import Any

from nsinspect.errors import AccessDenied, NoSuchProcess
from nsinspect.model import NS_TYPES, ContainerRef, Namespace, NamespaceId, NodeView, PodRef, PodView, ProcessView, ScanStats
from nsinspect.node import hidden, procfs
from nsinspect.node.fanout import fanout, slices
from nsinspect.node.procfs import ProcFS
from nsinspect.node.procfs import _workers_for as workers_for  # the scan's rule for forking, shared


def node_namespaces(proc: ProcFS) -> dict[str, NamespaceId]:
    """The node's namespaces: those of PID 1, or of PID 2 (kthreadd) when PID 1 cannot be read.

    Kernel threads never leave the initial namespaces, so kthreadd is a faithful fallback
    where PID 1 is hidden from us (as in some sandboxes, even from root).
    """
    for pid in (1, 2):
        try:
            links = proc.ns_links(pid)
        except (NoSuchProcess, AccessDenied):
            continue
        found = {t: ns for t, ns in links.items() if ns is not None}
        if found:
            return found
    return {}


def node_view(proc: ProcFS, types: tuple[str, ...] = NS_TYPES, parallel: bool = True) -> NodeView:
    """Every namespace of the given types on this node, as lsns counts them.

    NPROCS: the processes whose link names that namespace; PID: the lowest of them, and
    the process shown (PPID, USER, COMMAND) is that one.  Then (``hidden.complete``) the
    namespaces no process is in (bind-mounted, held by an fd, or only a parent or owner),
    and every namespace's parent and owner.  The agent keeps what it read and reads again only what
    changed (``nsinspect.node.warm``), to the same answer.
    """
    pids = proc.pids()
    node_ns = node_namespaces(proc)
    dev = proc.nsfs_dev()
    node_mnt = node_ns["mnt"].ino if "mnt" in node_ns else 0
    # Every mount namespace's bind mounts, whatever -t asks: the mnt links tell which there are (their
    # processes are described only if mnt is asked for).
    scanned = types if "mnt" in types else (*types, "mnt")
    fd = proc.fd

    def read_slice(share: list[int]) -> tuple[Any, hidden.SlicePass]:
        """One worker's share: its pids' links, then the passes after the scan for them."""
        chunk = procfs.scan_slice(fd, share, scanned, described=types)
        return chunk, hidden.slice_pass(fd, share, dict(zip(scanned, chunk[0], strict=True)), types, dev, node_mnt)

    parts = fanout(read_slice, slices(pids, workers_for(len(pids)) if parallel else 1))
    seen, stats = procfs.finish_scan([chunk for chunk, _pass in parts], scanned)
    return finish_view(fd, seen, stats, types, [p for _chunk, p in parts], node_ns, dev)


def finish_view(procfd: int, seen: dict[str, dict[int, tuple[int, int, Any]]], stats: ScanStats, types: tuple[str, ...],
                passes: list[hidden.SlicePass], node_ns: dict[str, NamespaceId], dev: int) -> NodeView:
    """The scan's rows (``procfs.finish_scan``) completed with what the passes after it read (``hidden.complete``)."""
    namespaces: list[Namespace] = []
    for nstype in types:
        node_ino = node_ns[nstype].ino if nstype in node_ns else None
        for ino, (nprocs, low, process) in seen[nstype].items():
            namespaces.append(Namespace(NamespaceId(dev, ino), nstype, nprocs, low, process, ino == node_ino))
    namespaces, fds_denied, untyped = hidden.complete(procfd, namespaces, types, passes, node_ns, dev)
    namespaces.sort(key=lambda n: (n.id.ino, n.type))
    return NodeView(namespaces, node_ns, stats._replace(fds_denied=fds_denied, fds_untyped=untyped), types)


def process_view(proc: ProcFS, pid: int) -> ProcessView:
    """One process's namespaces.  Raises NoSuchProcess or AccessDenied."""
    process = proc.process(pid)
    links = proc.ns_links(pid)
    # The links were read after the identity: make sure they belong to the same process.
    if not proc.is_alive(process.id):
        raise NoSuchProcess(pid)
    return ProcessView(process, links, node_namespaces(proc))


def attach_pods(view: NodeView, pods: list[PodView]) -> NodeView:
    """Fill POD and CONTAINER: which pods' members are in each namespace (the node's own are not attributed)."""
    owners: dict[tuple[str, int], tuple[list[PodRef], list[ContainerRef]]] = {}
    for pv in pods:
        for m in pv.members:
            for t, ns in m.namespaces.items():
                if view.node_namespaces.get(t) == ns:
                    continue
                refs = owners.setdefault((t, ns.ino), ([], []))
                if pv.pod.ref not in refs[0]:
                    refs[0].append(pv.pod.ref)
                refs[1].append(ContainerRef(m.name, m.id))
    if not owners:
        return view
    rows = []
    for n in view.namespaces:
        o = owners.get((n.type, n.id.ino))
        rows.append(n._replace(pods=tuple(o[0]), containers=tuple(o[1])) if o else n)
    return view._replace(namespaces=rows)
