"""The verbose ``info`` blob of CRI status calls: keep the pid and namespace facts, drop the rest.

The blob is JSON under the key ``info``.  containerd's holds ``pid``, ``runtimeSpec`` and
``config`` (the CRI ContainerConfig, namespace options included); CRI-O's holds ``pid`` and
``runtimeSpec``.  Both carry the container's environment (secrets, often): this module returns
only a ``VerboseInfo``, and nothing here logs or keeps the blob.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

# CRI NamespaceMode numbers (api.proto).
MODES = {0: "POD", 1: "CONTAINER", 2: "NODE", 3: "TARGET"}
_SPEC_TYPES = {"network": "net", "mount": "mnt", "pid": "pid", "ipc": "ipc", "uts": "uts", "user": "user", "cgroup": "cgroup", "time": "time"}
_PROC_PID = re.compile(r"^/proc/(\d+)/ns/")


class VerboseInfo(NamedTuple):
    pid: int  # 0 when the runtime reports no process (exited, or CRI-O's drop_infra_ctr)
    # OCI spec namespaces: type -> "" (a new one), "/proc/<pid>/ns/<t>" or a bind-mounted path (joined);
    # a type absent from the spec is the runtime's (the node's) own.
    spec_namespaces: Mapping[str, str]
    options: Mapping[str, str]  # CRI NamespaceOption from the config, when the runtime echoes it
    target_id: str
    privileged: bool | None


def _mode(value: Any) -> str | None:
    if isinstance(value, int):
        return MODES.get(value)
    if isinstance(value, str) and value.upper() in MODES.values():
        return value.upper()
    return None


def parse(info: Mapping[str, str]) -> VerboseInfo:
    """Parse a verbose ``info`` map; tolerant of either runtime's shape and of absent keys."""
    raw = info.get("info")
    data: dict[str, Any] = {}
    if raw:
        try:
            loaded = json.loads(raw)
            if isinstance(loaded, dict):
                data = loaded
        except ValueError:
            data = {}
    pid = data.get("pid")
    pid = pid if isinstance(pid, int) and pid > 0 else 0

    spec_ns: dict[str, str] = {}
    spec = data.get("runtimeSpec")
    linux = spec.get("linux") if isinstance(spec, dict) else None
    namespaces = linux.get("namespaces") if isinstance(linux, dict) else None
    for ns in namespaces if isinstance(namespaces, list) else []:
        kind = ns.get("type") if isinstance(ns, dict) else None
        if isinstance(kind, str) and kind in _SPEC_TYPES:  # a type that is not a string (a map, say) is not one of them
            spec_ns[_SPEC_TYPES[kind]] = str(ns.get("path") or "")

    options: dict[str, str] = {}
    target_id = ""
    privileged = None
    config = data.get("config")
    sec = None
    if isinstance(config, dict):
        lin = config.get("linux")
        sec = lin.get("security_context") if isinstance(lin, dict) else None
    if isinstance(sec, dict):
        nso = sec.get("namespace_options")
        nso = nso if isinstance(nso, dict) else {}
        for key in ("network", "pid", "ipc"):
            m = _mode(nso.get(key, 0))
            if m:
                options[key] = m
        userns = nso.get("userns_options")
        if isinstance(userns, dict):
            m = _mode(userns.get("mode", 0))
            if m:
                options["userns"] = m
        target_id = str(nso.get("target_id") or "")
        privileged = bool(sec.get("privileged", False))
    elif isinstance(data.get("privileged"), bool):  # CRI-O: no config echo, a top-level flag (containerInfo)
        privileged = data["privileged"]
    return VerboseInfo(pid, spec_ns, options, target_id, privileged)


def joined_pid(path: str) -> int | None:
    """``/proc/123/ns/pid`` -> 123: the process whose namespace a spec joins."""
    m = _PROC_PID.match(path)
    return int(m.group(1)) if m else None
