"""The engine: one object that answers every question about this node.

The CLI in local mode and the agent both call it; the agent client (``nsinspect.client``)
offers the same methods over gRPC, so the CLI never knows which one it has.
"""

from __future__ import annotations

import os
from typing import Any

from nsinspect import discover
from nsinspect.cri import endpoints
from nsinspect.errors import InvalidArgument, NotFound, Unavailable
from nsinspect.model import NS_TYPES, STATES, CheckView, Expectation, NodeView, PodsView, PodView, ProcessView
from nsinspect.procfs import ProcFS


def default_host_root(proc_root: str) -> str | None:
    """``/host/proc`` -> ``/host``: where the node's sockets and /sys are when we run in a pod."""
    norm = os.path.normpath(proc_root)
    if norm != "/proc" and os.path.basename(norm) == "proc":
        return os.path.dirname(norm)
    return None


class LocalEngine:
    def __init__(
        self,
        proc_root: str = "/proc",
        runtime_endpoint: str | None = None,
        host_root: str | None = None,
        parallel: bool = True,
        node_name: str | None = None,
    ):
        self.proc = ProcFS(proc_root)
        self.runtime_endpoint = runtime_endpoint
        self.host_root = host_root if host_root is not None else default_host_root(proc_root)
        self.parallel = parallel
        self.node_name = node_name or os.environ.get("NODE_NAME") or os.uname().nodename
        self._client: Any = None
        self._cache: Any = None

    # -- the runtime ---------------------------------------------------------------------------
    def runtime(self) -> Any:
        if self._client is None:
            from nsinspect.cri.client import RuntimeClient
            from nsinspect.pods import PidCache

            self._client = RuntimeClient.connect(self.runtime_endpoint, self.host_root)
            self._cache = self._cache or PidCache()
        return self._client

    def drop_runtime(self) -> None:
        """Forget the connection (the runtime went away); the next call reconnects."""
        if self._client is not None:
            self._client.close()
            self._client = None

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

    def _pods(self, sandboxes: list[Any], node_ns: Any = None) -> list[PodView]:
        from nsinspect import pods

        if node_ns is None:
            node_ns = discover.node_namespaces(self.proc)
        return pods.build(self.runtime(), self.proc, sandboxes, self._cache, self.node_name, pods.cgroup_v2(self.host_root), node_ns)

    # -- questions -----------------------------------------------------------------------------
    def node(self, types: tuple[str, ...] = NS_TYPES) -> NodeView:
        # Scan first: the scan forks workers, which must happen before gRPC starts its threads.
        view = discover.node_view(self.proc, types, parallel=self.parallel)
        if self._optional_runtime() is None:
            return view
        return discover.attach_pods(view, self._pods(self.runtime().list_sandboxes(ready_only=True), view.node_namespaces))

    def process(self, pid: int) -> ProcessView:
        view = discover.process_view(self.proc, pid)
        if self._optional_runtime() is None:
            return view
        from nsinspect.pods import find_member

        found = find_member(self._pods(self.runtime().list_sandboxes(ready_only=True), view.node_namespaces), view.namespaces)
        if found is None:
            return view
        return view._replace(pod=found[0], container=found[1])

    def pods(self, namespace: str | None = None) -> PodsView:
        from nsinspect.pods import L_NAMESPACE

        client = self.runtime()
        labels = {L_NAMESPACE: namespace} if namespace else None
        views = self._pods(client.list_sandboxes(ready_only=True, labels=labels))
        views.sort(key=lambda v: (v.pod.namespace, v.pod.name))
        return PodsView(views, self.node_name, client.runtime)

    def pod(self, name: str, namespace: str, container: str | None = None, detail: bool = False) -> PodView:
        from nsinspect.pods import L_NAME, L_NAMESPACE

        validate_name(name, "pod name")
        validate_name(namespace, "namespace")
        client = self.runtime()
        sandboxes = client.list_sandboxes(labels={L_NAME: name, L_NAMESPACE: namespace})
        if not sandboxes:
            elsewhere = sorted({sb.labels.get(L_NAMESPACE, "") for sb in client.list_sandboxes(labels={L_NAME: name})})
            hint = f" (there is one in namespace {', '.join(elsewhere)}: add -n {elsewhere[0]})" if elsewhere else ""
            raise NotFound(f"no pod named {name!r} in namespace {namespace!r} on this node{hint}; list them with nsinspect pods -A")
        # The ready sandbox, else the newest (a pod being restarted has an old one that is not ready).
        sandboxes.sort(key=lambda sb: (sb.state == 0, sb.created_at), reverse=True)
        view = self._pods(sandboxes[:1])[0]
        view = view._replace(runtime=client.runtime)
        if container is not None:
            if not any(m.name == container and m.role != "sandbox" for m in view.members):
                names = ", ".join(m.name for m in view.members if m.role != "sandbox") or "none"
                raise NotFound(f"pod {namespace}/{name} has no container {container!r} (its containers: {names})")
            view = view._replace(members=[m for m in view.members if m.role == "sandbox" or m.name == container])
        if detail:
            # NPROCS needs every process.  Serial: gRPC's threads are running, so no fork now.
            mine = {(t, ns.ino) for m in view.members for t, ns in m.namespaces.items()}
            scan = discover.node_view(self.proc, parallel=False)
            view = view._replace(lsns=tuple(n for n in scan.namespaces if (n.type, n.id.ino) in mine))
        return view

    def check(self, name: str, namespace: str, expects: list[tuple[str, str]]) -> CheckView:
        view = self.pod(name, namespace)
        return evaluate(view, expects)

    def close(self) -> None:
        self.drop_runtime()
        self.proc.close()


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
    if not value or len(value) > 253 or any(ord(c) < 32 or c in "/" for c in value):
        raise InvalidArgument(f"invalid {what} {value[:60]!r}; use a Kubernetes name (at most 253 characters)")
