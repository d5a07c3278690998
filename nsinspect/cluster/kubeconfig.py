"""The kubeconfig, read by kubectl's rules (client-go's clientcmd), proven against the real kubectl
(tests/test_kubectl_parity.py).

The Python ``kubernetes`` client's loader has habits of its own; where they differ from kubectl,
kubectl's rules are kept here:

- a list ($KUBECONFIG) is merged entry by entry, the first file to name a cluster, user or context
  (or to set current-context) wins; missing and empty files are skipped;
- relative paths (certificate-authority, client-certificate/-key, tokenFile, an exec command with a
  ``/``) are relative to the file that holds the entry;
- a user's credentials are sent only to an ``https`` server: on plain HTTP none (impersonation
  still applies);
- tokenFile wins over token (its content trimmed); certificate-authority-data and
  certificate-authority together, client-certificate-data and client-certificate together, a CA
  with insecure-skip-tls-verify, or token with username/password: refused, as kubectl refuses them;
- an exec plugin runs only when the user has no token, client certificate or username/password;
  it gets kubectl's KUBERNETES_EXEC_INFO (interactive only when asked for and stdin is a terminal;
  the cluster, CA as data, when provideClusterInfo), kubectl's working directory, and our stderr;
- impersonation merges field by field: --as/--as-group/--as-uid, else the user's
  as/as-groups/as-uid; as-user-extra from the user;
- a user with no credentials at all is refused on https (kubectl would prompt for a password).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from nsinspect.errors import InvalidArgument

EXEC_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")


@dataclass(frozen=True)
class Entry:
    """A named cluster, user or context, and the directory of the file that holds it."""

    value: dict[str, Any]
    base: str

    def path(self, key: str) -> str | None:
        p = self.value.get(key)
        if not p:
            return None
        return os.path.join(self.base, os.path.expanduser(str(p)))


@dataclass
class Impersonation:
    user: str = ""
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def headers(self) -> list[tuple[str, str]]:
        """The Impersonate-* headers, as client-go writes them (one line per group and extra value)."""
        if not self.user:
            return []
        out = [("Impersonate-User", self.user)]
        if self.uid:
            out.append(("Impersonate-Uid", self.uid))
        out += [("Impersonate-Group", g) for g in self.groups]
        for key, values in self.extra.items():
            out += [("Impersonate-Extra-" + _header_key_escape(key), v) for v in values]
        return out


@dataclass
class Resolved:
    """What the chosen context says: where to go, how to trust it, and who we are."""

    context: str
    namespace: str
    server: str
    proxy_url: str | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    ca_file: str | None = None
    ca_data: bytes | None = None
    authorization: str | None = None  # the whole header value: "Bearer ..." or "Basic ..."
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    impersonation: Impersonation = field(default_factory=Impersonation)
    auth_provider: dict[str, Any] | None = None  # oidc & co: left to the kubernetes client


# -- loading and merging -----------------------------------------------------------------------------
def _read(path: str) -> dict[str, Any] | None:
    import yaml

    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise InvalidArgument(f"cannot read the kubeconfig {path} ({e.strerror}); check --kubeconfig and $KUBECONFIG") from None
    if not data.strip():
        return None
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as e:
        raise InvalidArgument(f"the kubeconfig {path} is not valid YAML ({' '.join(str(e).split())[:200]}); fix or remove it") from None
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"the kubeconfig {path} is not a kubeconfig (a YAML mapping is expected)")
    return doc


def merge(files: list[str]) -> tuple[str, dict[str, dict[str, Entry]]]:
    """(current-context, {"clusters"|"users"|"contexts": {name: Entry}}): first file wins, entry by entry."""
    current = ""
    named: dict[str, dict[str, Entry]] = {"clusters": {}, "users": {}, "contexts": {}}
    inner = {"clusters": "cluster", "users": "user", "contexts": "context"}
    for path in files:
        doc = _read(path)
        if doc is None:
            continue
        base = os.path.dirname(os.path.abspath(path))
        _typed(doc.get("current-context"), str, path, "current-context")
        current = current or str(doc.get("current-context") or "")
        for kind, key in inner.items():
            items = _typed(doc.get(kind), list, path, kind) or []
            for item in items:
                if not isinstance(item, dict):
                    raise InvalidArgument(f"the kubeconfig {path} is not valid: an entry of {kind} is not a mapping (kubectl refuses it too)")
                name = _typed(item.get("name"), str, path, f"a name in {kind}")
                value = _typed(item.get(key), dict, path, f"{key} {name!r}") or {}
                for key_, want in _FIELDS[key].items():
                    _typed(value.get(key_), want, path, f"{key_} of the {key} {name!r}")
                if key == "user":
                    _check_user(value, path, str(name))
                if name and name not in named[kind]:
                    named[kind][name] = Entry(value, base)
    return current, named


# The fields nsinspect reads, with the types client-go decodes them into: kubectl refuses a kubeconfig whose
# value has another type (it decodes YAML as JSON into typed structs), and so does nsinspect, in one sentence.
_FIELDS: dict[str, dict[str, type]] = {
    "cluster": {"server": str, "proxy-url": str, "tls-server-name": str, "certificate-authority": str,
                "certificate-authority-data": str, "insecure-skip-tls-verify": bool},
    "user": {"token": str, "tokenFile": str, "username": str, "password": str, "client-certificate": str, "client-key": str,
             "client-certificate-data": str, "client-key-data": str, "as": str, "as-uid": str, "as-groups": list,
             "as-user-extra": dict, "exec": dict, "auth-provider": dict},
    "context": {"cluster": str, "user": str, "namespace": str},
}
_EXEC_FIELDS: dict[str, type] = {"command": str, "args": list, "env": list, "apiVersion": str,
                                 "installHint": str, "provideClusterInfo": bool, "interactiveMode": str}
_TYPE_NAMES = {str: "string", bool: "boolean", list: "list", dict: "mapping"}


def _typed(value: Any, want: type, path: str, what: str) -> Any:
    """``value`` when it is absent (None) or of the type client-go decodes ``what`` into; else InvalidArgument."""
    if value is None or isinstance(value, want):
        return value
    got = _TYPE_NAMES.get(type(value), "number" if isinstance(value, (int, float)) else type(value).__name__)
    raise InvalidArgument(f"the kubeconfig {path} is not valid: {what[:120]} is a {got}, where kubectl expects a "
                          f"{_TYPE_NAMES[want]} (kubectl refuses it too); fix it")


def _check_user(u: dict[str, Any], path: str, name: str) -> None:
    """The nested fields of a user that nsinspect reads: lists of strings, the exec plugin's spec."""
    for v in u.get("as-groups") or []:
        _typed(v, str, path, f"an item of as-groups of the user {name!r}")
    for k, v in (u.get("as-user-extra") or {}).items():
        for item in _typed(v, list, path, f"as-user-extra {k!r} of the user {name!r}") or []:
            _typed(item, str, path, f"an item of as-user-extra {k!r} of the user {name!r}")
    spec = u.get("exec") or {}
    for key, want in _EXEC_FIELDS.items():
        _typed(spec.get(key), want, path, f"{key} of the exec plugin of the user {name!r}")
    for v in spec.get("args") or []:
        _typed(v, str, path, f"an item of args of the exec plugin of the user {name!r}")
    for item in spec.get("env") or []:
        for key in ("name", "value"):
            _typed(_typed(item, dict, path, f"an item of env of the exec plugin of the user {name!r}").get(key), str, path,
                   f"{key} of an env item of the exec plugin of the user {name!r}")


def resolve(files: list[str], context: str | None = None, as_user: str | None = None, as_groups: tuple[str, ...] = (),
            as_uid: str | None = None) -> Resolved:
    """The chosen context, its cluster and user, by kubectl's rules (see the module's docstring)."""
    if not any(os.path.exists(p) for p in files):
        raise InvalidArgument(f"no kubeconfig at {', '.join(files)}; pass --kubeconfig PATH, or --local to read this node")
    current, named = merge(files)
    name = context or current
    if not name:
        raise InvalidArgument(f"no current-context in {', '.join(files)}; pass --context NAME")
    ctx = named["contexts"].get(name)
    if ctx is None:
        raise InvalidArgument(f"context {name!r} does not exist in {', '.join(files)}; pick one with --context")
    cluster_name, user_name = str(ctx.value.get("cluster") or ""), str(ctx.value.get("user") or "")
    cluster = named["clusters"].get(cluster_name)
    if cluster is None or not cluster.value.get("server"):
        raise InvalidArgument(f"the context {name!r} names the cluster {cluster_name!r}, which has no server in the kubeconfig")
    user = named["users"].get(user_name) if user_name else None
    out = Resolved(context=name, namespace=str(ctx.value.get("namespace") or "default"), server="")
    _cluster(out, cluster, cluster_name)
    u = user.value if user is not None else {}
    out.impersonation = Impersonation(
        user=as_user or str(u.get("as") or ""),
        groups=tuple(as_groups) or tuple(map(str, u.get("as-groups") or ())),
        uid=as_uid or str(u.get("as-uid") or ""),
        extra={str(k): tuple(map(str, v or ())) for k, v in (u.get("as-user-extra") or {}).items()},
    )
    if out.impersonation.groups and not out.impersonation.user or out.impersonation.uid and not out.impersonation.user:
        raise InvalidArgument("--as-group and --as-uid need --as USER (the API server impersonates them only along with a user)")
    if urlsplit(out.server).scheme == "https":  # kubectl sends a user's credentials only over TLS
        _user(out, user, user_name or "(none)", cluster)
    return out


def _cluster(out: Resolved, cluster: Entry, name: str) -> None:
    c = cluster.value
    server = str(c["server"]).rstrip("/")
    if "://" not in server:
        server = "http://" + server  # client-go: a server without a scheme is plain HTTP (its TLS settings come later)
    try:
        urlsplit(server).port  # noqa: B018  -- parsed now, as client-go parses it on load: a bad host or port is refused here
    except ValueError as e:
        raise InvalidArgument(f"the server {server[:120]!r} of the cluster {name!r} is not a URL ({e}); fix the kubeconfig") from None
    out.server = server
    out.proxy_url = c.get("proxy-url") or None
    out.insecure = bool(c.get("insecure-skip-tls-verify"))
    out.tls_server_name = c.get("tls-server-name") or None
    if c.get("certificate-authority") and c.get("certificate-authority-data"):
        raise InvalidArgument(f"certificate-authority-data and certificate-authority are both specified for the cluster {name!r}; keep one "
                              "(kubectl refuses this too)")
    if out.insecure and (c.get("certificate-authority") or c.get("certificate-authority-data")):
        raise InvalidArgument(f"the cluster {name!r} sets insecure-skip-tls-verify and a certificate authority; drop one "
                              "(kubectl refuses this too)")
    out.ca_file = cluster.path("certificate-authority")
    if out.ca_file and not os.access(out.ca_file, os.R_OK):
        raise InvalidArgument(f"cannot read the certificate-authority {out.ca_file} of the cluster {name}; fix the kubeconfig")
    if c.get("certificate-authority-data"):
        out.ca_data = _b64(c["certificate-authority-data"], f"certificate-authority-data of {name}")


def _user(out: Resolved, user: Entry | None, name: str, cluster: Entry) -> None:
    u = user.value if user is not None else {}
    for key in ("client-certificate", "client-key"):
        if u.get(key) and u.get(key + "-data"):
            raise InvalidArgument(f"{key}-data and {key} are both specified for the user {name!r}; keep one (kubectl refuses this too)")
    if u.get("token") and (u.get("username") or u.get("password")):
        raise InvalidArgument(f"the user {name!r} has a token and a username/password; keep one (kubectl refuses this too)")
    token = str(u.get("token") or "")
    token_file = user.path("tokenFile") if user is not None else None
    if token_file:
        try:
            with open(token_file) as f:
                token = f.read().strip()
        except OSError as e:
            raise InvalidArgument(f"cannot read the tokenFile {token_file} of the user {name!r} ({e.strerror})") from None
    if token:
        out.authorization = "Bearer " + token
    elif u.get("username") or u.get("password"):
        raw = f"{u.get('username') or ''}:{u.get('password') or ''}".encode()
        out.authorization = "Basic " + base64.b64encode(raw).decode()
    if u.get("client-certificate-data") or u.get("client-certificate"):
        out.cert_data = _b64(u["client-certificate-data"], f"client-certificate-data of {name}") if u.get("client-certificate-data") else None
        out.key_data = _b64(u["client-key-data"], f"client-key-data of {name}") if u.get("client-key-data") else None
        out.cert_file = user.path("client-certificate") if user is not None else None
        out.key_file = user.path("client-key") if user is not None else None
    for path, what in ((out.cert_file, "client-certificate"), (out.key_file, "client-key")):
        if path and not os.access(path, os.R_OK):
            raise InvalidArgument(f"cannot read the {what} {path} of the user {name!r}; fix the kubeconfig")
    has_cert = bool(out.cert_file or out.cert_data)
    if u.get("auth-provider"):
        out.auth_provider = u["auth-provider"]
    elif u.get("exec") and not (out.authorization or has_cert):
        if user is not None:
            _exec(out, user, name, cluster)
    elif not (out.authorization or has_cert):
        who = f"its user {name!r} has no token, client certificate, exec plugin or auth-provider" if user is not None else \
            (f"it names the user {name!r}, which no kubeconfig file defines" if name != "(none)" else "it names no user")
        raise InvalidArgument(f"the context {out.context!r} has no credentials for {out.server} ({who}; kubectl would ask "
                              "for a password); fix the kubeconfig")


def _b64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=False)
    except ValueError:
        raise InvalidArgument(f"the {what} is not base64") from None


# -- exec credential plugins -----------------------------------------------------------------------
def _exec(out: Resolved, user: Entry, name: str, cluster: Entry) -> None:
    """Run the user's exec plugin as client-go runs it; its token or client certificate into ``out``."""
    spec = user.value["exec"]
    api_version = str(spec.get("apiVersion") or "")
    if api_version not in EXEC_VERSIONS:
        raise InvalidArgument(f"the exec plugin of the user {name!r} has apiVersion {api_version!r}; "
                              f"kubectl supports {' and '.join(EXEC_VERSIONS)}")
    mode = spec.get("interactiveMode") or ("" if api_version.endswith("/v1") else "IfAvailable")
    if mode not in ("Never", "IfAvailable", "Always"):
        raise InvalidArgument(f"the exec plugin of the user {name!r} needs interactiveMode Never, IfAvailable or Always "
                              f"(got {mode!r}; kubectl requires it with {api_version})")
    tty = sys.stdin is not None and sys.stdin.isatty()
    if mode == "Always" and not tty:
        raise InvalidArgument(f"the exec plugin of the user {name!r} is interactive (interactiveMode: Always), "
                              "but standard input is not a terminal")
    interactive = mode != "Never" and tty
    info: dict[str, Any] = {"kind": "ExecCredential", "apiVersion": api_version, "spec": {"interactive": interactive}}
    if spec.get("provideClusterInfo"):
        info["spec"]["cluster"] = _cluster_info(cluster)
    command = str(spec.get("command") or "")
    if os.sep in command and not os.path.isabs(command):
        command = os.path.normpath(os.path.join(user.base, command))  # relative to the kubeconfig that holds it, as kubectl
    env = dict(os.environ)
    for item in spec.get("env") or []:
        if isinstance(item, dict) and item.get("name"):
            env[str(item["name"])] = str(item.get("value") or "")
    env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
    hint = f" ({spec['installHint'].strip()})" if spec.get("installHint") else ""
    if shutil.which(command, path=env.get("PATH")) is None:
        raise InvalidArgument(f"the exec credential plugin {command!r} of the user {name!r} is not installed{hint}")
    try:
        done = subprocess.run([command, *map(str, spec.get("args") or [])], env=env, stdout=subprocess.PIPE,
                              stdin=None if interactive else subprocess.DEVNULL, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise InvalidArgument(f"the exec credential plugin {command!r} of the user {name!r} could not run ({e}){hint}") from None
    if done.returncode != 0:
        raise InvalidArgument(f"the exec credential plugin {command!r} of the user {name!r} failed (exit {done.returncode})")
    take_credential(out, done.stdout, api_version, command, name)


def take_credential(out: Resolved, answer: bytes, api_version: str, command: str, name: str) -> None:
    """An exec plugin's answer (an ExecCredential, JSON) into ``out``: its token or client certificate."""
    try:
        cred = json.loads(answer)
    except ValueError:
        cred = None
    status = cred.get("status") if isinstance(cred, dict) else None
    if not isinstance(cred, dict) or not isinstance(status, (dict, type(None))):
        raise InvalidArgument(f"the exec credential plugin {command!r} of the user {name!r} did not answer an ExecCredential")
    status = status or {}
    if cred.get("apiVersion") != api_version:
        raise InvalidArgument(f"the exec credential plugin {command!r} answered {_short(cred.get('apiVersion'))}, not {api_version!r}")
    token, cert, key = (status.get(k) for k in ("token", "clientCertificateData", "clientKeyData"))
    if not all(isinstance(v, (str, type(None))) for v in (token, cert, key)):
        raise InvalidArgument(f"the exec credential plugin {command!r} of the user {name!r} answered credentials that are not strings")
    if token:
        out.authorization = "Bearer " + token
    if cert and key:
        out.cert_data, out.key_data = cert.encode(), key.encode()
    if not out.authorization and not out.cert_data:
        raise InvalidArgument(f"the exec credential plugin {command!r} of the user {name!r} gave neither a token nor a client certificate")


def _short(value: Any) -> str:
    """A value from someone else's document, for a message: repr'd, one line, at most 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _cluster_info(cluster: Entry) -> dict[str, Any]:
    """The cluster as an exec plugin sees it (ExecCredential spec.cluster): the CA always as data."""
    c = cluster.value
    info: dict[str, Any] = {"server": str(c["server"])}
    for key in ("tls-server-name", "insecure-skip-tls-verify", "proxy-url", "disable-compression"):
        if c.get(key):
            info[key] = c[key]
    ca = c.get("certificate-authority-data")
    if not ca and cluster.path("certificate-authority"):
        try:
            with open(cluster.path("certificate-authority") or "", "rb") as f:
                ca = base64.b64encode(f.read()).decode()
        except OSError:
            ca = None
    if ca:
        info["certificate-authority-data"] = ca
    info["config"] = next((e.get("extension") for e in c.get("extensions") or []
                           if isinstance(e, dict) and e.get("name") == "client.authentication.k8s.io/exec"), None)
    return info


_TOKEN_CHARS = frozenset(b"!#$&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _header_key_escape(key: str) -> str:
    """An as-user-extra key as client-go puts it in a header name: bytes outside the token set (and %) as %XX."""
    return "".join(chr(b) if b in _TOKEN_CHARS else f"%{b:02X}" for b in key.encode())
