"""The agent's client: the engine's questions, asked over gRPC.

``AgentEngine`` is an ``nsinspect.engine.Engine`` that returns the model (via
``nsinspect.agent.convert``), so the CLI renders an agent's answer through the one renderer path.
gRPC status codes come back as the errors the CLI maps to exit codes.
"""

from __future__ import annotations

from typing import Any

import grpc

from nsinspect.agent import ERROR_MARK, MAX_RESPONSE, convert
from nsinspect.agent.v1 import agent_pb2 as pb
from nsinspect.agent.v1 import agent_pb2_grpc
from nsinspect.engine import DEFAULT_NAMESPACE, Progress, evaluate, this_node_only
from nsinspect.errors import BY_GRPC_CODE, InvalidArgument, Unavailable
from nsinspect.limits import PORT_MAX, decimal
from nsinspect.model import NS_TYPES, CheckView, NodeView, PodsView, PodView, ProcessView

CALL_TIMEOUT = 15.0
NODE_TIMEOUT = 60.0  # GetNode scans every process of the node




class AgentUnreachable(Unavailable):
    """The agent itself could not be reached or did not answer (not a status the agent chose)."""

    def __init__(self, msg: str, reason: str):
        super().__init__(msg)
        self.reason = reason  # the transport's words, short ("Connection refused", "deadline exceeded")


def target(address: str) -> str:
    """``host:port``, ``unix:PATH`` or ``unix:///PATH`` as a gRPC target; InvalidArgument otherwise."""
    if address.startswith("unix:"):
        if len(address) > len("unix:"):
            return address
    else:
        host, sep, port = address.rpartition(":")
        if sep and host and decimal(port, PORT_MAX):
            return address
    raise InvalidArgument(f"bad agent address {address[:80]!r}; write HOST:PORT (e.g. 127.0.0.1:9870) or unix:PATH")


class AgentEngine:
    """An nsinspect agent at ``address``, asked one question per call."""

    def __init__(self, address: str, timeout: float = CALL_TIMEOUT, channel: grpc.Channel | None = None):
        self.address = address
        self.timeout = timeout
        self._channel = channel or grpc.insecure_channel(
            target(address),
            options=[("grpc.max_receive_message_length", MAX_RESPONSE), ("grpc.enable_http_proxy", 0)],
        )
        self._stub = agent_pb2_grpc.InspectorStub(self._channel)

    def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            raise self._error(e) from None

    def _error(self, e: grpc.RpcError) -> Exception:
        code, details = e.code(), e.details() or ""
        ours = any(k == ERROR_MARK for k, _v in (e.trailing_metadata() or ()))
        if ours and code.name in BY_GRPC_CODE:
            return BY_GRPC_CODE[code.name](details)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return AgentUnreachable(
                f"the nsinspect agent at {self.address} did not answer in time; check its log and the node's load",
                "no answer in time",
            )
        if code == grpc.StatusCode.UNAVAILABLE:
            return AgentUnreachable(
                f"cannot reach the nsinspect agent at {self.address} ({_short(details)}); "
                "check that it runs there and that the address is right",
                _short(details),
            )
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return Unavailable(f"{self.address} is not an nsinspect agent, or a different version; check the address")
        if ours:
            return Unavailable(f"the nsinspect agent at {self.address} failed: {details}")
        return Unavailable(f"the nsinspect agent at {self.address} failed ({code.name}: {_short(details)})")

    # -- the engine's questions -------------------------------------------------------------
    def node(self, types: tuple[str, ...] = NS_TYPES, node: str | None = None) -> NodeView:
        this_node_only(node)
        req = pb.GetNodeRequest(types=[] if tuple(types) == NS_TYPES else list(types), columns=True)
        return convert.from_node(self._call("GetNode", req, NODE_TIMEOUT))

    def process(self, pid: int, node: str | None = None) -> ProcessView:
        this_node_only(node)
        return convert.from_process(self._call("GetProcess", pb.GetProcessRequest(pid=pid)))

    def pods(self, namespace: str | None = None, all_namespaces: bool = False, progress: Progress | None = None) -> PodsView:
        namespace = None if all_namespaces else namespace
        return convert.from_pods(self._call("ListPods", pb.ListPodsRequest(namespace=namespace or "")))

    def pod(self, name: str, namespace: str | None = None, container: str | None = None, detail: bool = False, uid: str = "",
            details: bool = False) -> PodView:
        namespace = DEFAULT_NAMESPACE if namespace is None else namespace
        req = pb.GetPodRequest(namespace=namespace, name=name, uid=uid, container=container or "", detail=detail, details=details)
        return convert.from_pod(self._call("GetPod", req, NODE_TIMEOUT if detail else None))

    def check(self, name: str, namespace: str | None, expects: list[tuple[str, str]]) -> CheckView:
        return evaluate(self.pod(name, namespace), expects)

    def close(self) -> None:
        self._channel.close()


def _short(details: str) -> str:
    """gRPC's transport details are long; keep the first clause (e.g. 'Connection refused')."""
    tail = details.rsplit(": ", 1)[-1] if "last error" in details else details
    return tail.strip()[:120] or "no details"
