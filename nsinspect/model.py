"""The model: namespaces, processes, pods and their members.

It describes; it discovers nothing and knows no output format, no gRPC, no rich.
Discovery lives in ``procfs``/``discover``/``pods``; formats live in ``render``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

# The eight namespace types, in the order lsns and /proc/<pid>/ns list them.
NS_TYPES: tuple[str, ...] = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")

# Sharing states over the running members of a pod (PRODUCT.md, "Sharing states").
HOST, SHARED, PRIVATE, MIXED = "host", "shared", "private", "mixed"
STATES: tuple[str, ...] = (SHARED, PRIVATE, HOST, MIXED)

# Member roles.
SANDBOX, INIT, APP, EPHEMERAL = "sandbox", "init", "app", "ephemeral"
ROLES: tuple[str, ...] = (SANDBOX, INIT, APP, EPHEMERAL)


class NamespaceId(NamedTuple):
    """A namespace's identity: the (device, inode) pair of its nsfs inode.

    Inode numbers alone are what lsns and ``readlink`` show (``net:[4026531993]``);
    every namespace lives on the one nsfs superblock, so ``dev`` is read once per scan.
    """

    dev: int
    ino: int


class ProcessId(NamedTuple):
    """A process's identity: its pid and its start time (clock ticks after boot).

    Pids are reused; (pid, start time) is not.
    """

    pid: int
    start_time: int


@dataclass(slots=True)
class Process:
    id: ProcessId
    ppid: int
    uid: int | None
    user: str
    comm: str
    cmdline: str  # the command line joined by spaces, or "" (kernel threads, zombies)

    @property
    def pid(self) -> int:
        return self.id.pid

    @property
    def command(self) -> str:
        """What lsns shows in COMMAND: the command line, else the name."""
        return self.cmdline or self.comm


@dataclass(frozen=True, slots=True)
class PodRef:
    namespace: str
    name: str
    uid: str = ""


@dataclass(frozen=True, slots=True)
class ContainerRef:
    name: str
    id: str


@dataclass(slots=True)
class ScanStats:
    """What a scan of /proc saw, and what it could not read (never hidden)."""

    processes: int = 0  # numeric /proc entries listed
    vanished: int = 0  # exited between listing and reading
    denied: list[int] = field(default_factory=list)  # pids whose ns links we may not read
    as_root: bool = False  # was the scan made by root? (then "denied" means hidden by a sandbox/LSM)

    def merge(self, other: ScanStats) -> None:
        self.processes += other.processes
        self.vanished += other.vanished
        self.denied.extend(other.denied)


@dataclass(slots=True)
class Namespace:
    """One namespace as the node view shows it (an lsns row)."""

    id: NamespaceId
    type: str
    nprocs: int
    pid: int  # the lowest pid in it, as lsns reports
    process: Process | None  # that process, or None when it vanished before we read it
    node: bool  # is it the node's own namespace of this type?
    pods: list[PodRef] = field(default_factory=list)
    containers: list[ContainerRef] = field(default_factory=list)


@dataclass(slots=True)
class NodeView:
    namespaces: list[Namespace]
    node_namespaces: dict[str, NamespaceId]
    stats: ScanStats
    types: tuple[str, ...] = NS_TYPES


@dataclass(slots=True)
class ProcessView:
    """One process, its eight namespaces, and the pod/container it belongs to."""

    process: Process
    namespaces: dict[str, NamespaceId | None]  # None: the link is gone (zombie)
    node_namespaces: dict[str, NamespaceId]
    pod: PodRef | None = None
    container: ContainerRef | None = None


@dataclass(slots=True)
class Member:
    """A member of a pod: its sandbox (pause) or one of its containers."""

    name: str
    role: str
    id: str
    state: str  # running, exited, created, unknown, ready, notready
    process: Process | None = None
    namespaces: dict[str, NamespaceId] = field(default_factory=dict)  # all 8 when running
    target_id: str = ""  # for ephemeral members: the container whose pid namespace it joins
    attempt: int = 0
    created_at: int = 0  # nanoseconds since the epoch, as CRI reports
    finished_at: int = 0
    image: str = ""

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and bool(self.namespaces)


@dataclass(slots=True)
class Verdict:
    """The sharing state of one namespace type over a pod's running members."""

    actual: str | None  # None when no member is running
    expected: str | None
    reason: str = ""  # why that is expected, in words

    @property
    def ok(self) -> bool:
        return self.actual is not None and self.expected is not None and self.actual == self.expected


@dataclass(slots=True)
class PodInfo:
    namespace: str
    name: str
    uid: str
    sandbox_id: str
    node: str
    state: str = ""
    created_at: int = 0
    # What the pod asked the runtime for (CRI NamespaceOption): POD, CONTAINER, NODE or TARGET.
    options: dict[str, str] = field(default_factory=dict)
    hostname: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> PodRef:
        return PodRef(self.namespace, self.name, self.uid)


@dataclass(slots=True)
class PodView:
    pod: PodInfo
    members: list[Member]
    sharing: dict[str, Verdict]
    node_namespaces: dict[str, NamespaceId]
    runtime: str = ""  # "containerd 1.6.20"
    notes: list[str] = field(default_factory=list)  # how roles or expectations were inferred


@dataclass(slots=True)
class PodsView:
    pods: list[PodView]
    node: str = ""
    runtime: str = ""
