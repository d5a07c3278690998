"""A small client of the CRI RuntimeService (gRPC on the containerd / CRI-O socket).

Only this module and ``nsinspect.cri.info`` know CRI messages; they hand the pod engine
plain values.  Endpoint resolution, in order: ``-r/--runtime-endpoint``, then
``CONTAINER_RUNTIME_ENDPOINT`` (both via the CLI), then ``/etc/crictl.yaml``, then the
usual sockets probed with ``Version()`` as crictl does.  With a host root (``/host``),
every socket path and /etc/crictl.yaml resolve under it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import grpc

from nsinspect.cri.endpoints import _socket_path, candidates
from nsinspect.cri.v1 import api_pb2 as pb
from nsinspect.cri.v1 import api_pb2_grpc as pb_grpc
from nsinspect.errors import InvalidArgument, NotFound, NsinspectError, PermissionDenied, Unavailable

MAX_MESSAGE = 16 << 20
PROBE_TIMEOUT = 2.0
CALL_TIMEOUT = 10.0


# The runtime's status codes, by name, as our errors: (class, sentence after "<what>: ").
_RUNTIME_ERRORS: dict[str, tuple[type[NsinspectError], str]] = {
    "NOT_FOUND": (NotFound, "not found ({detail})"),
    "PERMISSION_DENIED": (PermissionDenied, "permission denied by the runtime; run nsinspect as root"),
    "UNAUTHENTICATED": (PermissionDenied, "permission denied by the runtime; run nsinspect as root"),
    "INVALID_ARGUMENT": (InvalidArgument, "rejected by the runtime ({detail})"),
    "UNAVAILABLE": (Unavailable, "the container runtime does not answer ({reason}); check that it is running"),
}


def map_rpc_error(e: grpc.RpcError, what: str) -> Exception:
    code = e.code() if hasattr(e, "code") else None
    detail = e.details() if hasattr(e, "details") else str(e)
    reason = detail.rsplit("error: ", 1)[-1].strip() if "error: " in detail else detail
    known = _RUNTIME_ERRORS.get(code.name if code else "")
    if known is None:
        return Unavailable(f"{what}: the container runtime failed ({code.name if code else 'error'}: {detail[:160]}); check its log")
    cls, sentence = known
    return cls(f"{what}: " + sentence.format(detail=detail, reason=reason[:100]))


class RuntimeClient:
    """One connection to one CRI runtime."""

    def __init__(self, endpoint: str, channel: grpc.Channel, version: pb.VersionResponse):
        self.endpoint = endpoint
        self._channel = channel
        self._stub = pb_grpc.RuntimeServiceStub(channel)
        self.runtime_name = version.runtime_name
        self.runtime_version = version.runtime_version
        self.api_version = version.runtime_api_version

    @property
    def runtime(self) -> str:
        return f"{self.runtime_name} {self.runtime_version}".strip()

    # -- connecting -------------------------------------------------------------------------
    @classmethod
    def connect(cls, explicit: str | None = None, host_root: str | None = None, timeout: float = PROBE_TIMEOUT) -> RuntimeClient:
        """Connect to the first endpoint that answers ``Version()``.  Raises Unavailable listing what was tried."""
        endpoints, asked = candidates(explicit, host_root)
        tried = []
        for endpoint in endpoints:
            path = _socket_path(endpoint)
            if path is not None and not os.path.exists(path):
                tried.append(f"{endpoint} (no such socket)")
                continue
            if path is not None and not os.access(path, os.R_OK | os.W_OK):
                raise PermissionDenied(f"permission denied on the runtime socket {path}; run nsinspect as root")
            channel = open_channel(endpoint)
            try:
                version = pb_grpc.RuntimeServiceStub(channel).Version(pb.VersionRequest(version="v1"), timeout=timeout)
            except grpc.RpcError as e:
                channel.close()
                code = e.code().name if hasattr(e, "code") else "error"
                tried.append(f"{endpoint} ({code.lower().replace('_', ' ')})")
                continue
            return cls(endpoint, channel, version)
        hint = "pass -r unix:///path/to/the/cri.sock" if not asked else "check that the runtime is running"
        raise Unavailable("no container runtime answered; tried " + ", ".join(tried) + f"; {hint}")

    def close(self) -> None:
        self._channel.close()

    def on_disconnect(self, callback: Any) -> None:
        """Call ``callback()`` (from a gRPC thread) whenever the connection leaves READY:
        the runtime stopped or restarted.  Costs nothing per call."""

        def watch(state: grpc.ChannelConnectivity) -> None:
            if state != grpc.ChannelConnectivity.READY:
                callback()

        self._channel.subscribe(watch, try_to_connect=False)

    # -- calls --------------------------------------------------------------------------------
    def _call(self, method: str, request: Any, what: str, timeout: float = CALL_TIMEOUT) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=timeout)
        except grpc.RpcError as e:
            raise map_rpc_error(e, what) from None

    def version(self) -> pb.VersionResponse:
        reply: pb.VersionResponse = self._call("Version", pb.VersionRequest(version="v1"), "Version")
        return reply

    def list_sandboxes(self, ready_only: bool = False, labels: dict[str, str] | None = None) -> list[pb.PodSandbox]:
        f = pb.PodSandboxFilter(label_selector=labels or {})
        if ready_only:
            f.state.state = pb.SANDBOX_READY
        return list(self._call("ListPodSandbox", pb.ListPodSandboxRequest(filter=f), "ListPodSandbox").items)

    def list_containers(self, sandbox_id: str = "") -> list[pb.Container]:
        f = pb.ContainerFilter(pod_sandbox_id=sandbox_id)
        return list(self._call("ListContainers", pb.ListContainersRequest(filter=f), "ListContainers").containers)

    def sandbox_status(self, sandbox_id: str, verbose: bool = True) -> pb.PodSandboxStatusResponse:
        req = pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose)
        reply: pb.PodSandboxStatusResponse = self._call("PodSandboxStatus", req, f"pod sandbox {sandbox_id[:13]}")
        return reply

    def _batch(self, method: str, requests: dict[str, Any], what: str) -> dict[str, Any]:
        """Many unary calls at once, pipelined on one connection; a NOT_FOUND answer maps to None."""
        call = getattr(self._stub, method)
        futures = {key: call.future(req, timeout=CALL_TIMEOUT) for key, req in requests.items()}
        out: dict[str, Any] = {}
        for key, fut in futures.items():
            try:
                out[key] = fut.result()
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:  # removed while we looked
                    out[key] = None
                    continue
                raise map_rpc_error(e, f"{what} {key[:13]}") from None
        return out

    def container_statuses(self, ids: Iterable[str], verbose: bool = True) -> dict[str, pb.ContainerStatusResponse | None]:
        reqs = {cid: pb.ContainerStatusRequest(container_id=cid, verbose=verbose) for cid in ids}
        return self._batch("ContainerStatus", reqs, "container")

    def sandbox_statuses(self, ids: Iterable[str], verbose: bool = True) -> dict[str, pb.PodSandboxStatusResponse | None]:
        reqs = {sid: pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=verbose) for sid in ids}
        return self._batch("PodSandboxStatus", reqs, "pod sandbox")

    @property
    def stub(self) -> pb_grpc.RuntimeServiceStub:
        """The raw stub, for tests that create pods the way kubelet does."""
        return self._stub


def open_channel(endpoint: str) -> grpc.Channel:
    target = endpoint if endpoint.startswith("unix:") else endpoint
    return grpc.insecure_channel(
        target,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.enable_http_proxy", 0),
        ],
    )
