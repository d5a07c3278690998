"""The engine: one object that answers every question about this node.

The CLI in local mode and the agent both call it; the agent client (``nsinspect.agent.client``)
offers the same methods over gRPC, so the CLI never knows which one it has.
"""

from __future__ import annotations

import os
import time
from typing import Any

from nsinspect.cri import endpoints
from nsinspect.errors import InvalidArgument, NotFound, Unavailable
from nsinspect.model import NS_TYPES, STATES, CheckView, Expectation, NodeView, PodsView, PodView, ProcessView
from nsinspect.node import discover
from nsinspect.node.procfs import ProcFS


def default_host_root(proc_root: str) -> str | None:
    """``/host/proc`` -> ``/host``: where the node's sockets and /sys are when we run in a pod."""
    norm = os.path.normpath(proc_root)
    if norm != "/proc" and os.path.basename(norm) == "proc":
        return os.path.dirname(norm)
    return None


# The agent re-reads a cached pod's namespaces at least this often, even when nothing changed.
# (Every request checks that each member's process is still the same one.)
VIEW_MAX_AGE = 10.0


class LocalEngine:
    """Answers from this node: /proc and the CRI runtime, in this process.

    ``cache_ttl`` > 0 (the agent): the runtime's view of every sandbox is kept as a snapshot
    (``pods.Facts``), confirmed with ListPodSandbox + ListContainers when older than ``cache_ttl``
    seconds; statuses are asked only for what changed.  Answers built from a snapshot are reused
    while it stays current, for at most VIEW_MAX_AGE, and only after checking that every member's
    process is still the same one (pid and start time), so a dead process's namespaces are never
    shown.  A request that finds a member's process gone, or a pod the snapshot does not know,
    waits for a fresh snapshot.  A snapshot is dropped as soon as the runtime's connection
    breaks, so a stopped runtime is reported, not papered over.
    """

    def __init__(
        self,
        proc_root: str = "/proc",
        runtime_endpoint: str | None = None,
        host_root: str | None = None,
        parallel: bool = True,
        node_name: str | None = None,
        cache_ttl: float = 0.0,
    ):
        self.proc = ProcFS(proc_root)
        self.runtime_endpoint = runtime_endpoint
        self.host_root = host_root if host_root is not None else default_host_root(proc_root)
        self.parallel = parallel
        self.node_name = node_name or os.environ.get("NODE_NAME") or os.uname().nodename
        self.cache_ttl = cache_ttl
        self._client: Any = None
        self._cache: Any = None
        self._facts: Any = None  # pods.Facts of every sandbox (cache_ttl > 0 only)
        self._runtime_name = ""
        self._cgroup2: bool | None = None
        self._node_ns: dict[str, Any] = {}  # read with each snapshot (cache_ttl > 0)
        self._views: dict[tuple[str, str, str], tuple[Any, list[PodView], float]] = {}  # GetPod answers of this snapshot
        self._all_views: tuple[Any, list[PodView], float] | None = None  # every ready pod, from this snapshot
        self._checked_at = 0.0  # when the runtime last confirmed the snapshot (monotonic)
        if cache_ttl:
            import threading

            self._connect_lock = threading.Lock()
            self._refresh_lock = threading.Lock()

    # -- the runtime ---------------------------------------------------------------------------
    def runtime(self) -> Any:
        client = self._client
        if client is not None:
            return client
        if not self.cache_ttl:
            return self._connect()
        with self._connect_lock:
            return self._client or self._connect()

    def _connect(self) -> Any:
        from nsinspect.cri.client import RuntimeClient
        from nsinspect.node.pods import PidCache

        client = RuntimeClient.connect(self.runtime_endpoint, self.host_root)
        self._cache = self._cache or PidCache()
        self._runtime_name = client.runtime
        if self.cache_ttl:
            client.on_disconnect(self._runtime_lost)
        self._client = client
        return client

    def _runtime_lost(self) -> None:
        """The runtime's connection broke (called from a gRPC thread): distrust the snapshot."""
        self._facts = None

    def drop_runtime(self) -> None:
        """Forget the connection (the runtime went away); the next call reconnects."""
        client, self._client, self._facts = self._client, None, None
        if client is not None:
            client.close()

    def _optional_runtime(self) -> Any:
        """The runtime if this node has one; None on a plain Linux host (node and pid work without it)."""
        if not endpoints.existing(self.runtime_endpoint, self.host_root):
            return None
        try:
            return self.runtime()
        except Unavailable:
            if self.runtime_endpoint:
                raise
            return None

    def _build(self, sandboxes: list[Any] | None, facts: Any = None, node_ns: Any = None) -> list[PodView]:
        """PodViews of these sandboxes: from ``facts`` when given (the agent), else asked for now."""
        from nsinspect.node import pods

        if node_ns is None:
            node_ns = self._node_ns if facts is not None and self._node_ns else discover.node_namespaces(self.proc)
        if self._cgroup2 is None:
            self._cgroup2 = pods.cgroup_v2(self.host_root)
        if facts is None:
            facts = pods.fetch(self.runtime(), self.proc, sandboxes or [], self._cache)
        views = pods.assemble(self.proc, self._cache, facts, self.node_name, self._cgroup2, node_ns, sandboxes)
        return [v._replace(runtime=self._runtime_name) for v in views]

    # -- the agent's snapshot ------------------------------------------------------------------
    def _snapshot(self, not_before: float | None = None) -> Any:
        """The runtime's view of every sandbox: no older than cache_ttl, and taken after
        ``not_before`` (a monotonic time) when given.  Concurrent callers share one refresh."""
        facts = self._facts
        if facts is not None and self._fresh(not_before):
            return facts
        if facts is not None and not_before is None and not self._refresh_lock.acquire(blocking=False):
            return facts  # someone is refreshing an expired snapshot: this one is at most a refresh older
        if not_before is not None or facts is None:
            self._refresh_lock.acquire()
        try:
            facts = self._facts
            if facts is not None and self._fresh(not_before):
                return facts
            return self._refresh()
        finally:
            self._refresh_lock.release()

    def _fresh(self, not_before: float | None) -> bool:
        if not_before is not None:
            return self._checked_at >= not_before
        return time.monotonic() - self._checked_at < self.cache_ttl

    def _refresh(self) -> Any:
        from nsinspect.node import pods

        taken = time.monotonic()
        for retry in (False, True):
            try:
                client = self.runtime()
                facts = pods.fetch(client, self.proc, client.list_sandboxes(), self._cache, self._facts, taken)
                break
            except Unavailable:
                # The old connection may be dead while the runtime is back (restarted): one fresh try.
                self.drop_runtime()
                if retry:
                    raise
        if facts.same(self._facts):
            facts = self._facts  # nothing changed: the views built from it stay good
        else:
            self._node_ns = discover.node_namespaces(self.proc)
            self._views.clear()
            self._facts = facts
        self._checked_at = taken
        return facts

    def _pod_views(self, namespace: str | None = None, node_ns: Any = None) -> list[PodView]:
        """Every ready pod (of one Kubernetes namespace) on this node."""
        from nsinspect.node.pods import L_NAMESPACE

        if not self.cache_ttl:
            labels = {L_NAMESPACE: namespace} if namespace else None
            return self._build(self.runtime().list_sandboxes(ready_only=True, labels=labels), None, node_ns)
        asked = time.monotonic()
        facts = self._snapshot()
        hit = self._all_views
        if not self._usable(hit, facts, asked):
            views = self._build([sb for sb in facts.sandboxes if sb.state == 0], facts)
            if not self._alive(views):  # a pod changed since the snapshot: look again
                facts = self._snapshot(not_before=asked)
                views = self._build([sb for sb in facts.sandboxes if sb.state == 0], facts)
            self._all_views = hit = (facts, views, time.monotonic())
        return [v for v in hit[1] if not namespace or v.pod.namespace == namespace]

    def _usable(self, hit: Any, facts: Any, now: float) -> bool:
        """A cached answer holds while its snapshot is the current one, its namespaces were read
        less than VIEW_MAX_AGE ago, and every member's process is still the same one."""
        return (
            hit is not None and hit[0] is facts and now - hit[2] < VIEW_MAX_AGE
            and self._alive(hit[1], settled=True)
        )

    def _alive(self, views: list[PodView], settled: bool = False) -> bool:
        """Is every member that the runtime says runs still the process we read?

        ``settled``: these views were accepted after a fresh look, so a running member without a
        readable process is how things are (hidden, exiting), not a sign of change."""
        for v in views:
            for m in v.members:
                if m.process is not None:
                    if not self.proc.is_alive(m.process.id):
                        return False
                elif m.state in ("running", "ready") and not settled:
                    return False
        return True

    # -- questions -----------------------------------------------------------------------------
    def node(self, types: tuple[str, ...] = NS_TYPES) -> NodeView:
        # Scan first: the scan forks workers, which must happen before gRPC starts its threads.
        view = discover.node_view(self.proc, types, parallel=self.parallel)._replace(node=self.node_name)
        if self._optional_runtime() is None:
            return view
        views = self._pod_views(node_ns=view.node_namespaces)
        return discover.attach_pods(view._replace(runtime=self._runtime_name), views)

    def process(self, pid: int) -> ProcessView:
        validate_pid(pid)
        view = discover.process_view(self.proc, pid)._replace(node=self.node_name)
        if self._optional_runtime() is None:
            return view
        from nsinspect.node.pods import find_member

        found = find_member(self._pod_views(node_ns=view.node_namespaces), view.namespaces)
        if found is None:
            return view
        return view._replace(pod=found[0], container=found[1])

    def pods(self, namespace: str | None = None) -> PodsView:
        if namespace:
            validate_name(namespace, "namespace")
        views = self._pod_views(namespace)
        views.sort(key=lambda v: (v.pod.namespace, v.pod.name))
        return PodsView(views, self.node_name, self._runtime_name)

    def pod(self, name: str, namespace: str, container: str | None = None, detail: bool = False, uid: str = "") -> PodView:
        validate_name(name, "pod name")
        validate_name(namespace, "namespace")
        if uid:
            validate_name(uid, "pod uid")
        if container is not None:
            validate_name(container, "container name")
        if self.cache_ttl:
            view = self._pod_from_snapshot(name, namespace, uid)
        else:
            view = self._pod_now(name, namespace, uid)
        view = only_container(view, container)
        if detail:
            # NPROCS needs every process.  Serial: gRPC's threads are running, so no fork now.
            mine = {(t, ns.ino) for m in view.members for t, ns in m.namespaces.items()}
            scan = discover.node_view(self.proc, parallel=False)
            view = view._replace(lsns=tuple(n for n in scan.namespaces if (n.type, n.id.ino) in mine))
        return view

    def _pod_now(self, name: str, namespace: str, uid: str) -> PodView:
        from nsinspect.node.pods import L_NAME, L_NAMESPACE, L_UID

        client = self.runtime()
        labels = {L_NAME: name, L_NAMESPACE: namespace}
        if uid:
            labels[L_UID] = uid
        sandboxes = client.list_sandboxes(labels=labels)
        if not sandboxes:
            elsewhere = sorted({sb.labels.get(L_NAMESPACE, "") for sb in client.list_sandboxes(labels={L_NAME: name})})
            raise _not_found(name, namespace, uid, elsewhere)
        return self._build([_choose(sandboxes)])[0]

    def _pod_from_snapshot(self, name: str, namespace: str, uid: str) -> PodView:
        asked = time.monotonic()
        facts = self._snapshot()
        key = (namespace, name, uid)
        hit = self._views.get(key)
        # The answer built from this snapshot still holds while each member's process is the same
        # one (pid and start time: one read of /proc/<pid>/stat each).  Its namespaces were read
        # when this snapshot was taken, at most cache_ttl ago.
        if self._usable(hit, facts, asked):
            return hit[1][0]
        views: list[PodView] = []
        for attempt in (0, 1):
            sandboxes = _with_uid(facts.index.get((namespace, name), []), uid)
            views = self._build([_choose(sandboxes)], facts) if sandboxes else []
            # A member the snapshot says runs but whose process is gone: the pod changed
            # (deleted, restarted).  Ask again rather than answer from the past.
            if views and (attempt or not any(m.state in ("running", "ready") and not m.running for m in views[0].members)):
                if facts is self._facts:
                    self._views[key] = (facts, views[:1], time.monotonic())
                return views[0]
            if attempt == 0:
                facts = self._snapshot(not_before=asked)
        elsewhere = sorted({ns for (ns, n) in facts.index if n == name})
        raise _not_found(name, namespace, uid, elsewhere)

    def check(self, name: str, namespace: str, expects: list[tuple[str, str]]) -> CheckView:
        view = self.pod(name, namespace)
        return evaluate(view, expects)

    def close(self) -> None:
        self.drop_runtime()
        self.proc.close()


def only_container(view: PodView, container: str | None) -> PodView:
    """The pod with only this container (and the sandbox); NotFound naming the ones it has."""
    if container is None:
        return view
    if not any(m.name == container and m.role != "sandbox" for m in view.members):
        names = ", ".join(m.name for m in view.members if m.role != "sandbox") or "none"
        raise NotFound(f"pod {view.pod.namespace}/{view.pod.name} has no container {container!r} (its containers: {names})")
    return view._replace(members=[m for m in view.members if m.role == "sandbox" or m.name == container])


def _choose(sandboxes: list[Any]) -> Any:
    """The ready sandbox, else the newest (a pod being restarted has an old one that is not ready)."""
    return max(sandboxes, key=lambda sb: (sb.state == 0, sb.created_at))


def _with_uid(sandboxes: list[Any], uid: str) -> list[Any]:
    from nsinspect.node.pods import L_UID

    return [sb for sb in sandboxes if sb.labels.get(L_UID, sb.metadata.uid) == uid] if uid else sandboxes


def _not_found(name: str, namespace: str, uid: str, elsewhere: list[str]) -> NotFound:
    if uid:
        return NotFound(f"pod {namespace}/{name} with uid {uid} is not on this node (deleted or recreated); look it up again")
    others = [ns for ns in elsewhere if ns != namespace]
    hint = f" (there is one in namespace {', '.join(others)}: add -n {others[0]})" if others else ""
    return NotFound(f"no pod named {name!r} in namespace {namespace!r} on this node{hint}; list them with nsinspect pods -A")


_HINTS = {
    ("pid", "shared"): "set spec.shareProcessNamespace: true",
    ("pid", "host"): "set spec.hostPID: true",
    ("net", "host"): "set spec.hostNetwork: true",
    ("uts", "host"): "set spec.hostNetwork: true (uts follows the network)",
    ("ipc", "host"): "set spec.hostIPC: true",
    ("user", "shared"): "set spec.hostUsers: false (needs user-namespace support in the runtime)",
    ("user", "host"): "remove spec.hostUsers: false",
}


def parse_expectations(raw: tuple[str, ...]) -> list[tuple[str, str]]:
    out = []
    for item in raw:
        t, sep, state = item.partition("=")
        t, state = t.strip().lower(), state.strip().lower()
        if not sep or t not in NS_TYPES or state not in STATES:
            raise InvalidArgument(
                f"bad expectation {item!r}; write TYPE=STATE with TYPE one of {', '.join(NS_TYPES)} "
                f"and STATE one of {', '.join(STATES)} (e.g. --expect pid=shared)"
            )
        out.append((t, state))
    if not out:
        raise InvalidArgument("nothing to check; add at least one --expect TYPE=STATE (e.g. --expect pid=shared)")
    return out


def evaluate(view: PodView, expects: list[tuple[str, str]]) -> CheckView:
    results = []
    for t, want in expects:
        actual = view.sharing[t].actual
        evidence = tuple((m.name, m.role, m.namespaces[t].ino) for m in view.members if m.running and t in m.namespaces)
        hint = "" if actual == want else _HINTS.get((t, want), view.sharing[t].reason)
        results.append(Expectation(t, want, actual, actual == want, evidence, hint))
    return CheckView(view, tuple(results))


def validate_name(value: str, what: str) -> None:
    """Kubernetes names: non-empty, at most 253 characters, no control characters."""
    if not value or len(value) > 253 or not value.isprintable() or "/" in value:
        raise InvalidArgument(f"invalid {what} {value[:60]!r}; use a Kubernetes name (at most 253 characters)")


MAX_PID = (1 << 31) - 1  # pid_t; a larger number is no pid at all (a smaller absent one is "not found")


def validate_pid(pid: int) -> None:
    if not isinstance(pid, int) or pid <= 0 or pid > MAX_PID:
        raise InvalidArgument(f"invalid pid {pid}; a pid is a number from 1 to {MAX_PID}")
