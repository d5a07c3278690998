"""Discovery on one node: from procfs to the model.

``node_view``: every namespace of every process (the lsns view);
``process_view``: one process and its eight namespaces;
``node_namespaces``: the node's own namespace of each type.
Pods and containers are attached on top by ``nsinspect.node.pods``.
"""

from __future__ import annotations

import os
from typing import Any

from nsinspect.errors import AccessDenied, NoSuchProcess
from nsinspect.model import NS_TYPES, ContainerRef, Namespace, NamespaceId, NodeView, PodRef, PodView, ProcessView
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
    and every namespace's parent and owner.
    """
    pids = proc.pids()
    workers = workers_for(len(pids)) if parallel else 1
    node_ns = node_namespaces(proc)
    dev = proc.nsfs_dev()
    node_mnt = node_ns["mnt"].ino if "mnt" in node_ns else 0
    # Without a scan of mnt links, the first slice reads the node's mount namespace (and ours).
    fixed = None if "mnt" in types else _mountinfo_readers(proc, node_ns)
    fd = proc.fd

    def read_slice(job: tuple[list[int], list[tuple[int, str]] | None]) -> tuple[Any, hidden.SlicePass]:
        """One forked worker's share: its pids' links, then the passes after the scan for them."""
        share, readers = job
        chunk = procfs.scan_slice(fd, share, types)
        return chunk, hidden.slice_pass(fd, share, chunk[0], types, dev, node_mnt, readers)

    jobs = [(share, fixed if k == 0 or fixed is None else []) for k, share in enumerate(slices(pids, workers))]
    parts = fanout(read_slice, jobs)
    seen, stats = procfs.finish_scan([chunk for chunk, _pass in parts], types)
    namespaces: list[Namespace] = []
    for nstype, by_ino in seen.items():
        node_ino = node_ns[nstype].ino if nstype in node_ns else None
        for ino, (nprocs, low, process) in by_ino.items():
            namespaces.append(Namespace(NamespaceId(dev, ino), nstype, nprocs, low, process, ino == node_ino))
    namespaces, fds_denied = hidden.complete(fd, namespaces, types, [p for _chunk, p in parts], node_ns, dev)
    namespaces.sort(key=lambda n: (n.id.ino, n.type))
    return NodeView(namespaces, node_ns, stats._replace(fds_denied=fds_denied), types)


def _mountinfo_readers(proc: ProcFS, node_ns: dict[str, NamespaceId]) -> list[tuple[int, str]]:
    """Without a scan of mnt links (``-t`` without mnt), whose mountinfo shows the nsfs mounts: PID 1
    and kthreadd for the node's mount namespace, the one whose root we can open first (a bind mount
    is opened through the root of the first process it was seen by: some sandboxes hide PID 1's root
    even from root, not its mountinfo), and our own mount namespace if it is another one.
    (With a scan of mnt links, each slice reads the mount namespaces its processes are in.)
    """
    node_mnt = node_ns["mnt"].ino if "mnt" in node_ns else 0
    readers = [(node_mnt, "1"), (node_mnt, "2")]
    readers.sort(key=lambda r: not _root_reachable(proc, r[1]))
    try:
        own = os.stat("self/ns/mnt", dir_fd=proc.fd).st_ino
    except OSError:
        own = 0
    if own != node_mnt or not own:
        readers.append((own, "self"))
    return readers


def _root_reachable(proc: ProcFS, entry: str) -> bool:
    try:
        os.stat(f"{entry}/root/", dir_fd=proc.fd)
    except OSError:
        return False
    return True


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
