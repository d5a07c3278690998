"""Typed errors.  Library code raises these; only the CLI turns them into exit codes.

Every message is one sentence that says what happened and what to try next.  Each class carries
its exit code (the CLI's contract) and its gRPC status code (the agent's contract, by name, so
this module needs no grpc); the CLI's, the agent server's and the clients' tables are derived
from these two attributes.
"""

EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # a check's expectation does not hold (not an error)
EXIT_INTERNAL = 70  # a bug in nsinspect (EX_SOFTWARE); distinct from a failed check


class NsinspectError(Exception):
    """Base class: ``str(err)`` is the sentence shown to the user."""

    exit_code = EXIT_INTERNAL
    grpc_code = "INTERNAL"


class InvalidArgument(NsinspectError):
    """The request itself is wrong (bad type name, bad pid, bad expectation)."""

    exit_code = 2
    grpc_code = "INVALID_ARGUMENT"


class NotFound(NsinspectError):
    """The thing asked for does not exist (pod, container, process)."""

    exit_code = 3
    grpc_code = "NOT_FOUND"


class Unavailable(NsinspectError):
    """Something we depend on cannot be reached (runtime socket, agent, API server)."""

    exit_code = 4
    grpc_code = "UNAVAILABLE"


class PermissionDenied(NsinspectError):
    """We are not allowed to read what was asked for."""

    exit_code = 5
    grpc_code = "PERMISSION_DENIED"


# The classes a status code names (agent -> client, runtime -> nsinspect).
BY_GRPC_CODE: dict[str, type[NsinspectError]] = {c.grpc_code: c for c in (InvalidArgument, NotFound, Unavailable, PermissionDenied)}


class NoSuchProcess(NotFound):
    """A process vanished (or never existed)."""

    def __init__(self, pid: int, msg: str | None = None):
        self.pid = pid
        super().__init__(msg or f"no process with pid {pid}; it may have exited")


class AccessDenied(PermissionDenied):
    """The kernel refused to show us a process's namespaces."""

    def __init__(self, pid: int, msg: str | None = None):
        self.pid = pid
        super().__init__(msg or f"permission denied reading the namespaces of pid {pid}; run nsinspect as root")
