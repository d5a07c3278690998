"""The model: namespaces, processes, pods and their members.

It describes; it discovers nothing and knows no output format, no gRPC, no rich.
Discovery lives in ``procfs``/``discover``/``pods``; formats live in ``render``.

Records are NamedTuples (as psutil does): immutable, cheap to define at start-up (the
CLI's budget is 250 ms) and cheap to build by the thousand (a busy node has ~5,000
namespace rows).  Change one with ``_replace``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

# The eight namespace types, in the order lsns and /proc/<pid>/ns list them (defined with the
# package: the CLI declares its options with them without importing the model).
from nsinspect import NS_TYPES as NS_TYPES

_NO_NAMESPACES: Mapping[str, NamespaceId] = MappingProxyType({})
_NO_STRINGS: Mapping[str, str] = MappingProxyType({})

# Sharing states over the running members of a pod (README, "Sharing states").
HOST, SHARED, PRIVATE, MIXED = "host", "shared", "private", "mixed"
STATES: tuple[str, ...] = (SHARED, PRIVATE, HOST, MIXED)

# Member roles.
SANDBOX, INIT, APP, EPHEMERAL = "sandbox", "init", "app", "ephemeral"
ROLES: tuple[str, ...] = (SANDBOX, INIT, APP, EPHEMERAL)
ROLE_ORDER = {role: i for i, role in enumerate(ROLES)}  # how members are listed

# Notes a node writes when it infers roles without the pod's spec (cluster mode drops them).
INFERRED_INIT = "init containers inferred: exited before the first app container was created"
INFERRED_EPHEMERAL = "ephemeral containers inferred: their pid namespace targets another container"
INFERRED_ROLES = (INFERRED_INIT, INFERRED_EPHEMERAL)


class NamespaceId(NamedTuple):
    """A namespace's identity: the (device, inode) pair of its nsfs inode.

    Inode numbers alone are what lsns and ``readlink`` show (``net:[4026531993]``);
    every namespace lives on the one nsfs superblock, so ``dev`` is read once per scan.
    """

    dev: int
    ino: int


class IdRange(NamedTuple):
    """One line of a user namespace's id map (``/proc/<pid>/uid_map``, user_namespaces(7)), or one CRI
    IDMapping: ``length`` ids from ``inside`` (container_id) are ``outside`` (host_id) onwards on the node."""

    inside: int
    outside: int
    length: int


def outside_id(ranges: tuple[IdRange, ...], inside: int) -> int | None:
    """The node's id for an id inside the namespace; None when the map does not map it."""
    for r in ranges:
        if r.inside <= inside < r.inside + r.length:
            return r.outside + inside - r.inside
    return None


class ProcessId(NamedTuple):
    """A process's identity: its pid and its start time (clock ticks after boot).

    Pids are reused; (pid, start time) is not.
    """

    pid: int
    start_time: int


class Process(NamedTuple):
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


class PodRef(NamedTuple):
    namespace: str
    name: str
    uid: str = ""


class ContainerRef(NamedTuple):
    name: str
    id: str


class ScanStats(NamedTuple):
    """What a scan of /proc saw, and what it could not read (never hidden)."""

    processes: int = 0  # numeric /proc entries listed
    vanished: int = 0  # exited between listing and reading
    denied: tuple[int, ...] = ()  # pids whose ns links we may not read
    # Had the scan root's power to read every process (uid 0 with CAP_SYS_PTRACE)?  Then "denied" means
    # hidden by a sandbox or security module, not a lack of privilege.
    as_root: bool = False
    fds_denied: int = 0  # processes whose open fds could not be read (their fds on namespaces go unseen)
    # Open fds on namespaces whose type could not be read, and that no row's inode names: (inode, pid, fd).
    # (Another user's fd table read through fdinfo, its pid not ours to open: see hidden._FdInfo.)
    fds_untyped: tuple[tuple[int, int, int], ...] = ()


class NsMount(NamedTuple):
    """A bind mount of a namespace (an nsfs mount, as ``ip netns add`` and containerd's /run/netns/cni-* make)."""

    path: str  # the mount point, as seen in that mount namespace (untrusted: escape before printing)
    mnt_ns: int  # the inode of the mount namespace it was seen in (the node's when mounted there)


class NsFd(NamedTuple):
    """An open file descriptor on a namespace (``/proc/<pid>/fd/<fd>`` -> ``net:[4026532...]``)."""

    pid: int
    fd: int


class Namespace(NamedTuple):
    """One namespace as the node view shows it (an lsns row).

    A namespace no process is in has ``nprocs`` 0, ``pid`` 0 and no process: it is held by
    ``mounts`` or ``fds``, or only as the parent or owner of another namespace.
    """

    id: NamespaceId
    type: str
    nprocs: int
    pid: int  # the lowest pid in it, as lsns reports; 0 when no process is in it
    process: Process | None  # that process, or None when it vanished before we read it (or nprocs is 0)
    node: bool  # is it the node's own namespace of this type?
    pods: tuple[PodRef, ...] = ()
    containers: tuple[ContainerRef, ...] = ()
    parent: NamespaceId | None = None  # pid and user namespaces: the parent (NS_GET_PARENT); None at the top or unknown
    owner: NamespaceId | None = None  # the owning user namespace (NS_GET_USERNS); None for the initial one or unknown
    mounts: tuple[NsMount, ...] = ()  # where it is bind-mounted (one entry per path)
    fds: tuple[NsFd, ...] = ()  # open file descriptors on it

    @property
    def held(self) -> bool:
        """Is it alive without a process in it?"""
        return self.nprocs == 0


class NodeView(NamedTuple):
    namespaces: list[Namespace]  # built by discovery, not changed after
    node_namespaces: dict[str, NamespaceId]
    stats: ScanStats
    types: tuple[str, ...] = NS_TYPES
    node: str = ""  # the node's name
    runtime: str = ""  # "containerd 1.6.20"; empty when the node has no runtime
    runtime_error: str = ""  # why no pod is named (the runtime did not answer); empty when it did, or there is none


class ProcessView(NamedTuple):
    """One process, its eight namespaces, and the pod/container it belongs to."""

    process: Process
    namespaces: dict[str, NamespaceId | None]  # None: the link is gone (zombie)
    node_namespaces: dict[str, NamespaceId]
    pod: PodRef | None = None
    container: ContainerRef | None = None
    node: str = ""
    runtime_error: str = ""  # why pod and container are unknown (the runtime did not answer)


class Stray(NamedTuple):
    """A process of a member's cgroup that is not in all of the member's namespaces: it unshared or setns'd away.

    ``differs`` holds only the types where it differs: type -> the namespace it is in instead.
    """

    process: Process
    differs: Mapping[str, NamespaceId]

    @property
    def pid(self) -> int:
        return self.process.pid
# -- evidence: what the kernel shows about a member's namespaces beyond their inodes (``pod --details``) --
# Each section says what it found, or in ``error`` why the kernel gave no answer (never a guess).
# Strings from the kernel (hostnames, interface names, paths) are untrusted: escape before printing.


class NetAddress(NamedTuple):
    """A local address of a network namespace (IPv4 from fib_trie, IPv6 from if_inet6)."""

    family: str  # inet, inet6
    address: str
    prefix: int | None  # None when no route of the namespace names it
    interface: str  # "" when /proc does not tie the address to an interface (IPv4 without a link route)


class NetDetails(NamedTuple):
    interfaces: tuple[str, ...] = ()  # /proc/<pid>/net/dev, in its order
    addresses: tuple[NetAddress, ...] = ()
    error: str = ""


class UtsDetails(NamedTuple):
    hostname: str = ""  # the UTS namespace's nodename (read inside it)
    error: str = ""


class IpcObject(NamedTuple):
    """A System V object of an IPC namespace (/proc/sysvipc/shm, sem, msg read inside it)."""

    kind: str  # shm, sem, msg
    key: int
    id: int
    size: int  # shm: bytes; sem: semaphores in the set; msg: bytes queued
    uid: int  # its owner, in the reader's user namespace


class IpcDetails(NamedTuple):
    objects: tuple[IpcObject, ...] = ()
    error: str = ""


class MountPoint(NamedTuple):
    """One line of /proc/<pid>/mountinfo."""

    target: str  # where it is mounted, in the member's mount namespace
    fstype: str
    source: str
    root: str  # the mounted directory within its filesystem
    device: str  # major:minor of the filesystem


class MntDetails(NamedTuple):
    root: MountPoint | None = None  # what the member sees as /
    volumes: tuple[MountPoint, ...] = ()  # mounts outside /proc, /sys and /dev
    shm: MountPoint | None = None  # /dev/shm (POSIX shared memory)
    error: str = ""


class UserDetails(NamedTuple):
    root_uid: int | None = None  # the node's uid for uid 0 of the member's user namespace (None: unmapped)
    root_gid: int | None = None
    uid: int | None = None  # the node's uid the member's process runs as
    error: str = ""


class CgroupDetails(NamedTuple):
    path: str = ""  # /proc/<pid>/cgroup (v2: the unified path; v1: the memory controller's)
    version: int = 0  # 1 or 2
    cpu_max: str = ""  # "max" or "QUOTA PERIOD" in microseconds (v2 cpu.max; v1 cfs_quota_us/cfs_period_us)
    memory_max: str = ""  # "max" or bytes
    error: str = ""  # why the path or the limits are not known


class SeenProcess(NamedTuple):
    pid: int  # on the node
    ns_pid: int  # in the member's pid namespace (NSpid)
    comm: str


class PidDetails(NamedTuple):
    nprocs: int = 0  # processes in the member's pid namespace
    processes: tuple[SeenProcess, ...] = ()  # the first few of them (lowest pids)
    error: str = ""


class MemberDetails(NamedTuple):
    """The evidence of one running member, per namespace type (time has none)."""

    net: NetDetails = NetDetails()
    uts: UtsDetails = UtsDetails()
    ipc: IpcDetails = IpcDetails()
    mnt: MntDetails = MntDetails()
    user: UserDetails = UserDetails()
    cgroup: CgroupDetails = CgroupDetails()
    pid: PidDetails = PidDetails()


class Member(NamedTuple):
    """A member of a pod: its sandbox (pause) or one of its containers."""

    name: str
    role: str
    id: str
    state: str  # running, exited, created, unknown, ready, notready
    process: Process | None = None
    namespaces: Mapping[str, NamespaceId] = _NO_NAMESPACES  # all 8 when running
    target_id: str = ""  # for ephemeral members: the container whose pid namespace it joins
    attempt: int = 0
    created_at: int = 0  # nanoseconds since the epoch, as CRI reports
    finished_at: int = 0
    image: str = ""
    sidecar: bool = False  # an init container with restartPolicy Always (known from the pod spec only)
    # The kernel's id maps of its user namespace (/proc/<pid>/uid_map, gid_map); () when not running.
    uid_map: tuple[IdRange, ...] = ()
    gid_map: tuple[IdRange, ...] = ()
    # Processes of its cgroup whose namespaces differ from its main process's (``node.strays``); () when not running.
    strays: tuple[Stray, ...] = ()
    details: MemberDetails | None = None  # the evidence (``pod --details``); None when not asked or not running
    # A sandbox without a process (gone, or never: CRI-O's drop_infra_ctr): type -> the path its namespace is
    # pinned at (a bind mount of nsfs the runtime made, e.g. /var/run/netns/cni-...).  Those namespaces are in
    # ``namespaces`` too, read by stat of that path, not from a process.  Untrusted: escape before printing.
    pinned: Mapping[str, str] = _NO_STRINGS

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and bool(self.namespaces)

    def holds(self, t: str) -> bool:
        """Is its namespace of type ``t`` known: it runs, or that namespace is pinned (``pinned``)?"""
        return t in self.namespaces and (self.running or t in self.pinned)


class Verdict(NamedTuple):
    """The sharing state of one namespace type over a pod's running members.

    Three sources: ``actual`` is the kernel's (inodes), ``expected`` follows from what the runtime
    was asked for (CRI NamespaceOption) and the node, ``declared`` from the pod's spec (cluster
    mode only; None when the spec says nothing about this type, or is not known).
    """

    actual: str | None  # None when no member is running
    expected: str | None
    reason: str = ""  # why that is expected, in words
    declared: str | None = None
    declared_reason: str = ""  # the spec fields behind ``declared``
    disagreement: str = ""  # why the sources disagree, in one sentence (``sharing.explain``); "" when they agree
    evidence: str = ""  # what the kernel shows beyond inodes, in words (user: the id maps)

    @property
    def ok(self) -> bool:
        return (
            self.actual is not None and self.expected is not None and self.actual == self.expected
            and (self.declared is None or self.declared == self.expected)
        )


class PodInfo(NamedTuple):
    namespace: str
    name: str
    uid: str
    sandbox_id: str
    node: str
    state: str = ""
    created_at: int = 0
    # What the pod asked the runtime for (CRI NamespaceOption): POD, CONTAINER, NODE or TARGET.
    options: Mapping[str, str] = _NO_STRINGS
    hostname: str = ""
    labels: Mapping[str, str] = _NO_STRINGS
    # The id maps the runtime was asked for (CRI userns_options uids/gids, mode POD); () when none.
    uid_mappings: tuple[IdRange, ...] = ()
    gid_mappings: tuple[IdRange, ...] = ()

    @property
    def ref(self) -> PodRef:
        return PodRef(self.namespace, self.name, self.uid)


class ContainerDecl(NamedTuple):
    """A container as the pod's spec declares it."""

    name: str
    role: str  # init, app or ephemeral
    sidecar: bool = False  # init container with restartPolicy: Always (a native sidecar)
    target: str = ""  # ephemeral: targetContainerName
    state: str = ""  # from the pod's status: running, waiting (ImagePullBackOff), terminated (Completed)


class PodSpec(NamedTuple):
    """What the pod's spec (Kubernetes API) declares about namespaces: cluster mode only."""

    node: str = ""  # spec.nodeName
    host_network: bool = False
    host_pid: bool = False
    host_ipc: bool = False
    host_users: bool | None = None  # None: not set (the default, true)
    share_process_namespace: bool = False
    containers: tuple[ContainerDecl, ...] = ()
    phase: str = ""  # status.phase

    def find(self, name: str) -> ContainerDecl | None:
        return next((c for c in self.containers if c.name == name), None)


class PodView(NamedTuple):
    pod: PodInfo
    members: list[Member]
    sharing: dict[str, Verdict]
    node_namespaces: dict[str, NamespaceId]
    runtime: str = ""  # "containerd 1.6.20"
    notes: tuple[str, ...] = ()  # how roles or expectations were inferred
    lsns: tuple[Namespace, ...] = ()  # the pod's namespaces as lsns rows (wide output only: needs a full scan)
    spec: PodSpec | None = None  # what the pod's spec declares (cluster mode)

    @property
    def stray_count(self) -> int:
        """Processes of its members' cgroups that are not in all of their member's namespaces."""
        return sum(len(m.strays) for m in self.members)

    @property
    def ok(self) -> bool:
        """Every type whose members run agrees (kernel, runtime and, when known, spec)."""
        return all(s.ok or s.actual is None for s in self.sharing.values())


class PodsView(NamedTuple):
    """``pods`` on one node."""

    pods: list[PodView]
    node: str = ""
    runtime: str = ""

    @property
    def nodes(self) -> list[NodeResult]:
        return []  # one node answered: itself (ClusterPodsView lists every node asked)

    @property
    def failed(self) -> list[NodeResult]:
        return []


class NodeResult(NamedTuple):
    """How one node's agent answered a cluster-wide question."""

    node: str
    runtime: str = ""
    pods: int = 0  # pods the API server places on it (that we asked about)
    error: str = ""  # the one-sentence error, when it could not answer
    seconds: float = 0.0


class ClusterPodsView(NamedTuple):
    """``pods`` across the cluster: every node's answer, and what could not be asked."""

    pods: list[PodView]  # each with its spec; pods whose node did not answer have no members
    nodes: list[NodeResult]
    namespace: str | None = None  # None: every namespace

    @property
    def failed(self) -> list[NodeResult]:
        return [n for n in self.nodes if n.error]


class Expectation(NamedTuple):
    type: str
    expected: str
    actual: str | None
    ok: bool
    evidence: tuple[tuple[str, str, int], ...]  # (member, role, inode) of each running member judged
    hint: str = ""
    apart: tuple[tuple[str, str, int], ...] = ()  # running members left out of the judgement (cgroup: the sandbox)
    apart_reason: str = ""  # why they were left out


class CheckView(NamedTuple):
    pod: PodView
    results: tuple[Expectation, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)
