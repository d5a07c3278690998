"""The one contract every front door implements: ``Engine``.

Three engines answer the same questions with the same model: ``node.engine.LocalEngine`` (this
node, in this process), ``agent.client.AgentEngine`` (a node's agent over gRPC) and
``cluster.engine.ClusterEngine`` (the pod's node found through the Kubernetes API).  The CLI asks
an ``Engine`` and never learns which one it has.  Also here: what every engine validates the same
way (names, pids) and how a ``check`` is judged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from nsinspect import sharing
from nsinspect.errors import InvalidArgument
from nsinspect.limits import PID_MAX_LIMIT
from nsinspect.model import NS_TYPES, STATES, CheckView, ClusterPodsView, Expectation, NodeView, PodsView, PodView, ProcessView

DEFAULT_NAMESPACE = "default"  # a pod's namespace when nothing names one (on a node; a cluster uses its context's)

Progress = Callable[[int, int, str], None]  # (nodes done, nodes in all, the node just done)


class Engine(Protocol):
    """What nsinspect can be asked.  Errors are ``nsinspect.errors`` classes, never transport errors."""

    def node(self, types: tuple[str, ...] = NS_TYPES, node: str | None = None) -> NodeView:
        """Every namespace of a node (``node``: which node of the cluster; None: the engine's own)."""
        ...

    def process(self, pid: int, node: str | None = None) -> ProcessView:
        """One process of a node: its namespaces, and its pod."""
        ...

    def pods(self, namespace: str | None = None, all_namespaces: bool = False, progress: Progress | None = None) -> PodsView | ClusterPodsView:
        """One row per pod.  ``namespace`` None: a node lists every namespace, a cluster its context's
        (``all_namespaces`` asks for every one).  ``progress`` hears of each node asked (cluster)."""
        ...

    def pod(self, name: str, namespace: str | None = None, container: str | None = None, detail: bool = False, uid: str = "",
            details: bool = False) -> PodView:
        """One pod (``namespace`` None: the engine's default), optionally one ``container`` of it.
        ``detail``: its namespaces as lsns rows (a full scan); ``details``: each running member's evidence
        (``Member.details``) and the verdicts' evidence sentences made from it."""
        ...

    def check(self, name: str, namespace: str | None, expects: list[tuple[str, str]]) -> CheckView:
        """A pod judged against ``expects`` ((type, state) pairs)."""
        ...

    def close(self) -> None: ...


def this_node_only(node: str | None) -> None:
    """For engines that answer about one node: naming another is a usage error."""
    if node:
        raise InvalidArgument("--node asks the cluster; drop --agent/--local (or drop --node to read this machine)")


def parse_expectations(raw: tuple[str, ...]) -> list[tuple[str, str]]:
    """``("pid=shared", ...)`` -> ``[("pid", "shared"), ...]``; InvalidArgument with an example otherwise."""
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
    """Each expectation against the kernel's state, with the inodes of the members judged as evidence
    and those set apart (cgroup: the sandbox, ``sharing.judged``)."""
    results = []
    for t, want in expects:
        actual = view.sharing[t].actual
        kept = sharing.judged(t, view.members, view.node_namespaces)
        evidence = tuple((m.name, m.role, m.namespaces[t].ino) for m in kept if t in m.namespaces)
        apart = tuple((m.name, m.role, m.namespaces[t].ino) for m in view.members
                      if m.holds(t) and m not in kept)
        hint = "" if actual == want else sharing.hint(t, want, view.sharing[t], view.runtime)
        results.append(Expectation(t, want, actual, actual == want, evidence, hint, apart, sharing.SANDBOX_APART if apart else ""))
    return CheckView(view, tuple(results))


def validate_name(value: str, what: str) -> None:
    """Kubernetes names: non-empty, at most 253 characters, no control characters."""
    if not value or len(value) > 253 or not value.isprintable() or "/" in value:
        raise InvalidArgument(f"invalid {what} {value[:60]!r}; use a Kubernetes name (at most 253 characters)")


MAX_PID = PID_MAX_LIMIT  # the kernel never hands out a larger pid (a smaller absent one is "not found")


def validate_pid(pid: int) -> None:
    if not isinstance(pid, int) or pid <= 0 or pid > MAX_PID:
        raise InvalidArgument(f"invalid pid {pid}; a pid is a number from 1 to {MAX_PID}")
