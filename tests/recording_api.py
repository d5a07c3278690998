"""A lean API server that records what each client sends, for the kubectl parity tests.

It answers just enough for ``kubectl get pod NAME -o json`` (discovery: /api, /apis, /api/v1;
any pod asked for exists, on node ``NODE``) and for nsinspect's first steps (the pod; an empty
agent list), and writes down every request: which server, method, path, query, the
credentials (Authorization, the client certificate's CN), the Impersonate-* headers and the TLS
server name the client asked for.  Plain HTTP or TLS; over TLS a client certificate is asked
for (optional) and checked against the test CA.  ``PKI`` makes the CA and certificates with
openssl (EC keys: fast).
"""

from __future__ import annotations

import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from kube_stub import PROXIED_NAME, JsonHandler  # PROXIED_NAME: a server name only the test proxy resolves

NODE = "node-1"
SNI_NAME = "api.sni.test"  # a server name only in the SNI server's certificate
PREFIX = "/k8s/clusters/c-1"  # the API is served under this path too (a proxying front end's habit)


@dataclass(frozen=True)
class Seen:
    """One request as it reached a server."""

    server: str
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    authorization: str | None
    client_cn: str | None
    impersonation: tuple[tuple[str, str], ...]  # (header, value), sorted: Impersonate-User/-Group/-Uid/-Extra-*
    sni: str | None
    user_agent: str = field(default="", compare=False)
    port: int = field(default=0, compare=False)  # the client's port (a proxy's, when one carried the request)

    @property
    def credentials(self) -> tuple[str | None, str | None]:
        return self.authorization, self.client_cn


class PKI:
    """A cluster CA (and a second, unrelated one), server certificates and client certificates."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = self._ca("ca", "test-cluster-ca")
        self.other_ca = self._ca("other-ca", "unrelated-ca")
        self.server = self._leaf("server", "127.0.0.1", f"subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:{PROXIED_NAME}", "serverAuth")
        self.sni_server = self._leaf("sni-server", SNI_NAME, f"subjectAltName=DNS:{SNI_NAME}", "serverAuth")
        self.clients = {cn: self._leaf(f"client-{cn}", cn, None, "clientAuth") for cn in ("alice", "bob", "carol")}

    def _run(self, *args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=self.dir)

    def _key(self, name: str) -> Path:
        key = self.dir / f"{name}.key"
        self._run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key.name)
        return key

    def _ca(self, name: str, cn: str) -> Path:
        key = self._key(name)
        cert = self.dir / f"{name}.crt"
        self._run("req", "-x509", "-new", "-key", key.name, "-out", cert.name, "-days", "2", "-subj", f"/CN={cn}",
                  "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return cert

    def _leaf(self, name: str, cn: str, san: str | None, usage: str) -> tuple[Path, Path]:
        key = self._key(name)
        csr, cert, ext = self.dir / f"{name}.csr", self.dir / f"{name}.crt", self.dir / f"{name}.ext"
        ext.write_text(f"extendedKeyUsage={usage}\n" + (f"{san}\n" if san else ""))
        self._run("req", "-new", "-key", key.name, "-out", csr.name, "-subj", f"/CN={cn}/O=testers")
        self._run("x509", "-req", "-in", csr.name, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", cert.name,
                  "-days", "2", "-extfile", ext.name)
        return cert, key


class RecordingAPI:
    """One API server on 127.0.0.1 (``name`` tells servers apart in the log)."""

    def __init__(self, name: str, log: list[Seen], pki: PKI | None = None, cert: tuple[Path, Path] | None = None) -> None:
        self.name = name
        self.log = log
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.tls = pki is not None
        if pki is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*(cert or pki.server))
            ctx.verify_mode = ssl.CERT_OPTIONAL  # a client certificate, when sent, must be the cluster CA's
            ctx.load_verify_locations(pki.ca)
            ctx.sni_callback = self._sni
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True, do_handshake_on_connect=True)
        self._sni_by_peer: dict[tuple[str, int], str | None] = {}
        self.redirect_to: str | None = None  # a base URL: the pod's GET is answered 302 to it
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _sni(self, sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        try:
            self._sni_by_peer[sock.getpeername()] = server_name
        except OSError:
            pass

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _client_cn(sock: object) -> str | None:
    getpeercert = getattr(sock, "getpeercert", None)
    cert = getpeercert() if getpeercert else None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


def _pod(namespace: str, name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": "0f1e2d3c-0000-4000-8000-000000000001",
                         "resourceVersion": "1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "busybox"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


_API_RESOURCES = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": [
    {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "shortNames": ["po"],
     "verbs": ["get", "list", "watch", "create", "delete", "patch", "update"], "categories": ["all"]}]}


def _handler(api: RecordingAPI) -> type:
    class Handler(JsonHandler):

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            imp = sorted((k.title(), v) for k, v in self.headers.items() if k.lower().startswith("impersonate-"))
            api.log.append(Seen(
                server=api.name, method="GET", path=url.path, query=tuple(parse_qsl(url.query, keep_blank_values=True)),
                authorization=self.headers.get("Authorization"), client_cn=_client_cn(self.connection),
                impersonation=tuple(imp), sni=api._sni_by_peer.get(self.client_address), user_agent=self.headers.get("User-Agent", ""),
                port=self.client_address[1],
            ))
            path = url.path.removeprefix(PREFIX) if url.path.startswith(PREFIX + "/") else url.path
            parts = [unquote(p) for p in path.strip("/").split("/")]
            if parts == ["api"]:
                self._send(200, {"kind": "APIVersions", "versions": ["v1"],
                                 "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
            elif parts == ["apis"]:
                self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
            elif parts == ["api", "v1"]:
                self._send(200, _API_RESOURCES)
            elif parts == ["version"]:
                self._send(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"})
            elif len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods" and api.redirect_to:
                self.send_response(302)
                self.send_header("Location", api.redirect_to + url.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
                self._send(200, _pod(parts[3], parts[5]))
            elif len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
                self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []})
            else:
                self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound",
                                 "message": "the server could not find the requested resource"})

    return Handler
