"""The sharing rules, in one table: what each namespace type should be, and why.

A pod asks for its namespaces twice: in its spec (``hostNetwork``, ``shareProcessNamespace``, ...)
and, through kubelet, in the CRI ``NamespaceOption`` its runtime receives.  Both are normalized
into one ``Ask``; the node adds what the pod cannot choose (``Node``: the cgroup version, a
privileged member).  ``RULES`` maps (Ask, Node) to a state per type, with the sentence that
explains it in the runtime's terms and, for the types the spec governs, in the spec's terms.
``HINTS`` say what to set in the spec to get a state.  Everything that judges a pod — expected,
declared, actual, the disagreement sentence, a check's hint — is computed here and stored in the
model; renderers only print it.  Pure functions: no gRPC, no Kubernetes client, no terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import NamedTuple

from nsinspect.model import (
    EPHEMERAL,
    HOST,
    MIXED,
    NS_TYPES,
    PRIVATE,
    SANDBOX,
    SHARED,
    IdRange,
    Member,
    MemberDetails,
    NamespaceId,
    PodSpec,
    PodView,
    Verdict,
    outside_id,
)

IdMaps = tuple[tuple[IdRange, ...], tuple[IdRange, ...]]  # (uid map, gid map)


class Ask(NamedTuple):
    """What a pod asked for, in CRI's words (``NamespaceMode`` names)."""

    network: str = "POD"  # POD | NODE
    ipc: str = "POD"  # POD | NODE
    pid: str = "CONTAINER"  # CONTAINER | POD | NODE | TARGET (an ephemeral container joined its target)
    userns: str = "NODE"  # NODE | POD
    host_users_set: bool = False  # the spec wrote hostUsers explicitly (only its wording depends on it)


class Node(NamedTuple):
    """What the node decides: the cgroup version, and how many running containers run privileged or not
    (containerd and CRI-O give a container its own cgroup namespace on v2 unless it is privileged)."""

    cgroup2: bool = False
    privileged: int = 0  # running containers (not the sandbox) run privileged
    unprivileged: int = 0  # running containers run unprivileged
    own_uts: bool = False  # the runtime gives every pod a UTS namespace, hostNetwork ones too (``owns_uts``)


def owns_uts(runtime: str) -> bool:
    """Does this runtime (its CRI ``runtime_name``) give a hostNetwork pod a UTS namespace of its own?  CRI-O
    does: it has no host UTS mode, and copies the node's hostname into the pod's namespace (its
    ``sandbox_run_linux.go``; docs/crio.md); containerd keeps the node's, as the network."""
    return runtime.lower().startswith("cri-o")


class Rule(NamedTuple):
    state: str
    when: Callable[[Ask, Node], bool]
    runtime: str  # why, in the runtime's terms (the EXPECTED column's reason)
    spec: str | None = None  # why, in the spec's terms (SPEC column); None: the spec says nothing of this type


def _always(a: Ask, n: Node) -> bool:
    return True


# First matching rule of a type wins.
RULES: dict[str, tuple[Rule, ...]] = {
    "net": (
        Rule(HOST, lambda a, n: a.network == "NODE", "hostNetwork: the pod uses the node's network (CRI network=NODE)",
             "spec.hostNetwork: true"),
        Rule(SHARED, _always, "every container joins the sandbox's network namespace (CRI network=POD)",
             "spec.hostNetwork is not set"),
    ),
    "uts": (
        Rule(SHARED, lambda a, n: a.network == "NODE" and n.own_uts,
             "CRI-O gives every pod a UTS namespace of its own, hostNetwork ones too (holding the node's hostname)",
             "spec.hostNetwork: true, but CRI-O gives the pod its own UTS namespace (with the node's hostname)"),
        Rule(HOST, lambda a, n: a.network == "NODE", "follows the network: hostNetwork pods keep the node's hostname",
             "spec.hostNetwork: true (uts follows the network)"),
        Rule(SHARED, _always, "every container joins the sandbox's UTS namespace",
             "spec.hostNetwork is not set (uts follows the network)"),
    ),
    "ipc": (
        Rule(HOST, lambda a, n: a.ipc == "NODE", "hostIPC: the pod uses the node's IPC (CRI ipc=NODE)", "spec.hostIPC: true"),
        Rule(SHARED, _always, "every container joins the sandbox's IPC namespace (CRI ipc=POD)", "spec.hostIPC is not set"),
    ),
    "pid": (
        Rule(HOST, lambda a, n: a.pid == "NODE", "hostPID: the pod sees every process of the node (CRI pid=NODE)",
             "spec.hostPID: true"),
        Rule(SHARED, lambda a, n: a.pid == "POD", "shareProcessNamespace: true (CRI pid=POD)",
             "spec.shareProcessNamespace: true"),
        Rule(MIXED, lambda a, n: a.pid == "TARGET",
             "private per container, but an ephemeral container joins its target's (CRI pid=TARGET)",
             "no shareProcessNamespace, and an ephemeral container has a targetContainerName"),
        Rule(PRIVATE, _always, "each container has its own (CRI pid=CONTAINER); set spec.shareProcessNamespace: true to share",
             "spec.shareProcessNamespace is not set"),
    ),
    "user": (
        Rule(SHARED, lambda a, n: a.userns == "POD", "hostUsers: false: the pod has its own user namespace (CRI userns=POD)",
             "spec.hostUsers: false"),
        Rule(HOST, lambda a, n: a.host_users_set, "hostUsers defaults to true: root in the container is root on the node",
             "spec.hostUsers: true"),
        Rule(HOST, _always, "hostUsers defaults to true: root in the container is root on the node",
             "spec.hostUsers is not set (true)"),
    ),
    "mnt": (
        Rule(PRIVATE, _always, "every container has its own root filesystem"),
    ),
    # Judged over the containers (``judged``); docs/cgroup.md has the runtimes' sources.
    "cgroup": (
        Rule(HOST, lambda a, n: not n.cgroup2,
             "cgroup v1 node: containerd and CRI-O give no container a cgroup namespace of its own"),
        Rule(HOST, lambda a, n: n.privileged + n.unprivileged == 0,
             "only the sandbox runs: containerd and CRI-O leave it in the node's cgroup namespace"),
        Rule(HOST, lambda a, n: n.unprivileged == 0, "cgroup v2 node, but privileged containers keep the node's cgroup namespace"),
        Rule(MIXED, lambda a, n: n.privileged > 0,
             "cgroup v2 node: unprivileged containers get their own cgroup namespace, privileged ones keep the node's"),
        Rule(PRIVATE, _always, "cgroup v2 node: each unprivileged container gets its own cgroup namespace"),
    ),
    "time": (
        Rule(HOST, _always, "time namespaces are not part of CRI: always the node's"),
    ),
}

# What to set in the pod's spec to get a state (a failed check's hint).
HINTS: dict[tuple[str, str], str] = {
    ("pid", SHARED): "set spec.shareProcessNamespace: true",
    ("pid", HOST): "set spec.hostPID: true",
    ("net", HOST): "set spec.hostNetwork: true",
    ("uts", HOST): "set spec.hostNetwork: true (uts follows the network)",
    ("ipc", HOST): "set spec.hostIPC: true",
    ("user", SHARED): "set spec.hostUsers: false (needs user-namespace support in the runtime)",
    ("user", HOST): "remove spec.hostUsers: false",
}


def _rule(t: str, ask: Ask, node: Node) -> Rule:
    return next(r for r in RULES[t] if r.when(ask, node))


def ask_of_options(options: Mapping[str, str], ephemeral_targets: bool = False) -> Ask:
    """The CRI NamespaceOption (``{"network": "POD", "pid": "CONTAINER", ...}``) as an Ask."""
    pid = options.get("pid", "CONTAINER")
    if pid not in ("NODE", "POD") and ephemeral_targets:
        pid = "TARGET"
    return Ask(options.get("network", "POD"), options.get("ipc", "POD"), pid, options.get("userns", "NODE"))


def ask_of_spec(spec: PodSpec, ephemeral_targets: bool = False) -> Ask:
    """The pod's spec as an Ask (what kubelet would send the runtime)."""
    if spec.host_pid:
        pid = "NODE"
    elif spec.share_process_namespace:
        pid = "POD"
    else:
        pid = "TARGET" if ephemeral_targets else "CONTAINER"
    return Ask(
        "NODE" if spec.host_network else "POD", "NODE" if spec.host_ipc else "POD", pid,
        "POD" if spec.host_users is False else "NODE", spec.host_users is not None,
    )


def expected(ask: Ask, node: Node) -> dict[str, tuple[str, str]]:
    """Per type: the state the runtime should have set up, and why."""
    return {t: (r.state, r.runtime) for t in NS_TYPES for r in (_rule(t, ask, node),)}


def declared(ask: Ask, node: Node | None = None) -> dict[str, tuple[str, str]]:
    """Per type the spec governs (net, uts, ipc, pid, user): the state it asks for, and the fields behind it
    (on this ``node``: only its runtime's UTS habit matters).  mnt, cgroup and time are not in the spec: the
    runtime and the node decide them."""
    out = {}
    for t in NS_TYPES:
        r = _rule(t, ask, node or Node())
        if r.spec is not None:
            out[t] = (r.state, r.spec)
    return out


def hint(t: str, want: str, verdict: Verdict, runtime: str = "") -> str:
    """What to change to get ``want`` (a failed check's last words), on this ``runtime`` (its CRI name)."""
    if (t, want) == ("uts", HOST) and owns_uts(runtime):
        return ("CRI-O has no host UTS mode: every pod gets a UTS namespace of its own, hostNetwork pods too "
                "(with the node's hostname copied in); expect uts=shared there")
    return HINTS.get((t, want), verdict.reason)


def state_of(namespaces: list[NamespaceId], node: NamespaceId | None) -> str | None:
    """The sharing state of one type over the running members (README, "Sharing states")."""
    if not namespaces:
        return None
    if node is not None and all(ns == node for ns in namespaces):
        return HOST
    distinct = set(namespaces)
    if node in distinct:
        return MIXED
    if len(distinct) == 1:
        return SHARED
    if len(distinct) == len(namespaces):
        return PRIVATE
    return MIXED


# Why the sandbox is left out of the cgroup verdict.
SANDBOX_APART = ("cgroup is judged over the containers: the sandbox (pause) stays in the node's cgroup namespace, "
                 "as containerd and CRI-O leave it on cgroup v1 and v2")


def judged(t: str, members: Sequence[Member], node_ns: Mapping[str, NamespaceId]) -> list[Member]:
    """The running members whose namespaces of type ``t`` make its state.

    Every running member, except for cgroup when a container has a cgroup namespace other than the
    node's: then a sandbox in the node's one is set apart.  containerd and CRI-O never give the sandbox
    a cgroup namespace (v1 or v2), while on a v2 node they give each unprivileged container its own;
    counted with them, the sandbox would make every such pod ``mixed``.  A sandbox in any other cgroup
    namespace is counted."""
    return _judged(t, [m for m in members if m.holds(t)], node_ns)


def _judged(t: str, running: list[Member], node_ns: Mapping[str, NamespaceId]) -> list[Member]:
    node = node_ns.get(t)
    if t != "cgroup" or node is None or all(m.namespaces.get(t) == node for m in running if m.role != SANDBOX):
        return running
    return [m for m in running if m.role != SANDBOX or m.namespaces.get(t) != node]


def sandbox_apart(members: Sequence[Member], node_ns: Mapping[str, NamespaceId]) -> bool:
    """Is the sandbox set apart from the cgroup verdict?"""
    return len(judged("cgroup", members, node_ns)) < sum(1 for m in members if m.holds("cgroup"))


def pinned_note(sandbox: Member) -> str:
    """Why a sandbox without a process still has namespaces, and how they are judged."""
    where = ", ".join(f"{t} at {p}" for t, p in sorted(sandbox.pinned.items()))
    return (f"the sandbox has no process; its runtime pinned {where}: these namespaces are read from the pinned "
            "paths and judged with the running members (a container in the same one shares it)")


def node_of(members: Sequence[Member], cgroup2: bool, privileged: Collection[str], runtime: str = "") -> Node:
    """The Node of these members: ``privileged`` holds the ids of the containers run privileged; ``runtime``
    the CRI runtime's name."""
    running = [m for m in members if m.running and m.role != SANDBOX]
    n = sum(1 for m in running if m.id in privileged)
    return Node(cgroup2, n, len(running) - n, owns_uts(runtime))


def verdicts(members: list[Member], options: Mapping[str, str], node_ns: Mapping[str, NamespaceId], node: Node,
             requested_maps: IdMaps = ((), ())) -> dict[str, Verdict]:
    """Each type's verdict over its judged members (``judged``): the kernel's state against the runtime's settings.
    A sandbox without a process counts with the namespaces its runtime pinned (``Member.pinned``)."""
    ephemeral = any(m.role == EPHEMERAL and m.running for m in members)
    exp = expected(ask_of_options(options, ephemeral), node)
    out = {}
    for t in NS_TYPES:
        inos = [m.namespaces[t] for m in judged(t, members, node_ns)]
        actual = state_of(inos, node_ns.get(t))
        state, reason = exp[t]
        if actual is not None and len(inos) == 1 and actual in (SHARED, PRIVATE):
            # One running member: shared and private cannot be told apart.
            actual = state if state in (SHARED, PRIVATE) else actual
        out[t] = explained(Verdict(actual, state, reason))
    return with_evidence(out, members, requested_maps)


def format_map(ranges: tuple[IdRange, ...]) -> str:
    """An id map as /proc shows it, lines joined by commas: "0 65536 65536"."""
    return ", ".join(f"{r.inside} {r.outside} {r.length}" for r in ranges) or "empty"


def user_evidence(running: list[Member], requested: IdMaps) -> str:
    """The id maps of members outside the node's user namespace, in one sentence: who root is on the
    node, and whether the kernel's maps are the ones the runtime was asked for (CRI userns_options)."""
    maps = {(m.uid_map, m.gid_map) for m in running if m.uid_map or m.gid_map}
    if not maps:
        return ""
    if len(maps) > 1:
        return "the members' id maps differ: " + "; ".join(
            f"{m.name}: uid_map {format_map(m.uid_map)}, gid_map {format_map(m.gid_map)}" for m in running)
    uid_map, gid_map = maps.pop()
    root_uid, root_gid = outside_id(uid_map, 0), outside_id(gid_map, 0)
    if root_uid is None:
        who = "uid 0 is not mapped in the pod"
    elif root_gid is not None and root_gid != root_uid:
        who = f"root in the pod is uid {root_uid}, gid {root_gid} on the node"
    else:
        who = f"root in the pod is uid {root_uid} on the node"
    text = f"{who} (uid_map {format_map(uid_map)}; gid_map {format_map(gid_map)})"
    want_uid, want_gid = requested
    if (want_uid or want_gid) and (want_uid, want_gid) != (uid_map, gid_map):
        text += f", but the runtime was asked for uid_map {format_map(want_uid)}; gid_map {format_map(want_gid)}"
    return text


def with_evidence(verdicts: dict[str, Verdict], members: list[Member], requested: IdMaps,
                  node_ns: Mapping[str, NamespaceId] | None = None) -> dict[str, Verdict]:
    """The verdicts with their evidence in words: the user type's id maps when the members are not in the
    node's user namespace, and, when the members carry details (``pod --details``), what the kernel shows
    of every type (``details_evidence``).  Made from the members, so it is made again after crossing the wire."""
    running = [m for m in members if m.running]
    out = dict(verdicts)
    user = out.get("user")
    if user is not None and user.actual not in (None, HOST):
        out["user"] = user._replace(evidence=user_evidence(running, requested))
    detailed = [m for m in running if m.details is not None]
    if detailed:
        for t, v in out.items():
            if not v.evidence and v.actual is not None:
                out[t] = v._replace(evidence=details_evidence(t, detailed, (node_ns or {}).get(t)))
    return out


# -- the evidence of each type, in words (from Member.details) ------------------------------------

SHOWN = 4  # addresses, objects, volumes or processes named in a sentence; the rest are counted


def _more(items: list[str], total: int | None = None) -> str:
    total = len(items) if total is None else total
    text = ", ".join(items[:SHOWN])
    return text + (f" and {total - SHOWN} more" if total > SHOWN else "")


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _net_phrase(d: MemberDetails) -> str:
    n = d.net
    if n.error:
        return f"no answer ({n.error})"
    addrs = [a for a in n.addresses if a.interface != "lo" and not a.address.startswith(("127.", "::1"))
             and not (a.family == "inet6" and a.address.startswith("fe80:"))]
    shown = [f"{a.address}" + (f" on {a.interface}" if a.interface else " (no interface named in /proc/net/route)")
             for a in addrs]
    ifaces = f"interfaces {', '.join(n.interfaces)}" if len(n.interfaces) <= 2 * SHOWN else _plural(len(n.interfaces), "interface")
    if not shown:
        return f"no address but the loopback's ({ifaces})"
    return f"IP {_more(shown)} ({ifaces})"


def _ipc_phrase(d: MemberDetails) -> str:
    i = d.ipc
    if i.error:
        return f"no answer ({i.error})"
    by_kind = {k: [o for o in i.objects if o.kind == k] for k in ("shm", "sem", "msg")}
    segments = by_kind["shm"]
    parts = []
    if segments:
        parts.append(_plural(len(segments), "shared memory segment")
                     + " (" + _more([f"key {o.key:#010x} id {o.id} {o.size} bytes" for o in segments]) + ")")
    if by_kind["sem"]:
        parts.append(_plural(len(by_kind["sem"]), "semaphore set"))
    if by_kind["msg"]:
        parts.append(_plural(len(by_kind["msg"]), "message queue"))
    shm = d.mnt.shm
    return ("System V objects: " + (", ".join(parts) or "none")
            + (f"; /dev/shm on device {shm.device} ({shm.fstype})" if shm is not None else ""))


def _mnt_phrase(d: MemberDetails) -> str:
    m = d.mnt
    if m.error:
        return f"no answer ({m.error})"
    root = f"root {m.root.fstype} {m.root.source} (device {m.root.device})" if m.root else "no root mount listed"
    vols = [f"{v.target} ({v.fstype} {v.device})" for v in m.volumes]
    return root + (f", volumes {_more(vols)}" if vols else "")


def _user_phrase(d: MemberDetails) -> str:
    u = d.user
    if u.error:
        return f"no answer ({u.error})"
    if u.root_uid is None:
        who = "uid 0 is not mapped"
    elif u.root_uid == 0:
        who = "root in the container is uid 0 on the node"
    else:
        who = f"root in the container is uid {u.root_uid} on the node"
    return who + (f"; its process runs as uid {u.uid} on the node" if u.uid is not None else "")


def _cgroup_phrase(d: MemberDetails) -> str:
    c = d.cgroup
    if not c.path:
        return f"no answer ({c.error})"
    limits = f"cpu {c.cpu_max or '?'}, memory {c.memory_max or '?'}"
    return f"{c.path} (cgroup v{c.version}; {limits})" + (f" ({c.error})" if c.error else "")


def _pid_phrase(d: MemberDetails) -> str:
    p = d.pid
    if p.error:
        return f"no answer ({p.error})"
    names = [f"{s.comm} ({s.ns_pid})" for s in p.processes]
    return _plural(p.nprocs, "process", "processes") + (f": {_more(names, p.nprocs)}" if names else "")


PHRASES: dict[str, Callable[[MemberDetails], str]] = {
    "net": _net_phrase,
    "uts": lambda d: f"hostname {d.uts.hostname}" if not d.uts.error else f"no answer ({d.uts.error})",
    "ipc": _ipc_phrase,
    "mnt": _mnt_phrase,
    "user": _user_phrase,
    "cgroup": _cgroup_phrase,
    "pid": _pid_phrase,
}


SAME = ("net", "uts", "ipc", "pid")  # types whose evidence reads "same ..." when every member shows it


def details_evidence(t: str, members: list[Member], node: NamespaceId | None = None) -> str:
    """What the members' details show of type ``t``, in one sentence: "all running members: same hostname
    web-1" when every member shows the same, else each group of members and what it shows.  The node's
    namespace is named as such.  '' for a type without evidence (time)."""
    phrase = PHRASES.get(t)
    if phrase is None:
        return ""
    groups: dict[tuple[NamespaceId | None, str], list[str]] = {}
    for m in members:
        assert m.details is not None
        groups.setdefault((m.namespaces.get(t), phrase(m.details)), []).append(m.name)
    all_node = node is not None and all(m.namespaces.get(t) == node for m in members)
    tail = f" (the node's {t} namespace)" if all_node else ""
    if len(groups) == 1 and len(members) > 1:
        text = next(iter(groups))[1]
        return f"all running members: {'same ' if t in SAME else ''}{text}{tail}"
    parts = []
    for (ns, text), names in groups.items():
        where = f" (the node's {t} namespace)" if node is not None and ns == node and not all_node else ""
        parts.append(f"{', '.join(names)}: {text}{where}")
    if t == "mnt":
        parts.extend(shared_volumes(members))
    return "; ".join(parts) + tail


def shared_volumes(members: list[Member]) -> list[str]:
    """Volumes that several members mount: the same directory (root) of the same filesystem (device)."""
    uses: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for m in members:
        if m.details is not None:
            for v in m.details.mnt.volumes:
                uses.setdefault((v.device, v.root), []).append((m.name, v.target))
    out = []
    for (device, _root), where in uses.items():
        names = list(dict.fromkeys(n for n, _t in where))
        if len(names) > 1:
            targets = sorted({t for _n, t in where})
            out.append(f"{', '.join(names)} mount the same volume at {' and '.join(targets)} (device {device})")
    if len(out) > SHOWN:
        out = [*out[:SHOWN], f"and {len(out) - SHOWN} more shared volumes"]
    return out


def explain(v: Verdict) -> str:
    """Why a type's three sources disagree, in one sentence ('' when they agree or nothing runs)."""
    parts = []
    if v.declared is not None and v.expected is not None and v.declared != v.expected:
        parts.append(f"the spec asks for {v.declared} ({v.declared_reason}), but the runtime was set up for "
                     f"{v.expected} ({v.reason.split(';')[0]}): kubelet or the runtime did not apply the spec")
    if v.actual is not None and v.expected is not None and v.actual != v.expected:
        parts.append(f"the runtime was asked for {v.expected} ({v.reason}), but the kernel says {v.actual}")
    return "; ".join(parts)


def explained(v: Verdict) -> Verdict:
    return v._replace(disagreement=explain(v))


def with_declared(view: PodView, spec: PodSpec, ephemeral_targets: bool) -> dict[str, Verdict]:
    """The view's verdicts with the spec's states laid over them (types the spec is silent on: None)."""
    want = declared(ask_of_spec(spec, ephemeral_targets), Node(own_uts=owns_uts(view.runtime)))
    out = {}
    for t, v in view.sharing.items():
        d = want.get(t)
        v = v._replace(declared=d[0], declared_reason=d[1]) if d else v._replace(declared=None, declared_reason="")
        out[t] = explained(v)
    return out
