from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetNodeRequest(_message.Message):
    __slots__ = ("types", "columns")
    TYPES_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    types: _containers.RepeatedScalarFieldContainer[str]
    columns: bool
    def __init__(self, types: _Optional[_Iterable[str]] = ..., columns: _Optional[bool] = ...) -> None: ...

class GetProcessRequest(_message.Message):
    __slots__ = ("pid",)
    PID_FIELD_NUMBER: _ClassVar[int]
    pid: int
    def __init__(self, pid: _Optional[int] = ...) -> None: ...

class ListPodsRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class GetPodRequest(_message.Message):
    __slots__ = ("namespace", "name", "uid", "container", "detail", "details")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    uid: str
    container: str
    detail: bool
    details: bool
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., uid: _Optional[str] = ..., container: _Optional[str] = ..., detail: _Optional[bool] = ..., details: _Optional[bool] = ...) -> None: ...

class NamespaceId(_message.Message):
    __slots__ = ("dev", "ino")
    DEV_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    dev: int
    ino: int
    def __init__(self, dev: _Optional[int] = ..., ino: _Optional[int] = ...) -> None: ...

class ProcessId(_message.Message):
    __slots__ = ("pid", "start_time")
    PID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    pid: int
    start_time: int
    def __init__(self, pid: _Optional[int] = ..., start_time: _Optional[int] = ...) -> None: ...

class Process(_message.Message):
    __slots__ = ("id", "ppid", "uid", "user", "comm", "cmdline")
    ID_FIELD_NUMBER: _ClassVar[int]
    PPID_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    COMM_FIELD_NUMBER: _ClassVar[int]
    CMDLINE_FIELD_NUMBER: _ClassVar[int]
    id: ProcessId
    ppid: int
    uid: int
    user: str
    comm: str
    cmdline: str
    def __init__(self, id: _Optional[_Union[ProcessId, _Mapping]] = ..., ppid: _Optional[int] = ..., uid: _Optional[int] = ..., user: _Optional[str] = ..., comm: _Optional[str] = ..., cmdline: _Optional[str] = ...) -> None: ...

class PodRef(_message.Message):
    __slots__ = ("namespace", "name", "uid")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    uid: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., uid: _Optional[str] = ...) -> None: ...

class ContainerRef(_message.Message):
    __slots__ = ("name", "id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    id: str
    def __init__(self, name: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class ScanStats(_message.Message):
    __slots__ = ("processes", "vanished", "denied", "as_root", "fds_denied", "fds_untyped")
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    VANISHED_FIELD_NUMBER: _ClassVar[int]
    DENIED_FIELD_NUMBER: _ClassVar[int]
    AS_ROOT_FIELD_NUMBER: _ClassVar[int]
    FDS_DENIED_FIELD_NUMBER: _ClassVar[int]
    FDS_UNTYPED_FIELD_NUMBER: _ClassVar[int]
    processes: int
    vanished: int
    denied: _containers.RepeatedScalarFieldContainer[int]
    as_root: bool
    fds_denied: int
    fds_untyped: _containers.RepeatedCompositeFieldContainer[UntypedFd]
    def __init__(self, processes: _Optional[int] = ..., vanished: _Optional[int] = ..., denied: _Optional[_Iterable[int]] = ..., as_root: _Optional[bool] = ..., fds_denied: _Optional[int] = ..., fds_untyped: _Optional[_Iterable[_Union[UntypedFd, _Mapping]]] = ...) -> None: ...

class UntypedFd(_message.Message):
    __slots__ = ("ino", "pid", "fd")
    INO_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    FD_FIELD_NUMBER: _ClassVar[int]
    ino: int
    pid: int
    fd: int
    def __init__(self, ino: _Optional[int] = ..., pid: _Optional[int] = ..., fd: _Optional[int] = ...) -> None: ...

class NsMount(_message.Message):
    __slots__ = ("path", "mnt_ns")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MNT_NS_FIELD_NUMBER: _ClassVar[int]
    path: str
    mnt_ns: int
    def __init__(self, path: _Optional[str] = ..., mnt_ns: _Optional[int] = ...) -> None: ...

class NsFd(_message.Message):
    __slots__ = ("pid", "fd")
    PID_FIELD_NUMBER: _ClassVar[int]
    FD_FIELD_NUMBER: _ClassVar[int]
    pid: int
    fd: int
    def __init__(self, pid: _Optional[int] = ..., fd: _Optional[int] = ...) -> None: ...

class Namespace(_message.Message):
    __slots__ = ("id", "type", "nprocs", "pid", "process", "node", "pods", "containers", "parent", "owner", "mounts", "fds")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NPROCS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    MOUNTS_FIELD_NUMBER: _ClassVar[int]
    FDS_FIELD_NUMBER: _ClassVar[int]
    id: NamespaceId
    type: str
    nprocs: int
    pid: int
    process: Process
    node: bool
    pods: _containers.RepeatedCompositeFieldContainer[PodRef]
    containers: _containers.RepeatedCompositeFieldContainer[ContainerRef]
    parent: NamespaceId
    owner: NamespaceId
    mounts: _containers.RepeatedCompositeFieldContainer[NsMount]
    fds: _containers.RepeatedCompositeFieldContainer[NsFd]
    def __init__(self, id: _Optional[_Union[NamespaceId, _Mapping]] = ..., type: _Optional[str] = ..., nprocs: _Optional[int] = ..., pid: _Optional[int] = ..., process: _Optional[_Union[Process, _Mapping]] = ..., node: _Optional[bool] = ..., pods: _Optional[_Iterable[_Union[PodRef, _Mapping]]] = ..., containers: _Optional[_Iterable[_Union[ContainerRef, _Mapping]]] = ..., parent: _Optional[_Union[NamespaceId, _Mapping]] = ..., owner: _Optional[_Union[NamespaceId, _Mapping]] = ..., mounts: _Optional[_Iterable[_Union[NsMount, _Mapping]]] = ..., fds: _Optional[_Iterable[_Union[NsFd, _Mapping]]] = ...) -> None: ...

class NodeView(_message.Message):
    __slots__ = ("namespaces", "node_namespaces", "stats", "types", "node", "runtime", "runtime_error", "columns")
    class NodeNamespacesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: NamespaceId
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[NamespaceId, _Mapping]] = ...) -> None: ...
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    NODE_NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_ERROR_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    namespaces: _containers.RepeatedCompositeFieldContainer[Namespace]
    node_namespaces: _containers.MessageMap[str, NamespaceId]
    stats: ScanStats
    types: _containers.RepeatedScalarFieldContainer[str]
    node: str
    runtime: str
    runtime_error: str
    columns: NodeColumns
    def __init__(self, namespaces: _Optional[_Iterable[_Union[Namespace, _Mapping]]] = ..., node_namespaces: _Optional[_Mapping[str, NamespaceId]] = ..., stats: _Optional[_Union[ScanStats, _Mapping]] = ..., types: _Optional[_Iterable[str]] = ..., node: _Optional[str] = ..., runtime: _Optional[str] = ..., runtime_error: _Optional[str] = ..., columns: _Optional[_Union[NodeColumns, _Mapping]] = ...) -> None: ...

class NodeColumns(_message.Message):
    __slots__ = ("dev", "ino", "type", "nprocs", "pid", "process", "node", "type_names", "proc_pid", "proc_start_time", "proc_ppid", "proc_uid", "proc_uid_unknown", "proc_user", "proc_comm", "proc_cmdline", "parent_row", "parent_dev", "parent_ino", "owner_row", "owner_dev", "owner_ino", "pod_row", "pod_namespace", "pod_name", "pod_uid", "container_row", "container_name", "container_id", "mount_row", "mount_path", "mount_mnt_ns", "fd_row", "fd_pid", "fd_fd")
    DEV_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NPROCS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAMES_FIELD_NUMBER: _ClassVar[int]
    PROC_PID_FIELD_NUMBER: _ClassVar[int]
    PROC_START_TIME_FIELD_NUMBER: _ClassVar[int]
    PROC_PPID_FIELD_NUMBER: _ClassVar[int]
    PROC_UID_FIELD_NUMBER: _ClassVar[int]
    PROC_UID_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    PROC_USER_FIELD_NUMBER: _ClassVar[int]
    PROC_COMM_FIELD_NUMBER: _ClassVar[int]
    PROC_CMDLINE_FIELD_NUMBER: _ClassVar[int]
    PARENT_ROW_FIELD_NUMBER: _ClassVar[int]
    PARENT_DEV_FIELD_NUMBER: _ClassVar[int]
    PARENT_INO_FIELD_NUMBER: _ClassVar[int]
    OWNER_ROW_FIELD_NUMBER: _ClassVar[int]
    OWNER_DEV_FIELD_NUMBER: _ClassVar[int]
    OWNER_INO_FIELD_NUMBER: _ClassVar[int]
    POD_ROW_FIELD_NUMBER: _ClassVar[int]
    POD_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_NAME_FIELD_NUMBER: _ClassVar[int]
    POD_UID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ROW_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    MOUNT_ROW_FIELD_NUMBER: _ClassVar[int]
    MOUNT_PATH_FIELD_NUMBER: _ClassVar[int]
    MOUNT_MNT_NS_FIELD_NUMBER: _ClassVar[int]
    FD_ROW_FIELD_NUMBER: _ClassVar[int]
    FD_PID_FIELD_NUMBER: _ClassVar[int]
    FD_FD_FIELD_NUMBER: _ClassVar[int]
    dev: _containers.RepeatedScalarFieldContainer[int]
    ino: _containers.RepeatedScalarFieldContainer[int]
    type: _containers.RepeatedScalarFieldContainer[int]
    nprocs: _containers.RepeatedScalarFieldContainer[int]
    pid: _containers.RepeatedScalarFieldContainer[int]
    process: _containers.RepeatedScalarFieldContainer[int]
    node: _containers.RepeatedScalarFieldContainer[bool]
    type_names: _containers.RepeatedScalarFieldContainer[str]
    proc_pid: _containers.RepeatedScalarFieldContainer[int]
    proc_start_time: _containers.RepeatedScalarFieldContainer[int]
    proc_ppid: _containers.RepeatedScalarFieldContainer[int]
    proc_uid: _containers.RepeatedScalarFieldContainer[int]
    proc_uid_unknown: _containers.RepeatedScalarFieldContainer[int]
    proc_user: _containers.RepeatedScalarFieldContainer[str]
    proc_comm: _containers.RepeatedScalarFieldContainer[str]
    proc_cmdline: _containers.RepeatedScalarFieldContainer[str]
    parent_row: _containers.RepeatedScalarFieldContainer[int]
    parent_dev: _containers.RepeatedScalarFieldContainer[int]
    parent_ino: _containers.RepeatedScalarFieldContainer[int]
    owner_row: _containers.RepeatedScalarFieldContainer[int]
    owner_dev: _containers.RepeatedScalarFieldContainer[int]
    owner_ino: _containers.RepeatedScalarFieldContainer[int]
    pod_row: _containers.RepeatedScalarFieldContainer[int]
    pod_namespace: _containers.RepeatedScalarFieldContainer[str]
    pod_name: _containers.RepeatedScalarFieldContainer[str]
    pod_uid: _containers.RepeatedScalarFieldContainer[str]
    container_row: _containers.RepeatedScalarFieldContainer[int]
    container_name: _containers.RepeatedScalarFieldContainer[str]
    container_id: _containers.RepeatedScalarFieldContainer[str]
    mount_row: _containers.RepeatedScalarFieldContainer[int]
    mount_path: _containers.RepeatedScalarFieldContainer[str]
    mount_mnt_ns: _containers.RepeatedScalarFieldContainer[int]
    fd_row: _containers.RepeatedScalarFieldContainer[int]
    fd_pid: _containers.RepeatedScalarFieldContainer[int]
    fd_fd: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, dev: _Optional[_Iterable[int]] = ..., ino: _Optional[_Iterable[int]] = ..., type: _Optional[_Iterable[int]] = ..., nprocs: _Optional[_Iterable[int]] = ..., pid: _Optional[_Iterable[int]] = ..., process: _Optional[_Iterable[int]] = ..., node: _Optional[_Iterable[bool]] = ..., type_names: _Optional[_Iterable[str]] = ..., proc_pid: _Optional[_Iterable[int]] = ..., proc_start_time: _Optional[_Iterable[int]] = ..., proc_ppid: _Optional[_Iterable[int]] = ..., proc_uid: _Optional[_Iterable[int]] = ..., proc_uid_unknown: _Optional[_Iterable[int]] = ..., proc_user: _Optional[_Iterable[str]] = ..., proc_comm: _Optional[_Iterable[str]] = ..., proc_cmdline: _Optional[_Iterable[str]] = ..., parent_row: _Optional[_Iterable[int]] = ..., parent_dev: _Optional[_Iterable[int]] = ..., parent_ino: _Optional[_Iterable[int]] = ..., owner_row: _Optional[_Iterable[int]] = ..., owner_dev: _Optional[_Iterable[int]] = ..., owner_ino: _Optional[_Iterable[int]] = ..., pod_row: _Optional[_Iterable[int]] = ..., pod_namespace: _Optional[_Iterable[str]] = ..., pod_name: _Optional[_Iterable[str]] = ..., pod_uid: _Optional[_Iterable[str]] = ..., container_row: _Optional[_Iterable[int]] = ..., container_name: _Optional[_Iterable[str]] = ..., container_id: _Optional[_Iterable[str]] = ..., mount_row: _Optional[_Iterable[int]] = ..., mount_path: _Optional[_Iterable[str]] = ..., mount_mnt_ns: _Optional[_Iterable[int]] = ..., fd_row: _Optional[_Iterable[int]] = ..., fd_pid: _Optional[_Iterable[int]] = ..., fd_fd: _Optional[_Iterable[int]] = ...) -> None: ...

class ProcessView(_message.Message):
    __slots__ = ("process", "namespaces", "node_namespaces", "pod", "container", "node", "runtime_error")
    class NamespacesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: NamespaceId
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[NamespaceId, _Mapping]] = ...) -> None: ...
    class NodeNamespacesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: NamespaceId
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[NamespaceId, _Mapping]] = ...) -> None: ...
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    NODE_NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_ERROR_FIELD_NUMBER: _ClassVar[int]
    process: Process
    namespaces: _containers.MessageMap[str, NamespaceId]
    node_namespaces: _containers.MessageMap[str, NamespaceId]
    pod: PodRef
    container: ContainerRef
    node: str
    runtime_error: str
    def __init__(self, process: _Optional[_Union[Process, _Mapping]] = ..., namespaces: _Optional[_Mapping[str, NamespaceId]] = ..., node_namespaces: _Optional[_Mapping[str, NamespaceId]] = ..., pod: _Optional[_Union[PodRef, _Mapping]] = ..., container: _Optional[_Union[ContainerRef, _Mapping]] = ..., node: _Optional[str] = ..., runtime_error: _Optional[str] = ...) -> None: ...

class IdRange(_message.Message):
    __slots__ = ("inside", "outside", "length")
    INSIDE_FIELD_NUMBER: _ClassVar[int]
    OUTSIDE_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    inside: int
    outside: int
    length: int
    def __init__(self, inside: _Optional[int] = ..., outside: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("name", "role", "id", "state", "process", "namespaces", "target_id", "attempt", "created_at", "finished_at", "image", "uid_map", "gid_map", "strays", "details", "pinned")
    class NamespacesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: NamespaceId
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[NamespaceId, _Mapping]] = ...) -> None: ...
    class PinnedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    UID_MAP_FIELD_NUMBER: _ClassVar[int]
    GID_MAP_FIELD_NUMBER: _ClassVar[int]
    STRAYS_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: str
    id: str
    state: str
    process: Process
    namespaces: _containers.MessageMap[str, NamespaceId]
    target_id: str
    attempt: int
    created_at: int
    finished_at: int
    image: str
    uid_map: _containers.RepeatedCompositeFieldContainer[IdRange]
    gid_map: _containers.RepeatedCompositeFieldContainer[IdRange]
    strays: _containers.RepeatedCompositeFieldContainer[StrayProcess]
    details: MemberEvidence
    pinned: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., role: _Optional[str] = ..., id: _Optional[str] = ..., state: _Optional[str] = ..., process: _Optional[_Union[Process, _Mapping]] = ..., namespaces: _Optional[_Mapping[str, NamespaceId]] = ..., target_id: _Optional[str] = ..., attempt: _Optional[int] = ..., created_at: _Optional[int] = ..., finished_at: _Optional[int] = ..., image: _Optional[str] = ..., uid_map: _Optional[_Iterable[_Union[IdRange, _Mapping]]] = ..., gid_map: _Optional[_Iterable[_Union[IdRange, _Mapping]]] = ..., strays: _Optional[_Iterable[_Union[StrayProcess, _Mapping]]] = ..., details: _Optional[_Union[MemberEvidence, _Mapping]] = ..., pinned: _Optional[_Mapping[str, str]] = ...) -> None: ...

class StrayProcess(_message.Message):
    __slots__ = ("process", "differs")
    class DiffersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: NamespaceId
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[NamespaceId, _Mapping]] = ...) -> None: ...
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    DIFFERS_FIELD_NUMBER: _ClassVar[int]
    process: Process
    differs: _containers.MessageMap[str, NamespaceId]
    def __init__(self, process: _Optional[_Union[Process, _Mapping]] = ..., differs: _Optional[_Mapping[str, NamespaceId]] = ...) -> None: ...

class NetEvidenceAddress(_message.Message):
    __slots__ = ("family", "address", "prefix", "interface")
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    family: str
    address: str
    prefix: int
    interface: str
    def __init__(self, family: _Optional[str] = ..., address: _Optional[str] = ..., prefix: _Optional[int] = ..., interface: _Optional[str] = ...) -> None: ...

class NetEvidence(_message.Message):
    __slots__ = ("interfaces", "addresses", "error")
    INTERFACES_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    interfaces: _containers.RepeatedScalarFieldContainer[str]
    addresses: _containers.RepeatedCompositeFieldContainer[NetEvidenceAddress]
    error: str
    def __init__(self, interfaces: _Optional[_Iterable[str]] = ..., addresses: _Optional[_Iterable[_Union[NetEvidenceAddress, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class UtsEvidence(_message.Message):
    __slots__ = ("hostname", "error")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    error: str
    def __init__(self, hostname: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class IpcEvidenceObject(_message.Message):
    __slots__ = ("kind", "key", "id", "size", "uid")
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    kind: str
    key: int
    id: int
    size: int
    uid: int
    def __init__(self, kind: _Optional[str] = ..., key: _Optional[int] = ..., id: _Optional[int] = ..., size: _Optional[int] = ..., uid: _Optional[int] = ...) -> None: ...

class IpcEvidence(_message.Message):
    __slots__ = ("objects", "error")
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    objects: _containers.RepeatedCompositeFieldContainer[IpcEvidenceObject]
    error: str
    def __init__(self, objects: _Optional[_Iterable[_Union[IpcEvidenceObject, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class MntEvidenceMount(_message.Message):
    __slots__ = ("target", "fstype", "source", "root", "device")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    FSTYPE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    target: str
    fstype: str
    source: str
    root: str
    device: str
    def __init__(self, target: _Optional[str] = ..., fstype: _Optional[str] = ..., source: _Optional[str] = ..., root: _Optional[str] = ..., device: _Optional[str] = ...) -> None: ...

class MntEvidence(_message.Message):
    __slots__ = ("root", "volumes", "shm", "error")
    ROOT_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    SHM_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    root: MntEvidenceMount
    volumes: _containers.RepeatedCompositeFieldContainer[MntEvidenceMount]
    shm: MntEvidenceMount
    error: str
    def __init__(self, root: _Optional[_Union[MntEvidenceMount, _Mapping]] = ..., volumes: _Optional[_Iterable[_Union[MntEvidenceMount, _Mapping]]] = ..., shm: _Optional[_Union[MntEvidenceMount, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class UserEvidence(_message.Message):
    __slots__ = ("root_uid", "root_gid", "uid", "error")
    ROOT_UID_FIELD_NUMBER: _ClassVar[int]
    ROOT_GID_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    root_uid: int
    root_gid: int
    uid: int
    error: str
    def __init__(self, root_uid: _Optional[int] = ..., root_gid: _Optional[int] = ..., uid: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class CgroupEvidence(_message.Message):
    __slots__ = ("path", "version", "cpu_max", "memory_max", "error")
    PATH_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CPU_MAX_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MAX_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    path: str
    version: int
    cpu_max: str
    memory_max: str
    error: str
    def __init__(self, path: _Optional[str] = ..., version: _Optional[int] = ..., cpu_max: _Optional[str] = ..., memory_max: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class PidEvidenceProcess(_message.Message):
    __slots__ = ("pid", "ns_pid", "comm")
    PID_FIELD_NUMBER: _ClassVar[int]
    NS_PID_FIELD_NUMBER: _ClassVar[int]
    COMM_FIELD_NUMBER: _ClassVar[int]
    pid: int
    ns_pid: int
    comm: str
    def __init__(self, pid: _Optional[int] = ..., ns_pid: _Optional[int] = ..., comm: _Optional[str] = ...) -> None: ...

class PidEvidence(_message.Message):
    __slots__ = ("nprocs", "processes", "error")
    NPROCS_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    nprocs: int
    processes: _containers.RepeatedCompositeFieldContainer[PidEvidenceProcess]
    error: str
    def __init__(self, nprocs: _Optional[int] = ..., processes: _Optional[_Iterable[_Union[PidEvidenceProcess, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class MemberEvidence(_message.Message):
    __slots__ = ("net", "uts", "ipc", "mnt", "user", "cgroup", "pid")
    NET_FIELD_NUMBER: _ClassVar[int]
    UTS_FIELD_NUMBER: _ClassVar[int]
    IPC_FIELD_NUMBER: _ClassVar[int]
    MNT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    CGROUP_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    net: NetEvidence
    uts: UtsEvidence
    ipc: IpcEvidence
    mnt: MntEvidence
    user: UserEvidence
    cgroup: CgroupEvidence
    pid: PidEvidence
    def __init__(self, net: _Optional[_Union[NetEvidence, _Mapping]] = ..., uts: _Optional[_Union[UtsEvidence, _Mapping]] = ..., ipc: _Optional[_Union[IpcEvidence, _Mapping]] = ..., mnt: _Optional[_Union[MntEvidence, _Mapping]] = ..., user: _Optional[_Union[UserEvidence, _Mapping]] = ..., cgroup: _Optional[_Union[CgroupEvidence, _Mapping]] = ..., pid: _Optional[_Union[PidEvidence, _Mapping]] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("actual", "expected", "reason")
    ACTUAL_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    actual: str
    expected: str
    reason: str
    def __init__(self, actual: _Optional[str] = ..., expected: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PodInfo(_message.Message):
    __slots__ = ("namespace", "name", "uid", "sandbox_id", "node", "state", "created_at", "options", "hostname", "labels", "uid_mappings", "gid_mappings")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    UID_MAPPINGS_FIELD_NUMBER: _ClassVar[int]
    GID_MAPPINGS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    uid: str
    sandbox_id: str
    node: str
    state: str
    created_at: int
    options: _containers.ScalarMap[str, str]
    hostname: str
    labels: _containers.ScalarMap[str, str]
    uid_mappings: _containers.RepeatedCompositeFieldContainer[IdRange]
    gid_mappings: _containers.RepeatedCompositeFieldContainer[IdRange]
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., uid: _Optional[str] = ..., sandbox_id: _Optional[str] = ..., node: _Optional[str] = ..., state: _Optional[str] = ..., created_at: _Optional[int] = ..., options: _Optional[_Mapping[str, str]] = ..., hostname: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., uid_mappings: _Optional[_Iterable[_Union[IdRange, _Mapping]]] = ..., gid_mappings: _Optional[_Iterable[_Union[IdRange, _Mapping]]] = ...) -> None: ...

class PodView(_message.Message):
    __slots__ = ("pod", "members", "sharing", "node_namespaces", "runtime", "notes", "lsns")
    class SharingEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Verdict
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Verdict, _Mapping]] = ...) -> None: ...
    class NodeNamespacesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: NamespaceId
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[NamespaceId, _Mapping]] = ...) -> None: ...
    POD_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    SHARING_FIELD_NUMBER: _ClassVar[int]
    NODE_NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    LSNS_FIELD_NUMBER: _ClassVar[int]
    pod: PodInfo
    members: _containers.RepeatedCompositeFieldContainer[Member]
    sharing: _containers.MessageMap[str, Verdict]
    node_namespaces: _containers.MessageMap[str, NamespaceId]
    runtime: str
    notes: _containers.RepeatedScalarFieldContainer[str]
    lsns: _containers.RepeatedCompositeFieldContainer[Namespace]
    def __init__(self, pod: _Optional[_Union[PodInfo, _Mapping]] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., sharing: _Optional[_Mapping[str, Verdict]] = ..., node_namespaces: _Optional[_Mapping[str, NamespaceId]] = ..., runtime: _Optional[str] = ..., notes: _Optional[_Iterable[str]] = ..., lsns: _Optional[_Iterable[_Union[Namespace, _Mapping]]] = ...) -> None: ...

class PodList(_message.Message):
    __slots__ = ("pods", "node", "runtime")
    PODS_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    pods: _containers.RepeatedCompositeFieldContainer[PodView]
    node: str
    runtime: str
    def __init__(self, pods: _Optional[_Iterable[_Union[PodView, _Mapping]]] = ..., node: _Optional[str] = ..., runtime: _Optional[str] = ...) -> None: ...
