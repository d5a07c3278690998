"""Cluster mode: the engine's questions, answered by the agent on the pod's node.

pod -> node -> agent: read the pod from the API server, find the nsinspect agent pod on its
``spec.nodeName`` (label + field selector), reach the agent's loopback port through
``pods/portforward`` (``Tunnel``), ask ``GetPod`` by uid, and lay the pod's spec over the
answer (``declared.compare``).  ``pods`` fans out to every node that runs a listed pod, with
bounded concurrency; a node that cannot be asked is reported, not fatal.

An ``nsinspect.engine.Engine``, like ``LocalEngine`` and ``AgentEngine``: the CLI asks all three alike.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from nsinspect.agent import AGENT_PORT
from nsinspect.cluster.spec import compare, spec_of
from nsinspect.engine import Progress, evaluate, validate_name, validate_pid
from nsinspect.errors import InvalidArgument, NotFound, NsinspectError, Unavailable
from nsinspect.model import (
    NS_TYPES,
    CheckView,
    ClusterPodsView,
    NodeResult,
    NodeView,
    PodInfo,
    PodView,
    ProcessView,
    Verdict,
)
from nsinspect.node.engine import only_container

if TYPE_CHECKING:
    from nsinspect.agent.client import AgentEngine

AGENT_NAMESPACE = "nsinspect-system"
AGENT_SELECTOR = "app.kubernetes.io/name=nsinspect-agent"
CONCURRENCY = 16  # nodes asked at once by `pods`
DEPLOY_HINT = "deploy it with: nsinspect deploy --apply (or nsinspect deploy | kubectl apply -f -)"


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or _meta(pod).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def agent_port(pod: dict[str, Any]) -> int:
    """The agent's port: its container port named ``grpc``, else the default."""
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == "grpc" and p.get("containerPort"):
                return int(p["containerPort"])
    return AGENT_PORT


class ClusterEngine:
    """Answers from the cluster: the API server for specs and placement, each node's agent for the rest."""

    def __init__(self, kube: Any, agent_namespace: str = AGENT_NAMESPACE, concurrency: int = CONCURRENCY,
                 call_timeout: float = 15.0):
        self.kube = kube
        self.agent_namespace = agent_namespace
        self.concurrency = concurrency
        self.call_timeout = call_timeout

    @property
    def namespace(self) -> str:
        """The context's namespace: the default for -n."""
        namespace: str = self.kube.namespace
        return namespace

    # -- finding and reaching agents -----------------------------------------------------------
    def _agents(self, node: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Agent pods by node name (of one node, or of all)."""
        fields = f"spec.nodeName={node}" if node else ""
        out: dict[str, list[dict[str, Any]]] = {}
        for p in self.kube.list_pods(self.agent_namespace, labels=AGENT_SELECTOR, fields=fields):
            out.setdefault((p.get("spec") or {}).get("nodeName") or "", []).append(p)
        return out

    def _pick(self, node: str, candidates: list[dict[str, Any]]) -> dict[str, Any]:
        ready = [p for p in candidates if _ready(p)]
        if ready:
            return max(ready, key=lambda p: _meta(p).get("creationTimestamp") or "")
        if candidates:
            p = candidates[0]
            phase = (p.get("status") or {}).get("phase") or "unknown"
            raise Unavailable(
                f"the nsinspect agent on node {node} (pod {self.agent_namespace}/{_meta(p).get('name')}) is not ready "
                f"(phase {phase}); check it with: kubectl -n {self.agent_namespace} describe pod {_meta(p).get('name')}"
            )
        raise Unavailable(f"no nsinspect agent runs on node {node} (no pod with {AGENT_SELECTOR} in namespace "
                          f"{self.agent_namespace}); {DEPLOY_HINT}, or pass --agent-namespace")

    @contextmanager
    def _session(self, node: str, agent: dict[str, Any]) -> Iterator[AgentEngine]:
        """An AgentEngine talking to ``agent`` through a port-forward; errors say which node and pod."""
        from nsinspect.agent.client import AgentEngine, AgentUnreachable
        from nsinspect.cluster.tunnel import Tunnel, summary

        name, port = _meta(agent).get("name", ""), agent_port(agent)
        where = f"the nsinspect agent on node {node} (pod {self.agent_namespace}/{name})"

        def open_ws() -> Any:
            return self.kube.portforward(self.agent_namespace, name, port)

        tunnel = Tunnel(open_ws, port, first=open_ws())
        engine = AgentEngine(tunnel.address, timeout=self.call_timeout)
        try:
            yield engine
        except AgentUnreachable as e:
            if tunnel.failure is not None:
                raise tunnel.failure from None
            said = summary(tunnel.error)
            if said:
                raise Unavailable(f"{where} did not accept the connection ({said}); check that it runs: "
                                  f"kubectl -n {self.agent_namespace} logs {name}") from None
            raise Unavailable(f"{where} stopped answering ({e.reason}); check it with: "
                              f"kubectl -n {self.agent_namespace} logs {name}") from None
        finally:
            engine.close()
            tunnel.close()

    def _on_node(self, node: str) -> AbstractContextManager[AgentEngine]:
        return self._session(node, self._pick(node, self._agents(node).get(node, [])))

    # -- the engine's questions ----------------------------------------------------------------
    def pod(self, name: str, namespace: str | None = None, container: str | None = None, detail: bool = False, uid: str = "",
            details: bool = False) -> PodView:
        namespace = self.namespace if namespace is None else namespace
        validate_name(name, "pod name")
        validate_name(namespace, "namespace")
        if container is not None:
            validate_name(container, "container name")
        try:
            obj = self.kube.get_pod(namespace, name)
        except NotFound:
            raise NotFound(f"no pod named {name!r} in namespace {namespace!r}; list them with: kubectl get pods -n {namespace}") from None
        spec = spec_of(obj)
        uid = _meta(obj).get("uid") or uid
        if not spec.node:
            raise Unavailable(f"pod {namespace}/{name} is not on a node yet (phase {spec.phase or 'unknown'}); wait for it to be scheduled")
        with self._on_node(spec.node) as agent:
            try:
                view = agent.pod(name, namespace, None, detail, uid=uid, details=details)
            except NotFound:
                raise NotFound(
                    f"pod {namespace}/{name} is on node {spec.node}, but its runtime has no sandbox for it "
                    f"(phase {spec.phase or 'unknown'}): it is starting or terminating; ask again in a moment"
                ) from None
        view = compare(view, spec)
        if view.pod.node and view.pod.node != spec.node:
            view = view._replace(notes=(*view.notes, f"the agent calls its node {view.pod.node!r}; the API server says {spec.node!r}"))
        return only_container(view, container)

    def check(self, name: str, namespace: str | None, expects: list[tuple[str, str]]) -> CheckView:
        return evaluate(self.pod(name, namespace), expects)

    def pods(self, namespace: str | None = None, all_namespaces: bool = False, progress: Progress | None = None) -> ClusterPodsView:
        """The pods of the context's namespace (or ``namespace``, or every one), asked of their nodes' agents."""
        namespace = None if all_namespaces else (self.namespace if namespace is None else namespace)
        if namespace is not None:
            validate_name(namespace, "namespace")
        listed = self.kube.list_pods(namespace)
        by_node: dict[str, list[dict[str, Any]]] = {}
        for p in listed:
            by_node.setdefault((p.get("spec") or {}).get("nodeName") or "", []).append(p)
        # Only nodes with a pod that can have a sandbox are asked (not Pending-unscheduled, not finished).
        nodes = sorted(n for n, ps in by_node.items() if n and any(_live(p) for p in ps))
        agents = self._agents() if nodes else {}
        answers: dict[str, Any] = {}
        results: dict[str, NodeResult] = {}

        def ask(node: str) -> tuple[NodeResult, Any]:
            started = time.monotonic()
            count = len(by_node[node])
            try:
                with self._session(node, self._pick(node, agents.get(node, []))) as agent:
                    answer = agent.pods(namespace)
                return NodeResult(node, answer.runtime, count, "", time.monotonic() - started), answer
            except NsinspectError as e:
                return NodeResult(node, "", count, str(e), time.monotonic() - started), None

        if nodes:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(nodes)), thread_name_prefix="nsinspect-node") as pool:
                futures = [pool.submit(ask, n) for n in nodes]
                for done, fut in enumerate(as_completed(futures), 1):
                    result, answer = fut.result()
                    results[result.node], answers[result.node] = result, answer
                    if progress is not None:
                        progress(done, len(nodes), result.node)
        views = []
        for node in sorted(by_node):
            answer = answers.get(node)
            mine = {v.pod.uid: v for v in answer.pods} if answer is not None else {}
            for p in by_node[node]:
                views.append(self._join(p, node, mine, answer is not None, results.get(node)))
        views.sort(key=lambda v: (v.pod.namespace, v.pod.name))
        node_list = [results[n] for n in nodes]
        return ClusterPodsView(views, node_list, namespace)

    def _join(self, obj: dict[str, Any], node: str, found: dict[str, PodView], answered: bool,
              result: NodeResult | None) -> PodView:
        spec = spec_of(obj)
        meta = _meta(obj)
        uid = meta.get("uid", "")
        view = found.get(uid)
        if view is not None:
            # The API server names the pod (the runtime's labels say the same on a sane node).
            info = view.pod._replace(namespace=meta.get("namespace", ""), name=meta.get("name", ""), node=node)
            return compare(view._replace(pod=info), spec)
        info = PodInfo(meta.get("namespace", ""), meta.get("name", ""), uid, "", node, state=spec.phase)
        empty = PodView(info, [], {t: Verdict(None, None) for t in NS_TYPES}, {}, spec=spec)
        if not node:
            why = "not scheduled on a node yet"
        elif not _live(obj):
            why = f"{spec.phase.lower() or 'finished'}: no sandbox to inspect"
        elif answered:
            why = f"node {node} has no ready sandbox for it (starting or terminating)"
        else:
            why = f"node {node} did not answer" + (f": {result.error}" if result and result.error else "")
        return empty._replace(notes=(why,))

    def node(self, types: tuple[str, ...] = NS_TYPES, node: str | None = None) -> NodeView:
        if not node:
            raise InvalidArgument("in cluster mode, name the node: nsinspect node --node NAME (or --local for this machine)")
        validate_name(node, "node name")
        with self._on_node(node) as agent:
            return agent.node(types)

    def process(self, pid: int, node: str | None = None) -> ProcessView:
        if not node:
            raise InvalidArgument("in cluster mode, name the node: nsinspect pid PID --node NAME (or --local for this machine)")
        validate_name(node, "node name")
        validate_pid(pid)
        with self._on_node(node) as agent:
            return agent.process(pid)

    def close(self) -> None:
        self.kube.close()


def _live(pod: dict[str, Any]) -> bool:
    """Can this pod have a sandbox on its node (scheduled, not finished)?"""
    return bool((pod.get("spec") or {}).get("nodeName")) and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")

