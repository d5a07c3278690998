"""Pods on this node: members from the runtime, namespaces from the kernel, verdicts from both.

Steps for a set of sandboxes (``fetch``, then ``assemble``):
 1. ListContainers once; keep each container's latest attempt.
 2. PodSandboxStatus / ContainerStatus, pipelined on one connection: verbose only for running
    members whose pid is not cached (the verbose blob costs ~0.75 ms and carries the environment;
    ``cri.info`` keeps the pid and namespace facts only).
 3. Each running member's 8 namespaces from /proc/<pid>/ns, after checking that the pid is still
    the process the runtime meant (pid + start time; cached pids are revalidated the same way).
 4. Roles (see ``assign_roles``) and sharing verdicts (``sharing.verdicts``).

Without the API server some roles are inferred, and each inference is written into ``notes``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from nsinspect import sharing
from nsinspect.cri import info as cri_info
from nsinspect.errors import AccessDenied, NoSuchProcess, NotFound
from nsinspect.model import (
    APP,
    EPHEMERAL,
    INFERRED_EPHEMERAL,
    INFERRED_INIT,
    INIT,
    ROLE_ORDER,
    SANDBOX,
    ContainerRef,
    IdRange,
    Member,
    NamespaceId,
    PodInfo,
    PodRef,
    PodView,
    ProcessId,
)
from nsinspect.node.procfs import ProcFS
from nsinspect.node.strays import Finder

L_NAME, L_NAMESPACE, L_UID, L_CONTAINER = (
    "io.kubernetes.pod.name",
    "io.kubernetes.pod.namespace",
    "io.kubernetes.pod.uid",
    "io.kubernetes.container.name",
)
_CONTAINER_STATES = {0: "created", 1: "running", 2: "exited", 3: "unknown"}


def cgroup_v2(host_root: str | None) -> bool:
    """Is the node on the unified cgroup hierarchy?  (Its root has cgroup.controllers only on v2.)

    Under a host root without the node's /sys/fs/cgroup mounted, our own /sys/fs/cgroup tells:
    a container's cgroup mount has the node's cgroup version."""
    root = os.path.join(host_root or "/", "sys/fs/cgroup")
    if not os.path.isdir(root) or not os.listdir(root):
        root = "/sys/fs/cgroup"
    return os.path.exists(os.path.join(root, "cgroup.controllers"))


class PidCache:
    """Container id -> (process identity, namespace facts of its verbose info).

    An entry is used only while /proc still shows that pid with that start time, so a
    recycled pid never lends a dead container's namespaces to a new process.  Safe to share
    between the agent's request threads (single dict operations only).
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[ProcessId, cri_info.VerboseInfo]] = {}

    def get(self, cid: str, proc: ProcFS) -> tuple[ProcessId, cri_info.VerboseInfo] | None:
        """The entry, if its process is still alive (one read of /proc/<pid>/stat)."""
        entry = self._entries.get(cid)
        if entry is not None and not proc.is_alive(entry[0]):
            self._entries.pop(cid, None)
            return None
        return entry

    def peek(self, cid: str) -> tuple[ProcessId, cri_info.VerboseInfo] | None:
        """The entry unvalidated: the caller checks the identity itself."""
        return self._entries.get(cid)

    def put(self, cid: str, pid: ProcessId, vi: cri_info.VerboseInfo) -> None:
        self._entries[cid] = (pid, vi)

    def forget(self, cid: str) -> None:
        self._entries.pop(cid, None)

    def __len__(self) -> int:
        return len(self._entries)


_NO_MAPS: dict[str, Any] = {}


def _namespaces(proc: ProcFS, pid: int) -> tuple[Any, dict[str, NamespaceId], dict[str, Any]]:
    """(process, its 8 namespaces, its user namespace's uid_map/gid_map), or (None, {}, {}) if it is
    gone or hidden."""
    try:
        process = proc.process(pid)
        links = proc.ns_links(pid)
        try:
            uid_map, gid_map = proc.id_maps(pid)
        except (NoSuchProcess, AccessDenied):  # a kernel without user namespaces has no maps (or it is gone:
            uid_map = gid_map = ()            # is_alive tells)
        if not proc.is_alive(process.id):
            return None, {}, _NO_MAPS
    except (NoSuchProcess, AccessDenied):
        return None, {}, _NO_MAPS
    return process, {t: ns for t, ns in links.items() if ns is not None}, {"uid_map": uid_map, "gid_map": gid_map}


def _member(
    proc: ProcFS, cache: PidCache, cid: str, name: str, role: str, state: str, status: Any, running: bool, **extra: Any
) -> tuple[Member, cri_info.VerboseInfo | None]:
    vi = None
    process, namespaces, maps = None, dict[str, NamespaceId](), _NO_MAPS
    cached = cache.peek(cid) if running else None
    if cached is not None:
        # fetch() validated the entry; _namespaces checks the identity again around its reads.
        vi = cached[1]
        process, namespaces, maps = _namespaces(proc, cached[0].pid)
        if process is None or process.id != cached[0]:
            cache.forget(cid)
            process, namespaces, maps = None, dict[str, NamespaceId](), _NO_MAPS
    elif status is not None and status.info:
        vi = cri_info.parse(status.info)  # a sandbox's, even when not ready: its pinned namespace paths
        if running and vi.pid:
            process, namespaces, maps = _namespaces(proc, vi.pid)
            if process is not None:
                cache.put(cid, process.id, vi)
    return Member(name, role, cid, state, process, namespaces, **extra, **maps), vi


def pinned(proc: ProcFS, vi: cri_info.VerboseInfo, host_root: str | None) -> dict[str, tuple[str, NamespaceId]]:
    """The namespaces a sandbox's OCI spec names by a path the runtime pinned (not /proc/<pid>/ns/...):
    type -> (that path, the namespace it holds).  A path counts only while it is an nsfs inode (the dev the
    scan's namespaces are on): once unmounted it is an empty file of /run, and holds nothing."""
    dev = proc.nsfs_dev()
    out: dict[str, tuple[str, NamespaceId]] = {}
    for t, path in vi.spec_namespaces.items():
        if not path.startswith("/") or cri_info.joined_pid(path) is not None:
            continue
        found = _nsfs_at(_under_root(path, host_root), dev)
        if found is None:
            # Nothing at that path in our view of the node's files (a DaemonSet mounts only some of
            # them: CRI-O pins under /run/ipcns, /run/utsns, ...): look through the node's own root,
            # as its first processes see it (PID 1, else kthreadd: some sandboxes hide PID 1's root).
            found = _nsfs_at([os.path.join(proc.root, pid, "root", p.lstrip("/")) for pid in ("1", "2")
                              for p in _under_root(path, "/")], dev)
        if found:
            out[t] = (path, found)
    return out


def _nsfs_at(candidates: list[str], dev: int) -> NamespaceId | Literal[False] | None:
    """The namespace pinned at the first of ``candidates`` that is an nsfs inode; False when some exist
    but none is (an unmounted pin is an empty file: it holds nothing), None when none exists."""
    seen = False
    for candidate in candidates:
        try:
            st = os.stat(candidate)
        except (OSError, ValueError):
            continue
        if dev and st.st_dev == dev:
            return NamespaceId(st.st_dev, st.st_ino)
        seen = True
    return False if seen else None


def _under_root(path: str, host_root: str | None) -> list[str]:
    """Where the node's ``path`` is seen from here: under the host root when one is set.  There /var/run
    (the node's symlink to /run, which would resolve in our own root) is looked up as /run too."""
    if not host_root:
        return [path]
    out = [os.path.join(host_root, path.lstrip("/"))]
    if path.startswith("/var/run/"):
        out.append(os.path.join(host_root, path[len("/var/"):]))
    return out


def _with_pinned(proc: ProcFS, sandbox: Member, vi: cri_info.VerboseInfo | None, host_root: str | None) -> Member:
    """A sandbox without a process, with the namespaces its runtime pinned (``pinned``)."""
    if sandbox.process is not None or vi is None:
        return sandbox
    found = pinned(proc, vi, host_root)
    if not found:
        return sandbox
    return sandbox._replace(namespaces={t: ns for t, (_p, ns) in found.items()},
                            pinned={t: p for t, (p, _ns) in found.items()})


class Facts(NamedTuple):
    """What the runtime said about some sandboxes, at one moment."""

    sandboxes: list[Any]  # CRI PodSandbox messages
    containers: dict[str, list[Any]]  # sandbox id -> the latest attempt of each of its containers
    statuses: dict[str, Any]  # container id -> ContainerStatusResponse (verbose only where a pid was needed)
    sb_statuses: dict[str, Any]  # sandbox id -> PodSandboxStatusResponse
    taken_at: float = 0.0  # time.monotonic() when it was asked
    by_name: Mapping[tuple[str, str], list[Any]] = MappingProxyType({})  # (namespace, name) -> its sandboxes
    signature: frozenset[tuple[str, int]] = frozenset()  # (id, state) of every sandbox and container

    def same(self, other: Facts | None) -> bool:
        """Does ``other`` show the same sandboxes and containers in the same states?"""
        return other is not None and other.signature == self.signature


def _index(sandboxes: list[Any]) -> dict[tuple[str, str], list[Any]]:
    out: dict[tuple[str, str], list[Any]] = {}
    for sb in sandboxes:
        key = (sb.labels.get(L_NAMESPACE, sb.metadata.namespace), sb.labels.get(L_NAME, sb.metadata.name))
        out.setdefault(key, []).append(sb)
    return out


def _statuses(ids_states: dict[str, int], running_state: int, old: dict[str, Any], old_states: dict[str, int],
              cache: PidCache, proc: ProcFS, call: Any, idle_verbose: bool = False) -> dict[str, Any]:
    """Status of each id: reused from ``old`` when its state did not change, else asked for
    (verbose only for a running one whose pid is not cached, and with ``idle_verbose`` for one that
    does not run: a sandbox that is not ready may still have namespaces pinned by path).

    With an ``old`` (the agent's refresh) cached pids are not checked here: ``_member`` checks
    each one's identity as it reads it, and drops a dead one, so the next refresh asks again.
    Without (one-shot), a dead cached pid is found now and its verbose status asked at once.
    """
    out: dict[str, Any] = {}
    verbose, plain = [], []
    for cid, state in ids_states.items():
        running = state == running_state
        known = running and (cache.peek(cid) if old else cache.get(cid, proc)) is not None
        prev = old.get(cid)
        if prev is not None and old_states.get(cid) == state and (known or not running):
            out[cid] = prev
        elif (running and not known) or (idle_verbose and not running):
            verbose.append(cid)
        else:
            plain.append(cid)
    if verbose:
        out.update(call(verbose, verbose=True))
    if plain:
        out.update(call(plain, verbose=False))
    return out


def fetch(client: Any, proc: ProcFS, sandboxes: list[Any], cache: PidCache, previous: Facts | None = None,
          taken_at: float = 0.0) -> Facts:
    """Ask the runtime about these sandboxes: one ListContainers, then status calls (pipelined)
    only for what is new or changed since ``previous``."""
    if not sandboxes:
        return Facts([], {}, {}, {}, taken_at)
    wanted = {sb.id for sb in sandboxes}
    latest: dict[tuple[str, str], Any] = {}
    for c in client.list_containers():
        if c.pod_sandbox_id not in wanted:
            continue
        key = (c.pod_sandbox_id, c.metadata.name)
        old = latest.get(key)
        if old is None or (c.metadata.attempt, c.created_at) > (old.metadata.attempt, old.created_at):
            latest[key] = c
    prev = previous or Facts([], {}, {}, {})
    prev_c = {c.id: c.state for cs in prev.containers.values() for c in cs}
    prev_sb = {sb.id: sb.state for sb in prev.sandboxes}
    statuses = _statuses({c.id: c.state for c in latest.values()}, 1, prev.statuses, prev_c, cache, proc,
                         client.container_statuses)
    sb_statuses = _statuses({sb.id: sb.state for sb in sandboxes}, 0, prev.sb_statuses, prev_sb, cache, proc,
                            client.sandbox_statuses, idle_verbose=True)
    by_sandbox: dict[str, list[Any]] = {}
    for c in latest.values():
        by_sandbox.setdefault(c.pod_sandbox_id, []).append(c)
    signature = frozenset([(sb.id, sb.state) for sb in sandboxes] + [(c.id, c.state) for c in latest.values()])
    return Facts(list(sandboxes), by_sandbox, statuses, sb_statuses, taken_at, _index(sandboxes), signature)


def assemble(proc: ProcFS, cache: PidCache, facts: Facts, node: str, cgroup2: bool, node_ns: Mapping[str, NamespaceId],
             sandboxes: list[Any] | None = None, strays: Finder | None = None, host_root: str | None = None,
             runtime: str = "") -> list[PodView]:
    """PodViews of these sandboxes (default: all of ``facts``), namespaces read now from /proc (a sandbox
    without a process: from the paths its runtime pinned them at, under ``host_root``); each member's
    stray processes too when a ``strays`` finder is given.  ``runtime``: the CRI runtime's name (what it
    sets up differs: ``sharing.owns_uts``); each view carries it."""
    views = []
    for sb in facts.sandboxes if sandboxes is None else sandboxes:
        st = facts.sb_statuses.get(sb.id)
        if st is None:  # removed while we looked
            continue
        views.append(_pod_view(proc, cache, sb, st, facts.containers.get(sb.id, []), facts.statuses, node, cgroup2, node_ns,
                               strays, host_root, runtime))
    return views


def _pod_view(proc: ProcFS, cache: PidCache, sb: Any, st: Any, containers: list[Any], statuses: dict[str, Any], node: str,
              cgroup2: bool, node_ns: Mapping[str, NamespaceId], strays: Finder | None = None,
              host_root: str | None = None, runtime: str = "") -> PodView:
    status = st.status
    labels = dict(sb.labels)
    meta = sb.metadata
    opts = status.linux.namespaces.options
    options = {
        "network": cri_info.MODES.get(opts.network, "POD"),
        "pid": cri_info.MODES.get(opts.pid, "POD"),
        "ipc": cri_info.MODES.get(opts.ipc, "POD"),
        "userns": cri_info.MODES.get(opts.userns_options.mode, "POD") if opts.HasField("userns_options") else "NODE",
    }
    userns = opts.userns_options  # what kubelet asked for a hostUsers: false pod: mode POD and one range each
    uid_mappings = tuple(IdRange(m.container_id, m.host_id, m.length) for m in userns.uids)
    gid_mappings = tuple(IdRange(m.container_id, m.host_id, m.length) for m in userns.gids)
    info = PodInfo(
        namespace=labels.get(L_NAMESPACE, meta.namespace),
        name=labels.get(L_NAME, meta.name),
        uid=labels.get(L_UID, meta.uid),
        sandbox_id=sb.id,
        node=node,
        state="ready" if sb.state == 0 else "notready",
        created_at=sb.created_at,
        options=options,
        labels=labels,
        uid_mappings=uid_mappings,
        gid_mappings=gid_mappings,
    )
    sandbox, sb_vi = _member(proc, cache, sb.id, info.name, SANDBOX, info.state, st, sb.state == 0, created_at=sb.created_at)
    sandbox = _with_pinned(proc, sandbox, sb_vi, host_root)
    raw = []
    for c in containers:
        cs = statuses.get(c.id)
        s = cs.status if cs is not None else None
        state = _CONTAINER_STATES.get(c.state, "unknown")
        m, vi = _member(
            proc, cache, c.id, c.labels.get(L_CONTAINER, c.metadata.name), APP, state, cs, c.state == 1,
            attempt=c.metadata.attempt, created_at=c.created_at,
            finished_at=s.finished_at if s is not None else 0, image=c.image.image,
        )
        raw.append((m, vi, s.started_at if s is not None else 0))
    members, notes = assign_roles(sandbox, raw, options)
    requested = (uid_mappings, gid_mappings)
    facts = sharing.node_of(members, cgroup2, privileged_ids(raw), runtime)
    verdicts = sharing.verdicts(members, options, node_ns, facts, requested)
    if sharing.sandbox_apart(members, node_ns):
        notes.append(sharing.SANDBOX_APART)
    if sandbox.pinned:
        notes.append(sharing.pinned_note(sandbox))
    if strays is not None:
        members, unseen = strays.pod(members)
        notes.extend(unseen)
    return PodView(info, members, verdicts, dict(node_ns), notes=tuple(notes), runtime=runtime)


def privileged_ids(raw: list[tuple[Member, Any, int]]) -> frozenset[str]:
    """The containers the runtime was asked to run privileged (from their verbose info)."""
    return frozenset(m.id for m, vi, _s in raw if vi is not None and vi.privileged)


def assign_roles(sandbox: Member, raw: list[tuple[Member, Any, int]], options: Mapping[str, str]) -> tuple[list[Member], list[str]]:
    """Roles without the API server.

    ephemeral: the runtime was asked for pid=TARGET (containerd echoes it), or its OCI spec joins
      another member's pid namespace while the pod's pid mode is CONTAINER (CRI-O echoes nothing: its spec
      names ``/proc/<target pid>/ns/pid``, or, since 1.37, a bind mount of it that CRI-O pinned, where the
      kernel tells which container made that namespace);
    init: exited, and finished no later than the first non-init container was created
      (kubelet runs init containers one by one, before any app container);
    app: the rest.  Native sidecars (init containers with restartPolicy Always) run alongside the
      app containers and so show as app; cluster mode reads roles from the pod spec.
    """
    notes = []
    by_pid = {m.pid: m for m, _vi, _s in raw if m.pid}
    if sandbox.pid:
        by_pid[sandbox.pid] = sandbox
    members = []
    for m, vi, _started in raw:
        target = ""
        if vi is not None and (vi.options.get("pid") == "TARGET" or vi.target_id):
            target = vi.target_id
        elif vi is not None and options.get("pid") == "CONTAINER":
            path = vi.spec_namespaces.get("pid", "")
            joined = cri_info.joined_pid(path)
            other = by_pid.get(joined) if joined else (_maker_of(m, raw) if path else None)
            if other is not None and other is not m and other.role != SANDBOX:
                target = other.id
        if target:
            m = m._replace(role=EPHEMERAL, target_id=target)
        members.append(m)
    first_app = min((m.created_at for m in members if m.role == APP and m.state != "exited"), default=None)
    if first_app is not None:
        out = []
        for m in members:
            if m.role == APP and m.state == "exited" and m.finished_at and m.finished_at <= first_app:
                m = m._replace(role=INIT)
            out.append(m)
        members = out
    if any(m.role == INIT for m in members):
        notes.append(INFERRED_INIT)
    if any(m.role == EPHEMERAL for m in members):
        notes.append(INFERRED_EPHEMERAL)
    members.sort(key=lambda m: (ROLE_ORDER[m.role], m.created_at))
    return [sandbox, *members], notes


def _maker_of(m: Member, raw: list[tuple[Member, Any, int]]) -> Member | None:
    """The container that made the pid namespace ``m`` joined by a pinned path: the one running in the same
    namespace whose own spec made a new one (no path).  None when ``m`` does not run, or none did."""
    ns = m.namespaces.get("pid")
    if ns is None:
        return None
    for other, vi, _s in raw:
        if other is not m and other.namespaces.get("pid") == ns and vi is not None and vi.spec_namespaces.get("pid") == "":
            return other
    return None


def find_member(pods: list[PodView], namespaces: Mapping[str, NamespaceId | None]) -> tuple[PodRef, ContainerRef] | None:
    """The pod member a process belongs to: the one whose mount namespace it is in (mnt is never shared)."""
    mnt = namespaces.get("mnt")
    if mnt is None:
        return None
    for pv in pods:
        for m in pv.members:
            if m.namespaces.get("mnt") == mnt:
                return pv.pod.ref, ContainerRef(m.name, m.id)
    return None


def select(pods: list[PodView], name: str, namespace: str) -> PodView:
    for pv in pods:
        if pv.pod.name == name and pv.pod.namespace == namespace:
            return pv
    raise NotFound(f"no pod named {name!r} in namespace {namespace!r} on this node; list them with nsinspect pods -A")
