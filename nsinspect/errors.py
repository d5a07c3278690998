"""Typed errors.  Library code raises these; only the CLI turns them into exit codes.

Every message is one sentence that says what happened and what to try next.
"""


class NsinspectError(Exception):
    """Base class: ``str(err)`` is the sentence shown to the user."""


class InvalidArgument(NsinspectError):
    """The request itself is wrong (bad type name, bad pid, bad expectation)."""


class NotFound(NsinspectError):
    """The thing asked for does not exist (pod, container, process)."""


class Unavailable(NsinspectError):
    """Something we depend on cannot be reached (runtime socket, agent, API server)."""


class PermissionDenied(NsinspectError):
    """We are not allowed to read what was asked for."""


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
