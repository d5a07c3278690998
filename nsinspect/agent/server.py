"""The node agent: the engine behind a read-only gRPC service (``nsinspect.v1.Inspector``).

It listens on loopback in its own pod (reached through the API server's pods/portforward),
serves the standard gRPC health service, validates every request, maps the engine's errors
to status codes, stays up while the runtime is down, and stops gracefully on SIGTERM.
Its logs say what happened, never what the runtime's verbose blobs contain.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import stat
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from nsinspect.agent import AGENT_LISTEN as DEFAULT_LISTEN
from nsinspect.agent import ERROR_MARK, MAX_REQUEST, MAX_RESPONSE, SERVICE, convert
from nsinspect.agent.client import target
from nsinspect.agent.v1 import agent_pb2 as pb
from nsinspect.agent.v1 import agent_pb2_grpc
from nsinspect.errors import InvalidArgument, NsinspectError, Unavailable
from nsinspect.limits import PORT_MAX, decimal
from nsinspect.model import NS_TYPES
from nsinspect.node.engine import LocalEngine

GRACE_SECONDS = 5.0

log = logging.getLogger("nsinspect.agent.server")


class Inspector(agent_pb2_grpc.InspectorServicer):  # type: ignore[misc]  # generated without types
    """The service: each method validates, asks the engine, converts."""

    def __init__(self, engine: LocalEngine):
        self.engine = engine
        self._runtime_down = False
        self._lock = threading.Lock()
        self._abuse_seen: set[str] = set()  # kinds of bad requests logged already
        # GetPod answers, serialized, reused while the engine returns the very same view
        # (it does while the snapshot holds and every member's process is alive).
        self._messages: dict[tuple[str, str, str, str, bool], tuple[Any, Any]] = {}
        # The agent's CachedEngine tells, cheaply, whether a GetPod can be answered from them.
        self._cached_pod: Callable[[str, str, str], Any] | None = getattr(engine, "cached_pod", None)
        self._encoder = convert.NodeEncoder()  # GetNode: each namespace's encoding kept from the last answer

    def _answer(self, context: grpc.ServicerContext, what: str, fn: Callable[[], Any]) -> Any:
        try:
            out = fn()
        except NsinspectError as e:
            code = grpc.StatusCode[e.grpc_code]
            if code == grpc.StatusCode.UNAVAILABLE:
                self._runtime_state(down=True, why=str(e))
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                self.abuse("invalid request", f"{what}: {e}")
            log.debug("%s: %s: %s", what, code.name, e)
            context.set_trailing_metadata(((ERROR_MARK, "1"),))
            context.abort(code, str(e))
        except Exception:
            log.exception("%s failed", what)
            context.set_trailing_metadata(((ERROR_MARK, "1"),))
            context.abort(grpc.StatusCode.INTERNAL, "internal error in the nsinspect agent; see its log")
        if what in ("GetPod", "ListPods"):
            self._runtime_state(down=False)
        return out

    def abuse(self, kind: str, example: str) -> None:
        """A client's bad request: the first of each kind is logged (a flood of them is one line, not one per request)."""
        with self._lock:
            if kind in self._abuse_seen:
                return
            self._abuse_seen.add(kind)
        log.warning("%s from a client, e.g. %s; later ones are not logged (-v logs every failed request)", kind, example[:200])

    def _runtime_state(self, down: bool, why: str = "") -> None:
        """Log transitions only: a flood of requests while the runtime is down is one line."""
        if down == self._runtime_down:
            return
        self._runtime_down = down
        if down:
            log.warning("container runtime unavailable: %s", why)
        else:
            log.info("container runtime answering again")

    def GetNode(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run() -> Any:
            bad = [t for t in request.types if t not in NS_TYPES]
            if bad:
                raise InvalidArgument(f"unknown namespace type {bad[0][:20]!r}; use one of {', '.join(NS_TYPES)}")
            types = tuple(t for t in NS_TYPES if t in request.types) if request.types else NS_TYPES
            return self._encoder.encode(self._noted(self.engine.node(types)), columns=request.columns)

        return self._answer(context, "GetNode", run)

    def GetProcess(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._answer(context, "GetProcess", lambda: convert.to_process(self._noted(self.engine.process(request.pid))))

    def _noted(self, view: Any) -> Any:
        """A node or process answer made without the runtime (it did not answer) logs that, once."""
        if view.runtime_error:
            self._runtime_state(down=True, why=view.runtime_error)
        return view

    def ListPods(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._answer(context, "ListPods", lambda: convert.to_pods(self.engine.pods(request.namespace or None)))

    def GetPod(self, request: Any, context: grpc.ServicerContext) -> Any:
        if not (request.details or request.detail or request.container or self._runtime_down) and self._cached_pod is not None:
            # The hot path: an answer already built, still good, and already serialized.  The namespace
            # as asked (required: an empty one is refused by the full path, and never a cached key).
            # Not while the runtime was last seen down: the full path confirms (and logs) its return.
            view = self._cached_pod(request.name, request.namespace, request.uid)
            if view is not None:
                hit = self._messages.get((request.namespace, request.name, request.uid, "", False))
                if hit is not None and hit[0] is view:
                    return hit[1]

        def run() -> Any:
            view = self.engine.pod(request.name, request.namespace, request.container or None, request.detail, request.uid,
                                   details=request.details)
            if request.details:  # read afresh on every request: never reused
                return convert.to_pod(view).SerializeToString()
            key = (view.pod.namespace, request.name, request.uid, request.container, bool(request.detail))
            hit = self._messages.get(key)
            if hit is not None and hit[0] is view:
                return hit[1]
            return self.ready(key, view)

        return self._answer(context, "GetPod", run)

    def ready(self, key: tuple[str, str, str, str, bool], view: Any) -> bytes:
        """Serialize ``view`` as GetPod's answer for ``key`` (namespace, name, uid, container, detail) and
        keep it for the hot path."""
        data: bytes = convert.to_pod(view).SerializeToString()
        if len(self._messages) > 4096:  # bounded: a new snapshot makes every entry useless anyway
            self._messages.clear()
        self._messages[key] = (view, data)
        return data


def _add_inspector(server: grpc.Server, inspector: Inspector) -> None:
    """Register the service as the generated code does, except that each request arrives as bytes and is
    parsed here (a message that does not parse is the client's error, INVALID_ARGUMENT, where gRPC's own
    deserializer would answer INTERNAL), and GetPod answers bytes it serialized (and cached) itself:
    serializing is a sixth of a GetPod's CPU."""
    handlers = {}
    for name, req, resp in (("GetNode", pb.GetNodeRequest, pb.NodeView), ("GetProcess", pb.GetProcessRequest, pb.ProcessView),
                            ("ListPods", pb.ListPodsRequest, pb.PodList), ("GetPod", pb.GetPodRequest, None)):
        handlers[name] = grpc.unary_unary_rpc_method_handler(
            _parsed(inspector, getattr(inspector, name), req),
            response_serializer=resp.SerializeToString if resp is not None else None,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


Handler = Callable[[Any, grpc.ServicerContext], Any]


def _parsed(inspector: Inspector, method: Handler, request_type: Any) -> Handler:
    from google.protobuf.message import DecodeError

    def handler(raw: bytes, context: grpc.ServicerContext) -> Any:
        try:
            request = request_type.FromString(raw)
        except DecodeError:
            inspector.abuse("malformed request", f"a {request_type.DESCRIPTOR.name} that does not parse ({len(raw)} bytes)")
            context.set_trailing_metadata(((ERROR_MARK, "1"),))
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid {request_type.DESCRIPTOR.full_name} "
                          "message; use a client built from the agent's proto/agent.proto")
        return method(request, context)

    return handler


def _bind(server: grpc.Server, listen: str) -> str:
    """Bind the listening address; for unix sockets, owner-only permissions and no stale file."""
    if listen.startswith("unix:"):
        path = listen[len("unix:"):]
        path = "/" + path.lstrip("/") if path.startswith("//") else path
        if os.path.lexists(path):
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise InvalidArgument(f"{path} exists and is not a socket; choose another --listen path")
            os.unlink(path)
        old = os.umask(0o077)
        try:
            ok = server.add_insecure_port(f"unix:{path}")
        finally:
            os.umask(old)
        where = f"unix:{path}"
    else:
        host, sep, port = listen.rpartition(":")
        if not sep or decimal(port, PORT_MAX) is None or not host:
            raise InvalidArgument(f"bad --listen {listen!r}; write HOST:PORT (e.g. {DEFAULT_LISTEN}) or unix:PATH")
        if host.strip("[]") not in ("127.0.0.1", "::1", "localhost"):
            log.warning("listening on %s: the agent has no authentication of its own; "
                        "keep it on loopback and reach it through pods/portforward", listen)
        try:
            ok = server.add_insecure_port(listen)
        except RuntimeError:
            ok = 0
        where = f"{host}:{ok}" if ok else listen
    if not ok:
        raise Unavailable(f"cannot listen on {listen} (in use, or not an address of this host); choose another --listen")
    return where


def serve(engine: LocalEngine, listen: str = DEFAULT_LISTEN, workers: int = 8,
          ready: Callable[[str], None] | None = None, stop: threading.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``stop`` is set); then refuse new calls, finish those in flight."""
    gc.enable()  # a long-lived process: the CLI's one-shot gc.disable() does not fit here
    from nsinspect.node import enter

    # Before any thread: pod --details enters namespaces in helpers forked by this server (node/enter.py).
    forker = enter.start_forker(engine.proc.root)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"),
        options=[
            ("grpc.max_receive_message_length", MAX_REQUEST),
            ("grpc.max_send_message_length", MAX_RESPONSE),
            ("grpc.so_reuseport", 0),
            # A connection that has not finished HTTP/2's preface in 10 s is dropped (gRPC's default waits 120 s):
            # half-open clients do not pile up.  Real clients, port-forwarded, finish it in milliseconds.
            ("grpc.server_handshake_timeout_ms", 10_000),
        ],
        maximum_concurrent_rpcs=workers * 16,
    )
    healthy = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(healthy, server)
    inspector = Inspector(engine)
    _add_inspector(server, inspector)
    where = _bind(server, listen)
    stop = stop or threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("%s: stopping (grace %.0fs)", signal.Signals(signum).name, GRACE_SECONDS)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    server.start()
    for name in ("", SERVICE):
        healthy.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("nsinspect agent on %s for node %s (proc %s)%s", where, engine.node_name, engine.proc.root,
             "" if forker else "; started with threads: details use a fresh interpreter per request")
    threading.Thread(target=_warm_up, args=(engine,), name="warm-up", daemon=True).start()
    warm = threading.Thread(target=_keep_warm, args=(engine, inspector, stop), name="keep-warm", daemon=True)
    warm.start()
    if ready is not None:
        ready(where)
    while not stop.wait(1.0):
        pass
    healthy.enter_graceful_shutdown()
    server.stop(GRACE_SECONDS).wait()
    warm.join(GRACE_SECONDS)
    enter.stop_forker()
    engine.close()
    log.info("stopped")


def _warm_up(engine: LocalEngine) -> None:
    """Fill the runtime snapshot and the pid cache once, so the first requests are fast."""
    started = time.monotonic()
    try:
        n = len(engine.pods().pods)
    except NsinspectError as e:
        log.warning("container runtime not answering yet (%s); node and process answers work, pods will when it does", e)
        return
    log.info("runtime %s: %d pods (warm-up %.0f ms)", engine.runtime().runtime, n, (time.monotonic() - started) * 1e3)
    # What start-up built lives as long as the agent: keep the collector from walking it again.
    gc.freeze()


def _keep_warm(engine: LocalEngine, inspector: Inspector, stop: threading.Event) -> None:
    """Until ``stop``: every ttl/4, the engine gets ready what requests will ask (``CachedEngine.warm``),
    and the answers it rebuilt are serialized for GetPod's hot path; so the runtime and /proc are read
    here, not while a caller waits (where the reads, each letting go of the GIL, made the slowest calls)."""
    warm: Callable[..., Any] | None = getattr(engine, "warm", None)
    if warm is None:
        return

    def built(key: tuple[str, str, str], view: Any) -> None:
        inspector.ready((*key, "", False), view)  # at once: requests meanwhile take the hot path

    period, logged = getattr(engine, "ttl", 1.0) / 4, -3600.0
    while not stop.wait(period):
        try:
            warm(built)
        except Exception as e:
            if stop.is_set():
                return  # stopping: the engine may be closing under this call
            if isinstance(e, NsinspectError):  # the runtime is down: logged once, as a request would
                if grpc.StatusCode[e.grpc_code] == grpc.StatusCode.UNAVAILABLE:
                    inspector._runtime_state(down=True, why=str(e))
                log.debug("keep-warm: %s", e)
            elif time.monotonic() - logged >= 60:  # at most once a minute, not four times a second
                logged = time.monotonic()
                log.exception("keep-warm failed; requests still answer, each reading what it needs")


def probe(address: str, timeout: float = 3.0) -> bool:
    """The exec probe: is the agent at ``address`` SERVING (standard gRPC health)?"""
    channel = grpc.insecure_channel(target(address))
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=timeout)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.RpcError:
        return False
    finally:
        channel.close()
