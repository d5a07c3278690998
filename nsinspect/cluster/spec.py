"""The third source: what the pod's spec declares, beside the runtime's settings and the kernel.

``spec_of`` reads a Pod object (the API server's JSON, as a dict) into ``model.PodSpec``;
``compare`` lays it over a node's ``PodView``: roles come from the spec instead of being
inferred, containers the runtime does not have are listed, and each namespace type gets a
``declared`` state (by ``sharing``'s rules), so a mismatch between spec and runtime is shown as
plainly as one between runtime and kernel.  Pure functions over the model: no Kubernetes client, no gRPC.
"""

from __future__ import annotations

from typing import Any

from nsinspect import sharing
from nsinspect.model import (
    APP,
    EPHEMERAL,
    INFERRED_ROLES,
    INIT,
    ROLE_ORDER,
    SANDBOX,
    ContainerDecl,
    Member,
    PodSpec,
    PodView,
)


def _state(status: dict[str, Any] | None) -> str:
    """A container status's state in a word or two: running, waiting (Reason), terminated (Reason)."""
    if not status:
        return ""
    for word in ("running", "waiting", "terminated"):
        detail = (status.get("state") or {}).get(word)
        if detail is not None:
            reason = detail.get("reason") or ""
            return f"{word} ({reason})" if reason else word
    return ""


def spec_of(pod: dict[str, Any]) -> PodSpec:
    """The namespace-relevant part of a Pod object (a dict as the API server sends it)."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    states = {}
    for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
        for cs in status.get(key) or []:
            states[cs.get("name", "")] = _state(cs)
    decls = []
    for c in spec.get("initContainers") or []:
        name = c.get("name", "")
        decls.append(ContainerDecl(name, INIT, sidecar=c.get("restartPolicy") == "Always", state=states.get(name, "")))
    for c in spec.get("containers") or []:
        name = c.get("name", "")
        decls.append(ContainerDecl(name, APP, state=states.get(name, "")))
    for c in spec.get("ephemeralContainers") or []:
        name = c.get("name", "")
        decls.append(ContainerDecl(name, EPHEMERAL, target=c.get("targetContainerName") or "", state=states.get(name, "")))
    host_users = spec.get("hostUsers")
    return PodSpec(
        node=spec.get("nodeName") or "",
        host_network=bool(spec.get("hostNetwork")),
        host_pid=bool(spec.get("hostPID")),
        host_ipc=bool(spec.get("hostIPC")),
        host_users=None if host_users is None else bool(host_users),
        share_process_namespace=bool(spec.get("shareProcessNamespace")),
        containers=tuple(decls),
        phase=status.get("phase") or "",
    )


def compare(view: PodView, spec: PodSpec) -> PodView:
    """``view`` (from a node: runtime + kernel) with the spec laid over it."""
    notes = [n for n in view.notes if n not in INFERRED_ROLES]  # roles are known now
    by_name = {m.name: m for m in view.members if m.role != SANDBOX}
    members: list[Member] = [m for m in view.members if m.role == SANDBOX]
    for m in view.members:
        if m.role == SANDBOX:
            continue
        decl = spec.find(m.name)
        if decl is None:
            notes.append(f"container {m.name!r} runs on the node but is not in the pod's spec (left over from an older pod?)")
            members.append(m)
            continue
        target_id = m.target_id
        if decl.role == EPHEMERAL and decl.target:
            target = by_name.get(decl.target)
            if target is None:
                notes.append(f"ephemeral container {m.name!r} targets {decl.target!r}, which the runtime does not have")
            elif m.target_id and m.target_id != target.id:
                notes.append(f"ephemeral container {m.name!r} targets {decl.target!r} in the spec, "
                             f"but the runtime joined it to another container ({m.target_id[:13]})")
            elif not m.target_id:
                notes.append(f"ephemeral container {m.name!r} targets {decl.target!r} in the spec, "
                             "but the runtime did not join its pid namespace (no CRI pid=TARGET)")
            else:
                target_id = target.id
        elif decl.role != EPHEMERAL and m.role == EPHEMERAL:
            target_id = ""
        members.append(m._replace(role=decl.role, sidecar=decl.sidecar, target_id=target_id))
    for decl in spec.containers:
        if decl.name not in by_name:
            state = decl.state or "not created"
            members.append(Member(decl.name, decl.role, "", "waiting", sidecar=decl.sidecar))
            notes.append(f"container {decl.name!r} is in the spec but not in the runtime ({state})")
    members.sort(key=lambda m: (ROLE_ORDER[m.role], m.created_at == 0, m.created_at))
    ephemeral_running = any(m.role == EPHEMERAL and m.running and m.target_id for m in members)
    notes.insert(0, "roles from the pod's spec")
    view = view._replace(members=members, notes=tuple(notes), spec=spec)
    return view._replace(sharing=sharing.with_declared(view, spec, ephemeral_running))
