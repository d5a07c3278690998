"""This node's front door: ``LocalEngine`` answers from /proc and the CRI runtime, in this process.

It implements ``nsinspect.engine.Engine`` for ``nsinspect`` on a node and is what the agent serves;
the agent wraps it in ``node.cached.CachedEngine`` (a snapshot of the runtime's answers), the way
psutil's ``oneshot`` is an opt-in layer rather than a flag through every call.
"""

from __future__ import annotations

import os
from typing import Any

from nsinspect import sharing
from nsinspect.cri import endpoints
from nsinspect.engine import DEFAULT_NAMESPACE, Progress, evaluate, this_node_only, validate_name, validate_pid
from nsinspect.errors import NotFound, Unavailable
from nsinspect.model import NS_TYPES, CheckView, NamespaceId, NodeView, PodsView, PodView, ProcessView
from nsinspect.node import discover
from nsinspect.node.procfs import ProcFS


def default_host_root(proc_root: str) -> str | None:
    """``/host/proc`` -> ``/host``: where the node's sockets and /sys are when we run in a pod."""
    norm = os.path.normpath(proc_root)
    if norm != "/proc" and os.path.basename(norm) == "proc":
        return os.path.dirname(norm)
    return None


class LocalEngine:
    """Answers from this node: /proc and the CRI runtime, asked afresh on every call."""

    def __init__(
        self,
        proc_root: str = "/proc",
        runtime_endpoint: str | None = None,
        host_root: str | None = None,
        parallel: bool = True,
        node_name: str | None = None,
    ):
        from nsinspect.node.pods import PidCache

        self.proc = ProcFS(proc_root)
        self.runtime_endpoint = runtime_endpoint
        self.host_root = host_root if host_root is not None else default_host_root(proc_root)
        self.parallel = parallel
        self.node_name = node_name or os.environ.get("NODE_NAME") or os.uname().nodename
        self._client: Any = None  # cri.client.RuntimeClient, once connected
        self._cache = PidCache()
        self._runtime_name = ""
        self._cgroup2: bool | None = None

    # -- the runtime ---------------------------------------------------------------------------
    def runtime(self) -> Any:
        """The connected runtime client (connecting on first use)."""
        return self._client if self._client is not None else self._connect()

    def _connect(self) -> Any:
        from nsinspect.cri.client import RuntimeClient

        client = RuntimeClient.connect(self.runtime_endpoint, self.host_root)
        self._runtime_name = client.runtime
        self._client = client
        return client

    def drop_runtime(self) -> None:
        """Forget the connection (the runtime went away); the next call reconnects."""
        client, self._client = self._client, None
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

    def _build(self, sandboxes: list[Any], facts: Any = None, node_ns: dict[str, NamespaceId] | None = None) -> list[PodView]:
        """PodViews of these sandboxes: from ``facts`` when given (a snapshot), else asked for now."""
        from nsinspect.node import pods, strays

        if node_ns is None:
            node_ns = discover.node_namespaces(self.proc)
        if self._cgroup2 is None:
            self._cgroup2 = pods.cgroup_v2(self.host_root)
        if facts is None:
            facts = pods.fetch(self.runtime(), self.proc, sandboxes, self._cache)
        finder = strays.Finder(self.proc, strays.cgroupfs_root(self.host_root), self._cgroup2)
        return pods.assemble(self.proc, self._cache, facts, self.node_name, self._cgroup2, node_ns, sandboxes, finder,
                             self.host_root, self._runtime_name)

    # -- what the snapshot layer replaces --------------------------------------------------------
    def _pod_views(self, namespace: str | None = None, node_ns: dict[str, NamespaceId] | None = None) -> list[PodView]:
        """Every ready pod (of one Kubernetes namespace) on this node."""
        from nsinspect.node.pods import L_NAMESPACE

        labels = {L_NAMESPACE: namespace} if namespace else None
        return self._build(self.runtime().list_sandboxes(ready_only=True, labels=labels), None, node_ns)

    def _find_pod(self, name: str, namespace: str, uid: str) -> PodView:
        from nsinspect.node.pods import L_NAME, L_NAMESPACE, L_UID

        client = self.runtime()
        labels = {L_NAME: name, L_NAMESPACE: namespace}
        if uid:
            labels[L_UID] = uid
        sandboxes = client.list_sandboxes(labels=labels)
        if not sandboxes:
            elsewhere = sorted({sb.labels.get(L_NAMESPACE, "") for sb in client.list_sandboxes(labels={L_NAME: name})})
            raise not_found(name, namespace, uid, elsewhere)
        return self._build([choose(sandboxes)])[0]

    # -- the Engine's questions ------------------------------------------------------------------
    def node(self, types: tuple[str, ...] = NS_TYPES, node: str | None = None) -> NodeView:
        this_node_only(node)
        # Scan first: the scan forks workers, which must happen before gRPC starts its threads.
        view = self._node_view(types)._replace(node=self.node_name)
        try:  # a node's namespaces need no runtime (lsns needs none): without one, no row names a pod, and says why
            if self._optional_runtime() is None:
                return view
            views = self._pod_views(node_ns=view.node_namespaces)
        except Unavailable as e:
            return view._replace(runtime_error=str(e))
        return discover.attach_pods(view._replace(runtime=self._runtime_name), views)

    def process(self, pid: int, node: str | None = None) -> ProcessView:
        this_node_only(node)
        validate_pid(pid)
        view = discover.process_view(self.proc, pid)._replace(node=self.node_name)
        from nsinspect.node.pods import find_member

        try:
            if self._optional_runtime() is None:
                return view
            found = find_member(self._pod_views(node_ns=view.node_namespaces), view.namespaces)
        except Unavailable as e:
            return view._replace(runtime_error=str(e))
        if found is None:
            return view
        return view._replace(pod=found[0], container=found[1])

    def pods(self, namespace: str | None = None, all_namespaces: bool = False, progress: Progress | None = None) -> PodsView:
        """The pods of this node: every namespace unless ``namespace`` names one."""
        if all_namespaces:
            namespace = None
        if namespace is not None:
            validate_name(namespace, "namespace")
        views = self._pod_views(namespace)
        views.sort(key=lambda v: (v.pod.namespace, v.pod.name))
        return PodsView(views, self.node_name, self._runtime_name)

    def pod(self, name: str, namespace: str | None = None, container: str | None = None, detail: bool = False, uid: str = "",
            details: bool = False) -> PodView:
        namespace = DEFAULT_NAMESPACE if namespace is None else namespace
        validate_name(name, "pod name")
        validate_name(namespace, "namespace")
        if uid:
            validate_name(uid, "pod uid")
        if container is not None:
            validate_name(container, "container name")
        view = only_container(self._find_pod(name, namespace, uid), container)
        if detail:
            # NPROCS needs every process.  Serial: an agent's gRPC threads may be running, so no fork now.
            mine = {(t, ns.ino) for m in view.members for t, ns in m.namespaces.items()}
            scan = discover.node_view(self.proc, parallel=False)
            view = view._replace(lsns=tuple(n for n in scan.namespaces if (n.type, n.id.ino) in mine))
        if details:
            from nsinspect.node.evidence import gather

            view = gather(self.proc, view, self.host_root)
            view = view._replace(sharing=sharing.with_evidence(view.sharing, view.members, (view.pod.uid_mappings, view.pod.gid_mappings),
                                                               view.node_namespaces))
        return view

    def _node_view(self, types: tuple[str, ...]) -> NodeView:
        """Every namespace of the node, read now (the agent's engine keeps what it read: ``CachedEngine``)."""
        return discover.node_view(self.proc, types, parallel=self.parallel)

    def check(self, name: str, namespace: str | None, expects: list[tuple[str, str]]) -> CheckView:
        return evaluate(self.pod(name, namespace), expects)

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


def choose(sandboxes: list[Any]) -> Any:
    """The ready sandbox, else the newest (a pod being restarted has an old one that is not ready)."""
    return max(sandboxes, key=lambda sb: (sb.state == 0, sb.created_at))


def not_found(name: str, namespace: str, uid: str, elsewhere: list[str]) -> NotFound:
    if uid:
        return NotFound(f"pod {namespace}/{name} with uid {uid} is not on this node (deleted or recreated); look it up again")
    others = [ns for ns in elsewhere if ns != namespace]
    hint = f" (there is one in namespace {', '.join(others)}: add -n {others[0]})" if others else ""
    return NotFound(f"no pod named {name!r} in namespace {namespace!r} on this node{hint}; list them with nsinspect pods -A")
