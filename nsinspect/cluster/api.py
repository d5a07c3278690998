"""The Kubernetes API, the few calls cluster mode needs, through the ``kubernetes`` client.

The client loads the configuration (kubeconfig with its contexts, exec plugins and
certificates, or the in-cluster service account) and signs requests; the few answers we need
are read as plain JSON (the client's generated models cost ~0.5 s to import and nothing here
needs them).  ``kubernetes`` is imported only when cluster mode is chosen.

Every failure becomes one of our errors with a sentence that says what to do: 404 ->
NotFound, 401/403 -> PermissionDenied naming the RBAC verb and resource, anything that keeps
us from the API server -> Unavailable.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from nsinspect.cluster.kubeconfig import Impersonation, resolve
from nsinspect.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
REQUEST_TIMEOUT = (5.0, 20.0)  # connect, read (seconds)
LIST_PAGE = 500  # pods per list request (kubectl's chunk size)


def kubeconfig_paths(explicit: str | None = None) -> list[str]:
    """The kubeconfig files kubectl would read: --kubeconfig, else $KUBECONFIG (a list), else ~/.kube/config."""
    if explicit:
        return [explicit]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [p for p in env.split(os.pathsep) if p]
    return [os.path.expanduser("~/.kube/config")]


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(os.path.join(SA_DIR, "token"))


_DEFAULT_PROXY_PORT = {"http": 80, "https": 443, "socks4": 1080, "socks4a": 1080, "socks5": 1080, "socks5h": 1080}


def proxy_for(server: str, kubeconfig_proxy: str | None = None, environ: Any = None) -> str | None:
    """The proxy to reach ``server`` through, as kubectl (Go's ProxyFromEnvironment) picks it:
    the cluster's ``proxy-url`` from the kubeconfig, else ``HTTPS_PROXY``/``HTTP_PROXY`` by the
    server's scheme, unless the server is localhost or a loopback address, or ``NO_PROXY``
    lists it (host, domain suffix, ``host:port``, CIDR or ``*``)."""
    if kubeconfig_proxy:
        return kubeconfig_proxy
    env = os.environ if environ is None else environ
    url = urlsplit(server)
    scheme = url.scheme or "https"

    def var(name: str) -> str:
        return (env.get(name.lower()) or env.get(name.upper()) or "").strip()

    proxy = var(f"{scheme}_proxy")
    if not proxy:
        return None
    host = (url.hostname or "").lower()
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if host == "localhost" or (ip is not None and ip.is_loopback):
        return None  # a local cluster (kind, minikube) is never reached through the environment's proxy
    for entry in (e.strip().lower() for e in var("no_proxy").split(",")):
        if not entry:
            continue
        if entry == "*":
            return None
        if ip is not None and "/" in entry:
            try:
                if ip in ipaddress.ip_network(entry, strict=True):
                    return None
            except ValueError:
                pass
        entry = entry.lstrip(".")
        if entry in (host, url.netloc.lower()) or host.endswith("." + entry):
            return None
    return proxy


def _without_credentials(url: str) -> str:
    u = urlsplit(url)
    return u._replace(netloc=u.netloc.rsplit("@", 1)[-1]).geturl()


def _proxy_auth(proxy: str) -> tuple[str, str]:
    u = urlsplit(proxy)
    return unquote(u.username or ""), unquote(u.password or "")


def _require_socks(proxy: str) -> None:
    """SOCKS needs two optional packages: PySocks for the API calls (urllib3), python-socks for
    the port-forward websockets (websocket-client)."""
    import importlib.util

    missing = [pkg for mod, pkg in (("socks", "PySocks"), ("python_socks", "python-socks")) if importlib.util.find_spec(mod) is None]
    if missing:
        raise InvalidArgument(f"the SOCKS proxy {_without_credentials(proxy)} needs {' and '.join(missing)}: "
                              f"pip install {' '.join(missing)}, or use an HTTP proxy")


def _non_empty(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False


def configured(kubeconfig: str | None = None) -> bool:
    """Is there a Kubernetes configuration to use (a non-empty kubeconfig, or a service account)?"""
    return any(_non_empty(p) for p in kubeconfig_paths(kubeconfig)) or in_cluster()


def _load_kubeconfig(files: list[str], context: str | None, cfg: Any, as_user: str | None, as_groups: tuple[str, ...],
                     as_uid: str | None) -> tuple[str, str, str | None, Impersonation]:
    """The chosen context into ``cfg`` by kubectl's rules (kubeconfig.resolve): (context name, its
    namespace, the cluster's proxy-url, whom to impersonate)."""
    r = resolve(files, context, as_user, as_groups, as_uid)
    cfg.host = r.server
    cfg.verify_ssl = not r.insecure
    cfg.tls_server_name = r.tls_server_name
    cfg.ssl_ca_cert = _private_file(r.ca_data, "ca.crt") if r.ca_data else r.ca_file
    cfg.cert_file = _private_file(r.cert_data, "client.crt") if r.cert_data else r.cert_file
    cfg.key_file = _private_file(r.key_data, "client.key") if r.key_data else r.key_file
    authorization = r.authorization
    if r.auth_provider is not None:
        authorization = _auth_provider(r.auth_provider, r.server)
    if authorization:
        cfg.api_key["BearerToken"] = authorization  # the whole header value, "Bearer ..." or "Basic ..."
    return r.context, r.namespace, r.proxy_url, r.impersonation


def _auth_provider(provider: dict[str, Any], server: str) -> str | None:
    """An auth-provider (oidc) user's header, by the kubernetes client's own code for it."""
    from kubernetes.config.kube_config import KubeConfigLoader

    one = {"current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
           "clusters": [{"name": "c", "cluster": {"server": server}}], "users": [{"name": "u", "user": {"auth-provider": provider}}]}
    loader = KubeConfigLoader(config_dict=one)
    loader._load_auth_provider_token()
    return getattr(loader, "token", None)


_private_dir: str | None = None


def _private_file(data: bytes, name: str) -> str:
    """Key material from the kubeconfig as a file (the TLS libraries read files): in a 0700 directory of
    our own, removed when the process ends."""
    global _private_dir
    import atexit
    import shutil
    import tempfile

    if _private_dir is None:
        _private_dir = tempfile.mkdtemp(prefix="nsinspect-kube-")
        atexit.register(shutil.rmtree, _private_dir, True)
    path = os.path.join(_private_dir, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _load_in_cluster(cfg: Any, as_user: str | None, as_groups: tuple[str, ...], as_uid: str | None) -> tuple[str, str, None, Impersonation]:
    """The pod's service account into ``cfg``: the same four answers as _load_kubeconfig."""
    from kubernetes import config

    config.load_incluster_config(client_configuration=cfg)
    try:
        with open(os.path.join(SA_DIR, "namespace")) as f:
            namespace = f.read().strip() or "default"
    except OSError:
        namespace = "default"
    if (as_groups or as_uid) and not as_user:
        raise InvalidArgument("--as-group and --as-uid need --as USER (the API server impersonates them only along with a user)")
    return "in-cluster", namespace, None, Impersonation(as_user or "", tuple(as_groups), as_uid or "")


class Kube:
    """A signed-in API client: ``get_pod``, ``list_pods``, ``portforward``, ``apply``."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None, timeout: tuple[float, float] = REQUEST_TIMEOUT,
                 as_user: str | None = None, as_groups: tuple[str, ...] = (), as_uid: str | None = None):
        from kubernetes import client
        from kubernetes.config.config_exception import ConfigException

        self.timeout = timeout
        cfg = client.Configuration()
        try:
            files = kubeconfig_paths(kubeconfig)
            if kubeconfig or context or not in_cluster() or any(os.path.exists(p) for p in files):
                self.context, self.namespace, kubeconfig_proxy, self.impersonation = _load_kubeconfig(
                    files, context, cfg, as_user, as_groups, as_uid)
            else:
                self.context, self.namespace, kubeconfig_proxy, self.impersonation = _load_in_cluster(cfg, as_user, as_groups, as_uid)
        except ConfigException as e:
            raise InvalidArgument(f"cannot use the Kubernetes configuration ({_one_line(str(e))}); check --kubeconfig and --context") from None
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"cannot read the kubeconfig ({_one_line(str(e))}); check --kubeconfig") from None
        cfg.retries = 1  # a refused connection is reported, not retried for seconds
        if not cfg.verify_ssl:  # insecure-skip-tls-verify: the user's choice, said once in the kubeconfig (kubectl is silent too)
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        # One proxy decision for the REST calls and the port-forward websockets alike.
        self.proxy = proxy_for(cfg.host, kubeconfig_proxy)
        cfg.proxy, cfg.no_proxy = self.proxy, None
        if self.proxy and urlsplit(self.proxy).scheme.startswith("socks"):
            _require_socks(self.proxy)
        if self.proxy and not cfg.proxy_headers and urlsplit(self.proxy).username:
            from urllib3 import make_headers

            cfg.proxy_headers = make_headers(proxy_basic_auth=":".join(_proxy_auth(self.proxy)))
        self.config = cfg
        self.host = cfg.host
        self.api = client.ApiClient(cfg)

    # -- REST ----------------------------------------------------------------------------------
    def request(self, method: str, path: str, query: list[tuple[str, str]] | None = None, body: Any = None,
                content_type: str = "application/json", what: tuple[str, str, str] = ("get", "", "")) -> Any:
        """One API call; the decoded JSON answer.  ``what`` = (verb, resource, namespace) for error sentences."""
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            method, url, headers, body, _ = self.api.param_serialize(
                method, path, query_params=query or None, header_params=headers, body=body, auth_settings=["BearerToken"]
            )
            if self.impersonation.user:
                from urllib3 import HTTPHeaderDict

                headers = HTTPHeaderDict(headers)  # one Impersonate-Group line per group, as the API server reads them
                for k, v in self.impersonation.headers():
                    headers.add(k, v)
            resp = self.api.call_api(method, url, header_params=headers, body=body, _request_timeout=self.timeout)
            data = resp.read()
        except ApiException as e:
            raise self._unreachable(f"cannot reach the Kubernetes API server at {self.host}", _one_line(str(e.reason)),
                                    "the context") from None
        except Exception as e:  # urllib3/ssl/socket errors: the server is not reachable
            raise self._unreachable(f"cannot reach the Kubernetes API server at {self.host}", _reason(e), "the context") from None
        if 200 <= resp.status < 300:
            try:
                return json.loads(data)
            except ValueError:
                raise Unavailable(f"the API server at {self.host} sent something that is not JSON; is it a Kubernetes API server?") from None
        raise status_error(resp.status, _message(data), what)

    def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}"
        pod: dict[str, Any] = self.request("GET", path, what=("get", "pods", namespace))
        return pod

    def list_pods(self, namespace: str | None = None, labels: str = "", fields: str = "") -> list[dict[str, Any]]:
        """Pods, in pages of LIST_PAGE (as kubectl reads big lists), following ``metadata.continue``."""
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods" if namespace else "/api/v1/pods"
        query = [(k, v) for k, v in (("labelSelector", labels), ("fieldSelector", fields)) if v]
        query.append(("limit", str(LIST_PAGE)))
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            page = self.request("GET", path, query + ([("continue", token)] if token else []), what=("list", "pods", namespace or ""))
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return items

    def apply(self, obj: dict[str, Any], path: str, namespace: str, field_manager: str = "nsinspect") -> Any:
        """Server-side apply of one object (``path`` is its URL)."""
        resource = path.rsplit("/", 2)[-2]  # .../namespaces/NS/daemonsets/NAME -> daemonsets
        return self.request(
            "PATCH", path, [("fieldManager", field_manager), ("force", "true")], body=json.dumps(obj),
            content_type="application/apply-patch+yaml", what=("patch", resource, namespace),
        )

    # -- port-forward --------------------------------------------------------------------------
    def portforward(self, namespace: str, pod: str, port: int, timeout: float = 10.0) -> Any:
        """An open port-forward websocket (``v4.channel.k8s.io``) to ``port`` of ``pod``.

        Needs ``create`` on ``pods/portforward`` in the pod's namespace."""
        import ssl

        import websocket

        from nsinspect.cluster.tunnel import PROTOCOL, framing

        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}/portforward"
        url = self.host.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + path + "?" + urlencode({"ports": port})
        headers: dict[str, str] = {}
        self.api.update_params_for_auth(headers, [], ["BearerToken"], path, "GET", None)
        header = [f"{k}: {v}" for k, v in [*headers.items(), *self.impersonation.headers()]]
        header.append(f"Sec-WebSocket-Protocol: {PROTOCOL}")
        cfg = self.config
        sslopt: dict[str, Any] = {"cert_reqs": ssl.CERT_NONE}
        if url.startswith("wss://") and cfg.verify_ssl:
            sslopt = {"cert_reqs": ssl.CERT_REQUIRED}
            if cfg.ssl_ca_cert:
                sslopt["ca_certs"] = cfg.ssl_ca_cert
            if cfg.assert_hostname is not None:
                sslopt["check_hostname"] = cfg.assert_hostname
        if cfg.cert_file:
            sslopt["certfile"] = cfg.cert_file
        if cfg.key_file:
            sslopt["keyfile"] = cfg.key_file
        if getattr(cfg, "tls_server_name", None):
            sslopt["server_hostname"] = cfg.tls_server_name
        opts: dict[str, Any] = {"header": header, "timeout": timeout}
        if self.proxy:
            proxy = urlsplit(self.proxy)
            scheme = proxy.scheme or "http"
            opts.update(http_proxy_host=proxy.hostname, http_proxy_port=proxy.port or _DEFAULT_PROXY_PORT.get(scheme, 80),
                        proxy_type="http" if scheme in ("http", "https") else scheme)
            if proxy.username:
                opts["http_proxy_auth"] = _proxy_auth(self.proxy)
            # Decided above, NO_PROXY included: keep websocket-client from reading it again (it would
            # bypass a kubeconfig's proxy-url that kubectl uses regardless). ".invalid" matches no server.
            opts["http_no_proxy"] = ["nsinspect.invalid"]
        else:
            # Decided above: direct.  Without a proxy host websocket-client would read HTTPS_PROXY
            # itself (and proxy a loopback server that kubectl reaches directly); a proxy whose
            # no-proxy list holds every host is its documented way to say "no proxy".
            opts.update(http_proxy_host="direct.invalid", http_proxy_port=1, http_no_proxy=["*"])
        ws = websocket.WebSocket(sslopt=sslopt, skip_utf8_validation=True, enable_multithread=True)
        try:
            ws.connect(url, **opts)
        except websocket.WebSocketBadStatusException as e:
            body = e.resp_body.decode("utf-8", "replace") if isinstance(e.resp_body, bytes) else str(e.resp_body or "")
            raise status_error(e.status_code, _message(body), ("create", "pods/portforward", namespace)) from None
        except Exception as e:
            raise self._unreachable(f"cannot open a port-forward to {namespace}/{pod} through {self.host}", _reason(e),
                                    "the API server and that the pod runs") from None
        ws.settimeout(None)
        try:
            framing(ws)  # a subprotocol we do not speak: say so now, not as a broken stream later
        except Unavailable:
            ws.shutdown()
            raise
        return ws

    def _unreachable(self, what: str, reason: str, check: str) -> Unavailable:
        """``what`` failed for ``reason``: one sentence, naming the proxy (never its credentials) if one is used."""
        if not self.proxy:
            return Unavailable(f"{what} ({reason}); check {check} and your network")
        shown = _without_credentials(self.proxy)
        netloc = urlsplit(self.proxy).netloc
        if "@" in netloc:  # should a library quote the proxy's address, never with its user:password
            userinfo = netloc.rsplit("@", 1)[0]
            reason = reason.replace(userinfo + "@", "").replace(userinfo, "***")
        return Unavailable(f"{what} via the proxy {shown} ({reason}); check {check}, the proxy settings "
                           "(HTTPS_PROXY, NO_PROXY, or the cluster's proxy-url) and your network")

    def close(self) -> None:
        try:
            self.api.close()
        except Exception:
            pass


def status_error(status: int, message: str, what: tuple[str, str, str]) -> Exception:
    """An API status as our error: the verb and resource the user lacks, in a sentence."""
    verb, resource, namespace = what
    where = f"in namespace {namespace!r}" if namespace else "at cluster scope (all namespaces)"
    if status == 401:
        return PermissionDenied("the API server did not accept your credentials (401 Unauthorized); log in again or pick another --context")
    if status == 403 and "cannot impersonate" in message:
        kind = "groups" if 'resource "groups"' in message else "users"
        return PermissionDenied(
            f"you may not impersonate {kind} ({message}); drop --as/--as-group (or the kubeconfig's as:), "
            "or ask a cluster admin for the impersonate verb"
        )
    if status == 403:
        # The server names what it checked ("User "x" cannot get resource "pods/portforward" in ..."): a websocket
        # port-forward is checked as get before Kubernetes 1.35 and as create since; believe the server.
        said = re.search(r'cannot (\w+) resource "([^"]+)"', message)
        if said:
            verb, resource = said.group(1), said.group(2)
        return PermissionDenied(
            f"you may not {verb} {resource} {where} (RBAC: verb {verb!r} on resource {resource!r} is missing); "
            "ask a cluster admin to bind the nsinspect-user Role, or use another --context"
        )
    if status == 404:
        return NotFound(message or f"{resource} not found {where}")
    return Unavailable(f"the API server answered {status} to {verb} {resource} {where} ({message or 'no message'}); try again later")


def _message(data: Any) -> str:
    """The message of a Kubernetes Status body, on one line."""
    try:
        body = json.loads(data) if isinstance(data, (bytes, str)) else {}
    except ValueError:
        return ""
    return _one_line(str(body.get("message", ""))) if isinstance(body, dict) else ""


def _reason(e: BaseException) -> str:
    """The innermost cause of a connection failure, short (urllib3 nests them deeply)."""
    while True:
        inner = getattr(e, "reason", None) or e.__cause__ or e.__context__
        if not isinstance(inner, BaseException) or inner is e:
            break
        e = inner
    text = _one_line(str(e))
    for marker in ("] ", "Errno "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text[:120] or type(e).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
