"""The evidence of sharing, per member (``pod --details``): what the kernel shows beyond inodes.

net: interfaces (/proc/<pid>/net/dev), IPv4 local addresses (net/fib_trie, tied to an interface by the
link route of net/route that holds them), IPv6 addresses (net/if_inet6); uts: the hostname and ipc: the
System V objects, read inside the namespace (``node.enter``); mnt: the root, the volumes and /dev/shm
(mountinfo); user: who uid 0 is on the node (the id maps already read); cgroup: the member's cgroup
(/proc/<pid>/cgroup) and its cpu and memory limits (the node's cgroupfs, v1 or v2); pid: the processes
in the member's pid namespace.  Parsers are pure functions of the files' bytes; every read goes
through ``ProcFS``.  Where the kernel gives no answer the section says why, in ``error``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from nsinspect.errors import AccessDenied, NoSuchProcess
from nsinspect.limits import PID_MAX_LIMIT, decimal
from nsinspect.model import (
    CgroupDetails,
    IpcDetails,
    IpcObject,
    Member,
    MemberDetails,
    MntDetails,
    MountPoint,
    NetAddress,
    NetDetails,
    PidDetails,
    PodView,
    SeenProcess,
    UserDetails,
    UtsDetails,
    outside_id,
)
from nsinspect.node import enter
from nsinspect.node.hidden import unescape_mount_path
from nsinspect.node.procfs import ProcFS, can_trace, clean

SHOWN_PROCESSES = 8  # processes named per pid namespace (all are counted)
_HIDDEN_TREES = ("/proc", "/sys", "/dev")  # mounts under these are the runtime's, not volumes

S = TypeVar("S")


# -- parsers ----------------------------------------------------------------------------------------


def parse_net_dev(data: bytes) -> tuple[str, ...]:
    """/proc/<pid>/net/dev: the interface names, in the file's order (two header lines first)."""
    out = []
    for line in data.decode("utf-8", "backslashreplace").splitlines()[2:]:
        name, sep, _ = line.partition(":")
        if sep and name.strip():
            out.append(name.strip())
    return tuple(out)


def parse_fib_trie(data: bytes) -> tuple[str, ...]:
    """/proc/<pid>/net/fib_trie: the IPv4 addresses of the namespace (leaves marked "/32 host LOCAL"), sorted."""
    found: set[str] = set()
    leaf = ""
    for line in data.decode("ascii", "replace").splitlines():
        s = line.strip()
        if s.startswith("|-- "):
            leaf = s[4:].strip()
        elif leaf and s.startswith("/32 host LOCAL"):
            found.add(leaf)
    return tuple(sorted(found, key=lambda a: ipaddress.IPv4Address(a)))


def parse_route(data: bytes) -> list[tuple[str, int, int]]:
    """/proc/<pid>/net/route: the directly connected routes (no gateway) as (interface, network, mask),
    addresses as host-order integers."""
    out = []
    for line in data.decode("utf-8", "backslashreplace").splitlines()[1:]:
        f = line.split("\t")
        if len(f) < 8:
            continue
        try:
            dest, gw, mask = (int.from_bytes(bytes.fromhex(x.strip()), "little") for x in (f[1], f[2], f[7]))
        except ValueError:
            continue
        if gw == 0:
            out.append((f[0].strip(), dest, mask))
    return out


def ipv4_addresses(fib_trie: bytes, route: bytes) -> tuple[NetAddress, ...]:
    """The local IPv4 addresses, each with the interface and prefix of the most specific link route
    that holds it ("" and None when none does: the loopback's, or a /32 without a link route)."""
    routes = parse_route(route)
    out = []
    for a in parse_fib_trie(fib_trie):
        n = int(ipaddress.IPv4Address(a))
        best = max(((mask, iface) for iface, dest, mask in routes if n & mask == dest & mask and mask), default=None)
        if best is None:
            out.append(NetAddress("inet", a, None, ""))
        else:
            out.append(NetAddress("inet", a, bin(best[0]).count("1"), best[1]))
    return tuple(out)


def parse_if_inet6(data: bytes) -> tuple[NetAddress, ...]:
    """/proc/<pid>/net/if_inet6: address, ifindex, prefix, scope, flags, interface (hex fields)."""
    out = []
    for line in data.decode("utf-8", "backslashreplace").splitlines():
        f = line.split()
        if len(f) < 6:
            continue
        try:
            addr = str(ipaddress.IPv6Address(bytes.fromhex(f[0])))
            prefix = int(f[2], 16)
        except ValueError:
            continue
        out.append(NetAddress("inet6", addr, prefix, f[5]))
    return tuple(out)


def parse_mountinfo(data: bytes) -> list[MountPoint]:
    """/proc/<pid>/mountinfo, in order: ID PARENT MAJ:MIN ROOT TARGET OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER."""
    out = []
    for line in data.split(b"\n"):
        f = line.split(b" ")
        try:
            sep = f.index(b"-", 6)
        except ValueError:
            continue
        if len(f) < sep + 3:
            continue
        out.append(MountPoint(clean(unescape_mount_path(f[4])), clean(os.fsdecode(f[sep + 1])),
                              clean(unescape_mount_path(f[sep + 2])), clean(unescape_mount_path(f[3])), clean(os.fsdecode(f[2]))))
    return out


def mnt_details(mounts: list[MountPoint]) -> MntDetails:
    root = shm = None
    volumes = []
    for m in mounts:
        if m.target == "/":
            root = m  # the last one is on top
        elif m.target == "/dev/shm":
            shm = m
        elif not any(m.target == t or m.target.startswith(t + "/") for t in _HIDDEN_TREES):
            volumes.append(m)
    # A mount hidden under a later one at the same place is not what the member sees.
    top = {m.target: m for m in volumes}
    return MntDetails(root, tuple(m for m in volumes if top[m.target] is m), shm)


def parse_sysvipc(kind: str, text: str) -> list[IpcObject]:
    """/proc/sysvipc/shm, sem or msg: a header line, then one object per line (key, id, perms, ...)."""
    lines = text.splitlines()
    if not lines:
        return []
    head = lines[0].split()
    size_col = {"shm": "size", "sem": "nsems", "msg": "cbytes"}[kind]
    try:
        ki, ii, si, ui = head.index("key"), head.index(kind + "id" if kind != "msg" else "msqid"), head.index(size_col), head.index("uid")
    except ValueError:
        return []
    out = []
    for line in lines[1:]:
        f = line.split()
        try:
            out.append(IpcObject(kind, int(f[ki]), int(f[ii]), int(f[si]), int(f[ui])))
        except (IndexError, ValueError):
            continue
    return out


def cgroup_paths(hierarchies: dict[str, str]) -> tuple[int, dict[str, str]]:
    """``procfs.parse_cgroup``'s {controllers: path} -> (version, {controller: path}); the unified hierarchy's
    path is under "" and each v1 hierarchy's directory name under "dir:NAME" (a hybrid node lists the unified
    one beside the v1 ones: version 1, unless the cgroupfs read is the unified one)."""
    paths: dict[str, str] = {}
    v1 = False
    for controllers, path in hierarchies.items():
        if not controllers:
            paths[""] = path
            continue
        v1 = True
        for c in controllers.split(","):
            paths[c] = path
        paths["dir:" + controllers] = path  # the hierarchy's directory name (cpu,cpuacct)
    return (1 if v1 else 2), paths


_V1_UNLIMITED = 1 << 62  # memory.limit_in_bytes without a limit is PAGE_COUNTER_MAX pages (~2^63)


def _read_text(path: str) -> str:
    with open(path, "rb") as f:
        return f.read(4096).decode("ascii", "replace").strip()


def cgroup_limits(root: str, version: int, paths: dict[str, str]) -> tuple[str, str, str, str]:
    """(path, cpu max, memory max, error) from the cgroupfs mounted at ``root``."""
    if version == 2:
        path = paths.get("", "")
        cpu_files: list[tuple[str, str]] = [("cpu.max", os.path.join(root, path.lstrip("/")))]
        mem_file = os.path.join(root, path.lstrip("/"), "memory.max")
    else:
        path = paths.get("memory", paths.get("cpu", ""))
        cpu_dir = next((k[4:] for k in paths if k.startswith("dir:") and "cpu" in k[4:].split(",")), "cpu")
        cpu_files = [("v1", os.path.join(root, cpu_dir, paths.get("cpu", "").lstrip("/")))]
        mem_file = os.path.join(root, "memory", paths.get("memory", "").lstrip("/"), "memory.limit_in_bytes")
    if not path:
        return "", "", "", "no cgroup path in /proc/<pid>/cgroup"
    if path.startswith("/.."):
        return path, "", "", "the member's cgroup is outside the reader's cgroup namespace: its limits cannot be located"
    errors = []
    cpu = mem = ""
    try:
        kind, d = cpu_files[0]
        if kind == "cpu.max":
            quota, _, period = _read_text(os.path.join(d, "cpu.max")).partition(" ")
            cpu = "max" if quota == "max" else f"{quota} {period}"
        else:
            quota = _read_text(os.path.join(d, "cpu.cfs_quota_us"))
            cpu = "max" if quota.startswith("-") else f"{quota} {_read_text(os.path.join(d, 'cpu.cfs_period_us'))}"
    except OSError as e:
        errors.append(_limit_error("cpu", root, cpu_files[0][1] if version == 2 else "", e))
    try:
        text = _read_text(mem_file)
        mem = "max" if text == "max" or (text.isdigit() and int(text) >= _V1_UNLIMITED) else text
    except OSError as e:
        errors.append(_limit_error("memory", root, os.path.dirname(mem_file) if version == 2 else "", e))
    return path, cpu, mem, "; ".join(errors)


def _limit_error(controller: str, root: str, v2_dir: str, e: OSError) -> str:
    """Why a limit file is missing: on v2, a controller not enabled on the cgroup has no files at all."""
    if v2_dir:
        try:
            enabled = _read_text(os.path.join(v2_dir, "cgroup.controllers")).split()
        except OSError:
            enabled = None
        if enabled is not None and controller not in enabled:
            return f"the {controller} controller is not enabled on this cgroup (its cgroup.controllers: {' '.join(enabled) or 'none'})"
    return f"{controller} limit unreadable under {root} ({e.strerror})"


def parse_status_nspid(data: bytes) -> tuple[str, int | None]:
    """/proc/<pid>/status -> (Name, the innermost NSpid: the pid in its own pid namespace)."""
    name, nspid = "", None
    for line in data.decode("utf-8", "backslashreplace").splitlines():
        if line.startswith("Name:"):
            name = line[5:].strip()
        elif line.startswith("NSpid:"):
            f = line.split()
            nspid = (decimal(f[-1], PID_MAX_LIMIT) or None) if len(f) > 1 else None
            break
    return name, nspid


# -- gathering --------------------------------------------------------------------------------------


def _why(e: Exception, what: str) -> str:
    if isinstance(e, NoSuchProcess):
        return f"the process exited before {what} could be read"
    if isinstance(e, AccessDenied):
        return f"permission denied reading {what}" + ("" if can_trace() else " (it takes root with CAP_SYS_PTRACE)")
    return f"{what}: {e}"


def _section(make: Callable[[], S], empty: Callable[..., S], what: str) -> S:
    try:
        return make()
    except (NoSuchProcess, AccessDenied, OSError) as e:
        return empty(error=_why(e, what))


def cgroup_root(host_root: str | None) -> str:
    """The node's cgroupfs: under --host-root when it is mounted there, else this machine's."""
    root = os.path.join(host_root or "/", "sys/fs/cgroup")
    if not os.path.isdir(root) or not os.listdir(root):
        root = "/sys/fs/cgroup"
    return root


def _net(proc: ProcFS, pid: int) -> NetDetails:
    interfaces = parse_net_dev(proc.read(pid, "net/dev"))
    v4 = ipv4_addresses(proc.read(pid, "net/fib_trie"), proc.read(pid, "net/route"))
    try:
        v6 = parse_if_inet6(proc.read(pid, "net/if_inet6"))
    except NoSuchProcess:
        proc.start_time(pid)  # raises if the process is gone; else IPv6 is off in this namespace
        v6 = ()
    return NetDetails(interfaces, v4 + v6)


def _cgroup(proc: ProcFS, pid: int, root: str) -> CgroupDetails:
    version, paths = cgroup_paths(proc.cgroups(pid))
    if version == 1 and "" in paths and os.path.exists(os.path.join(root, "cgroup.controllers")):
        version = 2  # a hybrid process's lines on a node whose cgroupfs is the unified hierarchy: its "0::" path counts
    path, cpu, mem, error = cgroup_limits(root, version, paths)
    return CgroupDetails(clean(path), version, cpu, mem, error)


def _user(m: Member) -> UserDetails:
    uid = m.process.uid if m.process is not None else None
    if not m.uid_map and not m.gid_map:
        return UserDetails(uid=uid, error="no id maps: this kernel has no user namespaces, or they could not be read")
    return UserDetails(outside_id(m.uid_map, 0), outside_id(m.gid_map, 0), uid)


def _pids(proc: ProcFS, running: list[Member]) -> dict[int, PidDetails]:
    """Per pid namespace of the members: how many processes are in it, and the first few."""
    inos = {m.namespaces["pid"].ino for m in running if "pid" in m.namespaces}
    out = {}
    for ino, (nprocs, pids) in proc.members_of("pid", inos, SHOWN_PROCESSES).items():
        shown = []
        for pid in pids:
            try:
                name, nspid = parse_status_nspid(proc.read(pid, "status", 8192))
            except (NoSuchProcess, AccessDenied):
                continue
            shown.append(SeenProcess(pid, nspid if nspid is not None else pid, clean(name)))
        out[ino] = PidDetails(nprocs, tuple(shown)) if nprocs else PidDetails(error="no process is left in its pid namespace")
    return out


def _entered(proc: ProcFS, running: list[Member]) -> dict[tuple[str, int], dict[str, Any]]:
    """Per (type, inode) of the members' uts and ipc namespaces: what the helper read inside it."""
    jobs: list[tuple[str, int]] = []
    keys: list[tuple[str, int]] = []
    out: dict[tuple[str, int], dict[str, Any]] = {}
    try:
        for m in running:
            assert m.process is not None
            for t in ("uts", "ipc"):
                ns = m.namespaces.get(t)
                if ns is None or (t, ns.ino) in out or (t, ns.ino) in keys:
                    continue
                try:
                    fd = proc.open_ns(m.process.pid, t)
                except (NoSuchProcess, AccessDenied) as e:
                    out[(t, ns.ino)] = {"error": _why(e, f"/proc/{m.process.pid}/ns/{t}")}
                    continue
                if os.fstat(fd).st_ino != ns.ino or not proc.is_alive(m.process.id):
                    os.close(fd)  # the pid is another process now
                    out[(t, ns.ino)] = {"error": f"the process exited before its {t} namespace could be entered"}
                    continue
                jobs.append((t, fd))
                keys.append((t, ns.ino))
        for key, answer in zip(keys, enter.enter(proc.root, jobs), strict=True):
            out[key] = answer
    finally:
        for _t, fd in jobs:
            os.close(fd)
    return out


def member_details(proc: ProcFS, m: Member, inside: Mapping[tuple[str, int], dict[str, Any]],
                   pids: Mapping[int, PidDetails], cgroup_fs: str) -> MemberDetails:
    assert m.process is not None
    pid = m.process.pid
    uts_answer = inside.get(("uts", m.namespaces["uts"].ino), {}) if "uts" in m.namespaces else {}
    ipc_answer = inside.get(("ipc", m.namespaces["ipc"].ino), {}) if "ipc" in m.namespaces else {}
    if "error" in ipc_answer:
        ipc = IpcDetails(error=str(ipc_answer["error"]))
    else:
        ipc = IpcDetails(tuple(o for k in enter.SYSVIPC for o in parse_sysvipc(k, str(ipc_answer.get(k, "")))))
    pid_ns = m.namespaces.get("pid")
    details = MemberDetails(
        net=_section(lambda: _net(proc, pid), NetDetails, f"/proc/{pid}/net"),
        uts=UtsDetails(clean(str(uts_answer.get("hostname", ""))), str(uts_answer.get("error", ""))),
        ipc=ipc,
        mnt=_section(lambda: mnt_details(parse_mountinfo(proc.read(pid, "mountinfo"))), MntDetails, f"/proc/{pid}/mountinfo"),
        user=_user(m),
        cgroup=_section(lambda: _cgroup(proc, pid, cgroup_fs), CgroupDetails, f"/proc/{pid}/cgroup"),
        pid=pids.get(pid_ns.ino, PidDetails(error="no process is left in its pid namespace")) if pid_ns else PidDetails(),
    )
    if not proc.is_alive(m.process.id):  # what was read by pid may be another process's
        gone = f"the process {pid} exited while its details were read"
        return MemberDetails._make(section._replace(error=gone) for section in details)
    return details


def gather(proc: ProcFS, view: PodView, host_root: str | None) -> PodView:
    """The view with every running member's details."""
    running = [m for m in view.members if m.running and m.process is not None]
    if not running:
        return view
    inside = _entered(proc, running)
    pids = _pids(proc, running)
    fs = cgroup_root(host_root)
    members = [m._replace(details=member_details(proc, m, inside, pids, fs)) if m in running else m for m in view.members]
    return view._replace(members=members)
