"""The agent's layer over ``LocalEngine``: answers from a snapshot of the runtime, kept fresh.

``CachedEngine(ttl=...)`` keeps the runtime's view of every sandbox as a snapshot
(``pods.Facts``), confirmed with ListPodSandbox + ListContainers when older than ``ttl`` seconds;
statuses are asked only for what changed.  Answers built from a snapshot are reused while it stays
current, for at most VIEW_MAX_AGE, and only after checking that every member's process is still
the same one (pid and start time), so a dead process's namespaces are never shown (nor a stray
process that exited; a new stray process shows when the pod's namespaces are read again).  A request
that finds a member's process gone, or a pod the snapshot does not know, waits for a fresh
snapshot.  The snapshot is dropped as soon as the runtime's connection breaks, so a stopped
runtime is reported, not papered over.  Thread-safe: the agent serves from several threads.

While pods are being asked, ``warm()`` (the agent's keep-warm thread) confirms the snapshot and
rebuilds the answers of those pods before either runs out, so a request rarely waits for the runtime
or for /proc: it checks that the members are alive and answers.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from nsinspect.errors import NotFound, Unavailable
from nsinspect.model import NS_TYPES, NamespaceId, NodeView, PodView
from nsinspect.node import discover
from nsinspect.node.engine import LocalEngine, choose, not_found
from nsinspect.node.warm import WarmNode

# A cached answer's namespaces are read again at least this often, even when nothing changed.
# (Every request checks that each member's process is still the same one.)
VIEW_MAX_AGE = 10.0
# warm() keeps a pod's answer ready for this long after the last request that wanted it; it confirms
# the snapshot once it is REFRESH_AT of ttl old and rebuilds an answer once it is REBUILD_AT of
# VIEW_MAX_AGE old, so that a request finds neither expired.
KEEP_WARM = 2 * VIEW_MAX_AGE
REFRESH_AT = 0.6
REBUILD_AT = 0.8
MAX_ASKED = 4096  # pods kept warm at most (a node runs a few hundred)


class Answer(NamedTuple):
    """Views built from one snapshot, and when their namespaces were read (monotonic)."""

    facts: Any  # the pods.Facts they were built from
    views: list[PodView]
    at: float


class CachedEngine(LocalEngine):
    """``LocalEngine`` answering from a snapshot of the runtime no older than ``ttl`` seconds."""

    def __init__(self, *args: Any, ttl: float = 1.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.proc.watch = True  # the same members' processes are checked on every request: keep pidfds
        self.ttl = ttl
        self._facts: Any = None  # pods.Facts of every sandbox
        self._node_ns: dict[str, NamespaceId] = {}  # read with each new snapshot
        self._answers: dict[tuple[str, str, str], Answer] = {}  # GetPod answers of this snapshot
        self._asked: dict[tuple[str, str, str], float] = {}  # pods asked (and found), when last (monotonic)
        self._all: Answer | None = None  # every ready pod, from this snapshot
        self._checked_at = 0.0  # when the runtime last confirmed the snapshot (monotonic)
        self._connect_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        # node: what was read of every process and mount namespace, read again only where it changed (node.warm)
        self._warm: WarmNode | None = None
        self._scan_lock = threading.Lock()

    @property
    def warm_node(self) -> WarmNode:
        if self._warm is None:
            self._warm = WarmNode(self.proc)
        return self._warm

    def node(self, types: tuple[str, ...] = NS_TYPES, node: str | None = None) -> NodeView:
        with self._scan_lock:  # one call at a time keeps the records
            return super().node(types, node)

    def _node_view(self, types: tuple[str, ...]) -> NodeView:
        return self.warm_node.view(types)

    def close(self) -> None:
        with self._scan_lock:
            if self._warm is not None:
                self._warm.close()
                self._warm = None
        super().close()

    # -- the runtime ---------------------------------------------------------------------------
    def runtime(self) -> Any:
        client = self._client
        if client is not None:
            return client
        with self._connect_lock:
            return self._client or self._connect()

    def _connect(self) -> Any:
        client = super()._connect()
        client.on_disconnect(self._runtime_lost)
        return client

    def _runtime_lost(self) -> None:
        """The runtime's connection broke (called from a gRPC thread): distrust the snapshot."""
        self._facts = None

    def drop_runtime(self) -> None:
        self._facts = None
        super().drop_runtime()

    def _build(self, sandboxes: list[Any], facts: Any = None, node_ns: dict[str, NamespaceId] | None = None) -> list[PodView]:
        if node_ns is None and facts is not None and self._node_ns:
            node_ns = self._node_ns
        return super()._build(sandboxes, facts, node_ns)

    # -- the snapshot ----------------------------------------------------------------------------
    def _snapshot(self, not_before: float | None = None) -> Any:
        """The runtime's view of every sandbox: no older than ttl, and taken after ``not_before``
        (a monotonic time) when given.  Concurrent callers share one refresh."""
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
        return time.monotonic() - self._checked_at < self.ttl

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
            self._answers.clear()
            self._facts = facts
        self._checked_at = taken
        return facts

    def _usable(self, hit: Answer | None, facts: Any, now: float) -> bool:
        """A cached answer holds while its snapshot is the current one, its namespaces were read
        less than VIEW_MAX_AGE ago, and every member's process is still the same one."""
        return hit is not None and hit.facts is facts and now - hit.at < VIEW_MAX_AGE and self._alive(hit.views, settled=True)

    def _alive(self, views: list[PodView], settled: bool = False) -> bool:
        """Is every member that the runtime says runs still the process we read?

        ``settled``: these views were accepted after a fresh look, so a running member without a
        readable process is how things are (hidden, exiting), not a sign of change."""
        self.proc.note_exits()  # one look for every member's exit: below, a kept pidfd is a dict lookup
        for v in views:
            for m in v.members:
                if m.process is not None:
                    if not self.proc.is_alive(m.process.id, exits_noted=True):
                        return False
                    if not all(self.proc.runs(s.process.id) for s in m.strays):
                        return False  # a stray exited: read the pod again
                elif m.state in ("running", "ready") and not settled:
                    return False
        return True

    # -- LocalEngine's hooks, answered from the snapshot ---------------------------------------
    def _pod_views(self, namespace: str | None = None, node_ns: dict[str, NamespaceId] | None = None) -> list[PodView]:
        asked = time.monotonic()
        facts = self._snapshot()
        hit = self._all
        if not self._usable(hit, facts, asked):
            facts = self._snapshot(not_before=asked)  # a new answer: from after the request (see _find_pod)
            views = self._build([sb for sb in facts.sandboxes if sb.state == 0], facts)
            if not self._alive(views):  # a pod changed since the runtime answered: ask it again
                facts = self._snapshot(not_before=time.monotonic())
                views = self._build([sb for sb in facts.sandboxes if sb.state == 0], facts)
            hit = Answer(facts, views, time.monotonic())
            if all(_settled(v) for v in views):
                self._all = hit
        assert hit is not None
        return [v for v in hit.views if not namespace or v.pod.namespace == namespace]

    def cached_pod(self, name: str, namespace: str, uid: str = "") -> PodView | None:
        """What ``pod(name, namespace, uid=uid)`` answers now when that is an answer already built and
        still good (its snapshot the current one, confirmed less than ttl ago; its namespaces read less
        than VIEW_MAX_AGE ago; every member's process the same one); else None: ask ``pod()``.  The
        agent's hot path: no validation (only validated names were ever stored), no runtime call, no lock."""
        hit = self._answers.get((namespace, name, uid))
        facts = self._facts
        if hit is None or facts is None:
            return None
        now = time.monotonic()
        if now - self._checked_at >= self.ttl or not self._usable(hit, facts, now):
            return None
        self._asked[(namespace, name, uid)] = now
        return hit.views[0]

    def warm(self, built: Callable[[tuple[str, str, str], PodView], None] | None = None) -> list[tuple[tuple[str, str, str], PodView]]:
        """Get ready what requests will ask, so that they find it built (``cached_pod``) and the runtime
        and /proc are read here rather than while a caller waits.  The agent calls this from a background
        thread every ttl/4: the snapshot is confirmed once it is REFRESH_AT of ttl old; the answer of each
        pod asked in the last KEEP_WARM seconds is rebuilt once it is REBUILD_AT of VIEW_MAX_AGE old, or
        when a new snapshot dropped it.  Returns the answers rebuilt, as ((namespace, name, uid), view),
        each also handed to ``built`` as soon as it is made (the agent serializes it there).
        No pod asked lately: nothing done (an idle agent does not poll the runtime).  Raises what the
        runtime raises (``Unavailable``): requests report it too."""
        now = time.monotonic()
        for key, at in list(self._asked.items()):
            if now - at > KEEP_WARM:
                self._asked.pop(key, None)
        if not self._asked:
            return []
        if self._facts is None:
            return []  # the runtime's connection broke: requests ask it again, and report it
        if now - self._checked_at >= self.ttl * REFRESH_AT:
            if not self._refresh_lock.acquire(blocking=False):
                return []  # a request is confirming it: next round
            try:
                if time.monotonic() - self._checked_at >= self.ttl * REFRESH_AT:
                    self._refresh()
            finally:
                self._refresh_lock.release()
        facts, rebuilt = self._facts, []
        for key in list(self._asked):
            hit = self._answers.get(key)
            if hit is not None and hit.facts is facts and time.monotonic() - hit.at < VIEW_MAX_AGE * REBUILD_AT:
                continue
            namespace, name, uid = key
            try:
                view = self._find_pod(name, namespace, uid, warming=True)
            except NotFound:
                self._asked.pop(key, None)  # deleted: a request will say so
                continue
            if not _settled(view):
                continue  # not kept (see _find_pod): a request reads it afresh
            rebuilt.append((key, view))
            if built is not None:
                built(key, view)
        return rebuilt

    def _find_pod(self, name: str, namespace: str, uid: str, warming: bool = False) -> PodView:
        """``pod()``'s view of the pod, from the snapshot; ``warming``: for ``warm()``, built afresh,
        and not counted as asked (only requests keep a pod warm)."""
        asked = time.monotonic()
        facts = self._snapshot()
        key = (namespace, name, uid)
        hit = self._answers.get(key)
        # The answer built from this snapshot still holds while each member's process is the same
        # one (pid and start time: one read of /proc/<pid>/stat each).  Its namespaces were read
        # when this snapshot was taken, at most ttl ago.
        if not warming and hit is not None and self._usable(hit, facts, asked):
            self._asked[key] = asked
            return hit.views[0]
        if not warming:
            # A new answer is built from what the runtime says after the request came: a snapshot taken
            # before it may predate the pod's last change (just created, half started), and a caller who
            # saw the pod ready must not be told otherwise.  (warm() builds from the snapshot it has just
            # confirmed, and keeps only answers of pods that look settled.)
            facts = self._snapshot(not_before=asked)
        for attempt in (0, 1):
            sandboxes = _with_uid(facts.by_name.get((namespace, name), []), uid)
            if not sandboxes:
                break  # not in a snapshot taken after the request (or just now): not on this node
            view = self._build([choose(sandboxes)], facts)[0]
            if attempt == 0 and any(m.state in ("running", "ready") and not m.running for m in view.members):
                # A member the runtime says runs but whose process is gone: the pod changed (deleted,
                # restarted) since it answered.  Ask it again rather than answer from the past.
                facts = self._snapshot(not_before=time.monotonic())
                continue
            if facts is self._facts and _settled(view):
                self._answers[key] = Answer(facts, [view], _staggered(time.monotonic()))
                if not warming and (len(self._asked) < MAX_ASKED or key in self._asked):
                    self._asked[key] = asked
            return view
        elsewhere = sorted({ns for (ns, n) in facts.by_name if n == name})
        raise not_found(name, namespace, uid, elsewhere)


def _settled(view: PodView) -> bool:
    """Does the pod look as it will stay for a while: its sandbox ready, no container between created and
    running, none unknown?  An answer of a pod in flux is not kept: each request asks the runtime afresh
    (one that saw the pod ready a moment later must see it so)."""
    return all(m.state not in ("created", "unknown", "notready") for m in view.members)


def _staggered(now: float) -> float:
    """When a pod's answer counts as read, for VIEW_MAX_AGE: up to half of it earlier than it was.

    Answers built together (the agent's first requests, each new snapshot) would otherwise all be read
    again together, VIEW_MAX_AGE later: a burst of rebuilds that holds up every request behind it."""
    return now - random.random() * VIEW_MAX_AGE / 2


def _with_uid(sandboxes: list[Any], uid: str) -> list[Any]:
    from nsinspect.node.pods import L_UID

    return [sb for sb in sandboxes if sb.labels.get(L_UID, sb.metadata.uid) == uid] if uid else sandboxes
