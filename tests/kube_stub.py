"""A small Kubernetes API server on loopback, for cluster mode's tests.

There is no kube-apiserver here, so this serves the few endpoints nsinspect uses, the way the
real one does: pods get and list (label and field selectors), ``pods/portforward`` as a
websocket (``v4.channel.k8s.io``: per port a data and an error channel, each opened with the
port number), and server-side apply (recorded).  Bearer tokens stand for users; each user has
RBAC grants (verb, resource, namespace or "*"), and a refusal is a 403 Status like the real
one.  A port-forward goes to a real address (an nsinspect agent on this machine), as kubelet
would connect to the port inside the pod; a refused connection is reported on the error channel.
"""

from __future__ import annotations

import base64
import json
import select
import socket
import ssl
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import stub_portforward as pf

EVERYTHING = {("get", "pods", "*"), ("list", "pods", "*"), ("create", "pods/portforward", "*"), ("patch", "*", "*"),
              ("impersonate", "users", "*"), ("impersonate", "groups", "*")}
AGENT_NS = "nsinspect-system"
PROXIED_NAME = "api.stub.invalid"  # a server name only ConnectProxy resolves (to 127.0.0.1)
AGENT_LABEL = ("app.kubernetes.io/name", "nsinspect-agent")


def status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and PROXIED_NAME (and its key), as a cluster CA would issue the API server's."""
    cert, key = directory / "apiserver.crt", directory / "apiserver.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", f"subjectAltName=IP:127.0.0.1,DNS:{PROXIED_NAME}"],
                   check=True, capture_output=True)
    return cert, key


class StubAPI:
    """``tls=True``: HTTPS with a self-signed certificate (``ca``), as real API servers serve."""

    def __init__(self, tls: bool = False) -> None:
        self.pods: dict[tuple[str, str], dict] = {}
        self.backends: dict[tuple[str, str], dict[int, tuple[str, int]]] = {}  # pod -> {port: real address}
        self.users: dict[str, tuple[str, set[tuple[str, str, str]]]] = {"admin-token": ("admin", set(EVERYTHING))}
        self.applied: list[tuple[str, dict]] = []
        self.log: list[tuple[str, str, int]] = []  # (method, path, client's port) of each request
        self.grants_of: dict[str, set[tuple[str, str, str]]] = {}  # whom one may impersonate: user, or "group:NAME"
        self.impersonated: list[tuple[str, tuple[str, ...]]] = []  # (user, groups) of each impersonated request
        # The verb a websocket port-forward is authorized as: create since Kubernetes 1.35, get before.
        self.portforward_verb = "create"
        self.on_forward: Callable[[tuple[str, str]], None] | None = None  # called when a stream first carries data
        self.pages = 0  # list pages served
        self.streams = self.streams_max = 0  # port-forward streams open now, and at most
        self.wire = pf.Wire()  # how port-forwards go on the wire (the defaults: as the kubelet)
        self.offered: list[str | None] = []  # the Sec-WebSocket-Protocol each port-forward offered
        self._lock = threading.Lock()
        # A real API server's listen backlog is large; socketserver's default (5) would drop the SYNs
        # of a 16-way fan-out and make the kernel retry them a second later.
        server_class = type("StubServer", (ThreadingHTTPServer,), {"request_queue_size": 256})
        self.server = server_class(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.ca: Path | None = None
        if tls:
            self.ca, key = self_signed(Path(tempfile.mkdtemp(prefix="nsinspect-stub-")))
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.ca, key)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        scheme = "https" if self.ca else "http"
        return f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _ca_data(self) -> dict:
        if self.ca is None:
            return {}
        return {"certificate-authority-data": base64.b64encode(self.ca.read_bytes()).decode()}

    # -- objects -----------------------------------------------------------------------------------
    def add_pod(self, obj: dict) -> dict:
        meta = obj["metadata"]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", "2026-11-23T10:00:00Z")
        self.pods[(meta["namespace"], meta["name"])] = obj
        return obj

    def add_agent(self, node: str, address: str | None, ready: bool = True, port: int = 9870) -> dict:
        """An agent pod on ``node`` whose port ``port`` reaches ``address`` (host:port), or nothing."""
        name = f"nsinspect-agent-{node}"
        obj = pod_object(name, AGENT_NS, node, containers=[{"name": "agent", "ports": [{"name": "grpc", "containerPort": port}]}],
                         labels=dict([AGENT_LABEL]), ready=ready)
        self.add_pod(obj)
        if address:
            host, _, p = address.rpartition(":")
            self.backends[(AGENT_NS, name)] = {port: (host, int(p))}
        return obj

    def user(self, token: str, name: str, grants: set[tuple[str, str, str]]) -> None:
        self.users[token] = (name, grants)

    def kubeconfig(self, path: Path, token: str = "admin-token", namespace: str | None = None, context: str = "stub",
                   server: str | None = None) -> Path:
        ctx: dict = {"cluster": "stub", "user": "u"}
        if namespace:
            ctx["namespace"] = namespace
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "stub", "cluster": {"server": server or self.url, **self._ca_data()}}],
            "users": [{"name": "u", "user": {"token": token}}],
            "contexts": [{"name": context, "context": ctx}],
        }
        path.write_text(json.dumps(cfg))
        return path


def pod_object(name: str, namespace: str, node: str, containers: list[dict], init: list[dict] | None = None,
               ephemeral: list[dict] | None = None, labels: dict | None = None, uid: str | None = None,
               ready: bool = True, phase: str = "Running", **spec: object) -> dict:
    obj = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}, **({"uid": uid} if uid else {})},
        "spec": {"nodeName": node, "containers": containers, **spec},
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": c["name"], "state": {"running": {}}} for c in containers],
        },
    }
    if not node:
        del obj["spec"]["nodeName"]
    if init:
        obj["spec"]["initContainers"] = init
    if ephemeral:
        obj["spec"]["ephemeralContainers"] = ephemeral
    return obj


class JsonHandler(BaseHTTPRequestHandler):
    """A quiet HTTP/1.1 handler that answers JSON, as an API server does (the stub's and the recorder's)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _handler(api: StubAPI) -> type:
    class Handler(JsonHandler):
        rbufsize = 0  # after a websocket upgrade, frames are read from the raw socket: nothing may sit in a buffer

        def _user(self) -> tuple[str, set] | None:
            """Who asks, with their grants: the token's user, or whom it impersonates (if it may)."""
            scheme, _, token = self.headers.get("Authorization", "").partition(" ")
            token = token.strip() if scheme.lower() == "bearer" else ""  # the scheme is case-insensitive (RFC 7235)
            user = api.users.get(token)
            if user is None:
                self._send(401, status(401, "Unauthorized", "Unauthorized"))
                return None
            as_user, as_groups = self.headers.get("Impersonate-User"), self.headers.get_all("Impersonate-Group") or []
            if as_groups and not as_user:
                self._send(400, status(400, "BadRequest", "requested [Impersonate-Group] without impersonating a user"))
                return None
            if not as_user:
                return user
            for resource, names in (("users", [as_user]), ("groups", as_groups)):
                for name in names:
                    if ("impersonate", resource, "*") not in user[1]:
                        self._send(403, status(403, "Forbidden", f'{resource} "{name}" is forbidden: User "{user[0]}" cannot '
                                                                 f'impersonate resource "{resource}" in API group "" at the cluster scope'))
                        return None
            api.impersonated.append((as_user, tuple(as_groups)))
            grants = set(api.grants_of.get(as_user, set()))
            for g in as_groups:
                grants |= api.grants_of.get("group:" + g, set())
            return as_user, grants

        def _allowed(self, verb: str, resource: str, namespace: str) -> bool:
            user = self._user()
            if user is None:
                return False
            grants = user[1]
            for v, r, ns in grants:
                if v == verb and r in (resource, "*") and ns in (namespace, "*"):
                    return True
            where = f'in the namespace "{namespace}"' if namespace != "*" else "at the cluster scope"
            self._send(403, status(403, "Forbidden", f'{resource} is forbidden: User "{user[0]}" cannot {verb} resource '
                                                     f'"{resource}" in API group "" {where}'))
            return False

        def do_GET(self) -> None:
            url = urlparse(self.path)
            parts = [unquote(p) for p in url.path.strip("/").split("/")]
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            api.log.append(("GET", url.path, self.client_address[1]))
            if parts[:3] == ["api", "v1", "pods"] and len(parts) == 3:
                if self._allowed("list", "pods", "*"):
                    self._send(200, self._list(None, query))
            elif parts[:3] == ["api", "v1", "namespaces"] and len(parts) >= 5 and parts[4] == "pods":
                ns = parts[3]
                if len(parts) == 5:
                    if self._allowed("list", "pods", ns):
                        self._send(200, self._list(ns, query))
                elif len(parts) == 6:
                    if self._allowed("get", "pods", ns):
                        obj = api.pods.get((ns, parts[5]))
                        if obj is None:
                            self._send(404, status(404, "NotFound", f'pods "{parts[5]}" not found'))
                        else:
                            self._send(200, obj)
                elif len(parts) == 7 and parts[6] == "portforward":
                    if self._allowed(api.portforward_verb, "pods/portforward", ns):
                        self._portforward(ns, parts[5], query)
                else:
                    self._send(404, status(404, "NotFound", "the server could not find the requested resource"))
            else:
                self._send(404, status(404, "NotFound", "the server could not find the requested resource"))

        def do_PATCH(self) -> None:
            url = urlparse(self.path)
            api.log.append(("PATCH", url.path, self.client_address[1]))
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Type") != "application/apply-patch+yaml":
                self._send(415, status(415, "UnsupportedMediaType", "apply needs application/apply-patch+yaml"))
                return
            if self._allowed("patch", url.path.split("/")[-2], "*"):
                obj = json.loads(body)
                api.applied.append((url.path, obj))
                self._send(200, obj)

        def _list(self, ns: str | None, query: dict) -> dict:
            items = [p for (pns, _), p in sorted(api.pods.items()) if ns is None or pns == ns]
            for sel in filter(None, query.get("labelSelector", "").split(",")):
                k, _, v = sel.partition("=")
                items = [p for p in items if (p["metadata"].get("labels") or {}).get(k) == v]
            for sel in filter(None, query.get("fieldSelector", "").split(",")):
                k, _, v = sel.partition("=")
                if k != "spec.nodeName":
                    raise ValueError(f"field selector {k} is not served by the stub")
                items = [p for p in items if p["spec"].get("nodeName", "") == v]
            meta = {"resourceVersion": "1"}
            if query.get("limit"):  # pages, with an opaque continue token (here: the offset)
                start, limit = int(query.get("continue") or 0), int(query["limit"])
                api.pages += 1
                if start + limit < len(items):
                    meta["continue"] = str(start + limit)
                items = items[start:start + limit]
            return {"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": items}

        # -- pods/portforward (tests/stub_portforward.py) --------------------------------------------
        def _portforward(self, ns: str, name: str, query: dict) -> None:
            if self.headers.get("Upgrade", "").lower() != "websocket":
                self._send(400, status(400, "BadRequest", "Upgrade request required"))
                return
            if (ns, name) not in api.pods:
                self._send(404, status(404, "NotFound", f'pods "{name}" not found'))
                return
            offered = self.headers.get("Sec-WebSocket-Protocol")
            api.offered.append(offered)
            protocol = pf.choose(offered)
            if protocol is None:  # wsstream's handshake refuses; x/net answers 403 without a body
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            port = int(query.get("ports", "0"))
            wire = api.wire
            self.wfile.flush()
            client = self.connection
            client.sendall(pf.handshake_response(self.headers["Sec-WebSocket-Key"], protocol, wire))
            session = pf.Session(client, port, wire, protocol if wire.protocol is None else wire.protocol)
            self.close_connection = True
            session.open()
            backend_addr = api.backends.get((ns, name), {}).get(port)
            try:
                if backend_addr is None:
                    raise ConnectionRefusedError("connection refused")
                backend = socket.create_connection(backend_addr, timeout=5)
                backend.settimeout(None)
            except OSError:
                uid = api.pods[(ns, name)]["metadata"]["uid"]
                session.send_error(wire.error_text or pf.refused_text(port, pf.sandbox_id(uid), pf.netns_path(uid)))
                session.close()
                return
            with api._lock:
                api.streams += 1
                api.streams_max = max(api.streams_max, api.streams)
            first = (lambda: api.on_forward((ns, name))) if api.on_forward is not None else None
            try:
                session.pump(backend, first)
            except OSError:
                pass
            finally:
                backend.close()
                with api._lock:
                    api.streams -= 1
            session.close()  # the close frame, sent once the stream is counted out

    return Handler


class Fleet:
    """NODES nodes, each with a real agent (``NODE_NAME`` node-NN) reading the one test containerd.

    The nodes share the runtime, so each agent sees the same pods; the stub lists them once per
    node, under per-node names (node-00 keeps the runtime's names), with the runtime's uids."""

    def __init__(self, endpoint: str, runtime_pods: list, nodes: int, api: StubAPI | None = None,
                 specs: dict[str, dict] | None = None):
        from cri_env import Agent

        self.api = api or StubAPI(tls=True)
        self.nodes = [f"node-{i:02d}" for i in range(nodes)]
        self.agents = [Agent(endpoint, node=n, wait=False) for n in self.nodes]
        try:
            for a in self.agents:
                a.wait_healthy()
        except Exception:
            self.stop()
            raise
        for node, agent in zip(self.nodes, self.agents, strict=True):
            self.api.add_agent(node, agent.address)
            for p in runtime_pods:
                name = p.name if node == self.nodes[0] else f"{p.name}-{node}"
                containers = [{"name": c} for c in p.containers]
                self.api.add_pod(pod_object(name, p.namespace, node, containers, uid=p.uid, **(specs or {}).get(p.name, {})))

    def stop(self) -> None:
        for a in self.agents:
            if a.proc.poll() is None:
                a.proc.terminate()
        for a in self.agents:
            try:
                a.proc.wait(15)
            except Exception:
                a.proc.kill()


class ConnectProxy:
    """An HTTP proxy on loopback that only tunnels (CONNECT, as clients use for https and wss),
    optionally asking for basic auth; ``seen`` lists (target, authorized) of every CONNECT and
    ``ports`` the local ports of its upstream connections (what the server sees as the client's)."""

    def __init__(self, user: str = "", password: str = "") -> None:
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode() if user else ""
        self.seen: list[tuple[str, bool]] = []
        self.ports: set[int] = set()  # local ports of the connections it made upstream
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.url = f"http://{user}:{password}@127.0.0.1:{self._listener.getsockname()[1]}" if user else \
            f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in lines[1:] if ":" in h)}
            authorized = not self.auth or headers.get("proxy-authorization") == self.auth
            self.seen.append((target, authorized))
            if method != "CONNECT":
                conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            if not authorized:
                conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"stub\"\r\n"
                             b"Content-Length: 0\r\n\r\n")
                return
            host, port = target.rsplit(":", 1)
            host = "127.0.0.1" if host == PROXIED_NAME else host  # a proxy resolves names for its clients
            try:
                upstream = socket.create_connection((host, int(port)), timeout=5)
            except OSError:
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            with upstream:
                self.ports.add(upstream.getsockname()[1])
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                socks = [conn, upstream]
                while True:
                    ready, _, _ = select.select(socks, [], [])
                    for s in ready:
                        data = s.recv(65536)
                        if not data:
                            return
                        (upstream if s is conn else conn).sendall(data)
