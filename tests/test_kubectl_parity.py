"""kubectl parity, proven against the real kubectl: in each kubeconfig situation, ``kubectl get pod
NAME -o json`` and ``nsinspect pod NAME -o json`` (same flags, same environment) must send the pod's
GET to the same server, path and query, with the same credentials (Authorization header, client
certificate) and Impersonate-* headers; and nsinspect sends credentials nowhere kubectl does not.

The servers are tests/recording_api.py (plain HTTP and TLS, on loopback); kubectl is the machine's
(the default on PATH, and 1.27 / 1.33 from beside its real file).  What nsinspect does after the
pod's GET (finding the agent) fails here by design: only what reached the servers is compared.
Also: ``kubectl nsinspect`` found by the real kubectl on PATH, and ``kubectl kustomize daemonset/``
against ``nsinspect deploy``.  Under CI=true a missing kubectl fails the tests instead of skipping.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from kube_stub import PROXIED_NAME, ConnectProxy
from recording_api import PKI, SNI_NAME, RecordingAPI, Seen

ROOT = Path(__file__).resolve().parent.parent
KUBECTLS = ("default", "1.27", "1.33")  # the kubectl on PATH (1.32 here), the oldest and the newest beside it
POD = "web"
DECOY_TOKEN = "decoy-token-never-sent"


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what}; CI must run the kubectl parity tests")
    pytest.skip(what)


def kubectl_binaries() -> dict[str, str | None]:
    """The kubectl versions present: version -> path (None when missing)."""
    path = shutil.which("kubectl")
    if path is None:
        return dict.fromkeys(KUBECTLS)
    beside = Path(os.path.realpath(path)).parent
    return {v: path if v == "default" else (str(beside / f"kubectl.{v}") if os.access(beside / f"kubectl.{v}", os.X_OK) else None)
            for v in KUBECTLS}


def kubectl_binary(version: str) -> str:
    """The real kubectl: the one on PATH ("default"), or ``kubectl.VERSION`` beside its real file."""
    path = kubectl_binaries()[version]
    if path is None:
        _missing(f"kubectl {version} is not installed (kubectl on PATH, kubectl.VERSION beside its real file)")
    return path


# -- the world: servers, certificates, files -----------------------------------------------------
@dataclass
class World:
    dir: Path
    pki: PKI
    log: list[Seen]
    servers: dict[str, RecordingAPI]
    home: Path
    cwd: Path
    cases: dict[str, Case] = field(default_factory=dict)
    runs: dict[str, dict[str, Run]] = field(default_factory=dict)  # situation -> client -> what it did
    proxied: dict[str, tuple] = field(default_factory=dict)  # proxy case -> what nsinspect did through it

    def url(self, name: str) -> str:
        return self.servers[name].url

    @staticmethod
    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    def cluster(self, server: str = "main", **extra: object) -> dict:
        """A cluster entry for one of the servers, trusting the cluster CA by -data unless ``extra`` says otherwise."""
        entry: dict = {"server": self.url(server)}
        if self.servers[server].tls and not ({"certificate-authority", "insecure-skip-tls-verify"} & extra.keys()):
            entry["certificate-authority-data"] = self.b64(self.pki.ca)
        entry.update(extra)
        return entry

    def client_cert(self, cn: str, data: bool = False, relative_to: Path | None = None) -> dict:
        cert, key = self.pki.clients[cn]
        if data:
            return {"client-certificate-data": self.b64(cert), "client-key-data": self.b64(key)}
        if relative_to is not None:
            return {"client-certificate": os.path.relpath(cert, relative_to), "client-key": os.path.relpath(key, relative_to)}
        return {"client-certificate": str(cert), "client-key": str(key)}


@dataclass
class Case:
    """One situation: flags after the command (``args``), flags before it (``before``), the environment."""

    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    before: list[str] = field(default_factory=list)
    uses_exec: bool = False


@dataclass
class Run:
    code: int
    stderr: str
    log: list[Seen]
    exec_calls: list[dict]


def write_kubeconfig(w: World, path: Path, clusters: dict[str, dict], users: dict[str, dict], contexts: dict[str, dict],
                     current: str | None = None, decoy: bool = True) -> Path:
    """A kubeconfig; with ``decoy``, a cluster on the decoy server and a user whose credentials must never be sent."""
    if decoy:
        clusters = {**clusters, "decoy": w.cluster("decoy")}
        users = {**users, "decoy-user": {"token": DECOY_TOKEN}}
        contexts = {**contexts, "decoy": {"cluster": "decoy", "user": "decoy-user"}}
    cfg: dict = {"apiVersion": "v1", "kind": "Config",
                 "clusters": [{"name": n, "cluster": c} for n, c in clusters.items()],
                 "users": [{"name": n, "user": u} for n, u in users.items()],
                 "contexts": [{"name": n, "context": c} for n, c in contexts.items()]}
    if current:
        cfg["current-context"] = current
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


EXEC_PLUGIN = """#!{python}
import json, os, sys
version, what = sys.argv[1], sys.argv[2]
with open(os.environ["EXEC_LOG"], "a") as f:  # EXEC_LOG: set per run by the test; PLUGIN_SETTING: by the kubeconfig
    f.write(json.dumps({{"argv": sys.argv[1:], "setting": os.environ.get("PLUGIN_SETTING"), "cwd": os.getcwd(),
                        "info": json.loads(os.environ.get("KUBERNETES_EXEC_INFO") or "null")}}) + "\\n")
if what.startswith("cert:"):
    cert, key = what[5:].split(",")
    status = {{"clientCertificateData": open(cert).read(), "clientKeyData": open(key).read()}}
else:
    status = {{"token": what}}
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/" + version, "kind": "ExecCredential", "status": status}}))
"""


# -- the situations --------------------------------------------------------------------------------
# Each writes its files under ``d`` and returns the Case.  Servers: main (TLS, the cluster CA), other
# (TLS, a second cluster), plain (HTTP), sni (TLS; its certificate names only SNI_NAME), decoy (TLS).
def _one(w: World, d: Path, user: dict, cluster: dict | None = None, ns: str | None = "team-a", **kw: object) -> Case:
    ctx = {"cluster": "c", "user": "u", **({"namespace": ns} if ns else {})}
    kc = write_kubeconfig(w, d / "config", {"c": cluster or w.cluster()}, {"u": user}, {"ctx": ctx}, "ctx")
    return Case(env={"KUBECONFIG": str(kc)}, **kw)  # type: ignore[arg-type]


def kubeconfig_list(w: World, d: Path) -> Case:
    """$KUBECONFIG: a missing file, an empty file, then two files; the first current-context wins, and for
    a name set in both (user "u") the first file's entry."""
    (d / "empty").parent.mkdir(parents=True, exist_ok=True)
    (d / "empty").write_text("")
    a = write_kubeconfig(w, d / "a", {"ca": w.cluster("main")}, {"u": {"token": "token-a"}},
                         {"ctx-a": {"cluster": "ca", "user": "u", "namespace": "ns-a"}}, "ctx-a")
    b = write_kubeconfig(w, d / "b", {"cb": w.cluster("other")}, {"u": {"token": "token-b-shadowed"}, "ub": {"token": "token-b"}},
                         {"ctx-b": {"cluster": "cb", "user": "ub", "namespace": "ns-b"}}, "ctx-b", decoy=False)
    return Case(env={"KUBECONFIG": os.pathsep.join([str(d / "missing"), str(d / "empty"), str(a), str(b)])})


def kubeconfig_list_split(w: World, d: Path) -> Case:
    """$KUBECONFIG: the first file only names the current-context; the second defines it, its cluster and user."""
    a = d / "a"
    a.parent.mkdir(parents=True, exist_ok=True)
    a.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "late"}))
    b = write_kubeconfig(w, d / "b", {"cb": w.cluster("other")}, {"ub": {"token": "token-late"}},
                         {"late": {"cluster": "cb", "user": "ub"}, "early": {"cluster": "cb", "user": "ub", "namespace": "x"}}, "early")
    return Case(env={"KUBECONFIG": os.pathsep.join([str(a), str(b)])})


def kubeconfig_flag(w: World, d: Path) -> Case:
    """--kubeconfig wins over $KUBECONFIG."""
    env_file = write_kubeconfig(w, d / "env", {"c": w.cluster("other")}, {"u": {"token": "token-env"}},
                                {"ctx-env": {"cluster": "c", "user": "u"}}, "ctx-env")
    flag_file = write_kubeconfig(w, d / "flag", {"c": w.cluster("main")}, {"u": {"token": "token-flag"}},
                                 {"ctx-flag": {"cluster": "c", "user": "u", "namespace": "ns-flag"}}, "ctx-flag")
    return Case(args=["--kubeconfig", str(flag_file)], env={"KUBECONFIG": str(env_file)})


def context_flag(w: World, d: Path) -> Case:
    """--context picks another context: its cluster, user and namespace."""
    kc = write_kubeconfig(w, d / "config", {"a": w.cluster("main"), "b": w.cluster("other")},
                          {"ua": {"token": "token-a"}, "ub": {"token": "token-b"}},
                          {"one": {"cluster": "a", "user": "ua", "namespace": "ns-one"},
                           "two": {"cluster": "b", "user": "ub", "namespace": "ns-two"}}, "one")
    return Case(args=["--context", "two"], env={"KUBECONFIG": str(kc)})


def namespace_flag(w: World, d: Path) -> Case:
    """-n wins over the context's namespace; flags before the command, kubectl-style."""
    case = _one(w, d, {"token": "token-n"}, ns="from-context")
    case.before = ["-n", "from-flag"]
    return case


def no_namespace(w: World, d: Path) -> Case:
    """A context without a namespace: "default"."""
    return _one(w, d, {"token": "token-default-ns"}, ns=None)


def token(w: World, d: Path) -> Case:
    return _one(w, d, {"token": "token-plain"})


def token_file(w: World, d: Path) -> Case:
    """tokenFile, relative to the kubeconfig's directory (the command runs elsewhere)."""
    (d / "secrets").mkdir(parents=True, exist_ok=True)
    (d / "secrets" / "token").write_text("token-from-file\n")
    return _one(w, d, {"tokenFile": "secrets/token"})


def token_and_token_file(w: World, d: Path) -> Case:
    """Both token and tokenFile."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "token").write_text("token-from-the-file")
    return _one(w, d, {"token": "token-inline", "tokenFile": str(d / "token")})


def _exec(w: World, d: Path, version: str, what: str, **extra: object) -> Case:
    d.mkdir(parents=True, exist_ok=True)
    plugin = d / "bin" / "credential-plugin"
    plugin.parent.mkdir(exist_ok=True)
    plugin.write_text(EXEC_PLUGIN.format(python=sys.executable))
    plugin.chmod(0o755)
    spec = {"apiVersion": f"client.authentication.k8s.io/{version}", "command": "./bin/credential-plugin",
            "args": [version, what], "env": [{"name": "PLUGIN_SETTING", "value": "from-the-kubeconfig"}], **extra}
    case = _one(w, d, {"exec": spec})
    case.uses_exec = True
    return case


def exec_v1(w: World, d: Path) -> Case:
    """An exec credential plugin (client.authentication.k8s.io/v1), its command relative to the kubeconfig."""
    return _exec(w, d, "v1", "token-from-exec-v1", interactiveMode="Never")


def exec_v1beta1(w: World, d: Path) -> Case:
    """v1beta1, with provideClusterInfo: the plugin is told the cluster."""
    return _exec(w, d, "v1beta1", "token-from-exec-v1beta1", provideClusterInfo=True)


def exec_client_cert(w: World, d: Path) -> Case:
    """An exec plugin that answers with a client certificate instead of a token."""
    cert, key = w.pki.clients["bob"]
    return _exec(w, d, "v1", f"cert:{cert},{key}", interactiveMode="IfAvailable")


def client_cert_files(w: World, d: Path) -> Case:
    """client-certificate/client-key files, relative to the kubeconfig."""
    d.mkdir(parents=True, exist_ok=True)
    return _one(w, d, w.client_cert("alice", relative_to=d))


def client_cert_data(w: World, d: Path) -> Case:
    return _one(w, d, w.client_cert("alice", data=True))


def client_cert_and_token(w: World, d: Path) -> Case:
    return _one(w, d, {"token": "token-with-cert", **w.client_cert("bob", data=True)})


def client_cert_from_other_file(w: World, d: Path) -> Case:
    """$KUBECONFIG list: the cluster in one directory, the user (relative certificate paths) in another."""
    users = d / "users" / "more"
    users.mkdir(parents=True, exist_ok=True)
    a = write_kubeconfig(w, d / "config", {"c": w.cluster("main")}, {}, {"ctx": {"cluster": "c", "user": "u"}}, "ctx")
    b = write_kubeconfig(w, users / "config", {}, {"u": w.client_cert("carol", relative_to=users)}, {}, decoy=False)
    return Case(env={"KUBECONFIG": os.pathsep.join([str(a), str(b)])})


def token_and_basic_auth(w: World, d: Path) -> Case:
    return _one(w, d, {"token": "token-and-basic", "username": "ann", "password": "s3cret"})


def token_and_exec(w: World, d: Path) -> Case:
    case = _exec(w, d, "v1", "token-from-exec", interactiveMode="Never")
    cfg = yaml.safe_load((d / "config").read_text())
    cfg["users"][0]["user"]["token"] = "token-beside-exec"
    (d / "config").write_text(yaml.safe_dump(cfg))
    return case


def exec_and_client_cert(w: World, d: Path) -> Case:
    case = _exec(w, d, "v1", "token-from-exec", interactiveMode="Never")
    cfg = yaml.safe_load((d / "config").read_text())
    cfg["users"][0]["user"].update(w.client_cert("alice", data=True))
    (d / "config").write_text(yaml.safe_dump(cfg))
    return case


def exec_always_interactive(w: World, d: Path) -> Case:
    """interactiveMode Always, but standard input is not a terminal."""
    return _exec(w, d, "v1", "token-x", interactiveMode="Always")


def exec_not_found(w: World, d: Path) -> Case:
    case = _exec(w, d, "v1", "token-x", interactiveMode="Never")
    cfg = yaml.safe_load((d / "config").read_text())
    cfg["users"][0]["user"]["exec"].update(command="no-such-credential-plugin", installHint="install it from example.com")
    (d / "config").write_text(yaml.safe_dump(cfg))
    return case


def client_cert_data_and_file(w: World, d: Path) -> Case:
    return _one(w, d, {**w.client_cert("alice", data=True), **w.client_cert("bob")})


def insecure_and_ca(w: World, d: Path) -> Case:
    return _one(w, d, {"token": "token-insecure-ca"}, cluster=w.cluster("main", **{"insecure-skip-tls-verify": True,
                                                                                      "certificate-authority-data": w.b64(w.pki.ca)}))


def empty_user(w: World, d: Path) -> Case:
    return _one(w, d, {})


def plain_http_without_user(w: World, d: Path) -> Case:
    """kubectl proxy's habit: http://127.0.0.1:8001 and no credentials."""
    kc = write_kubeconfig(w, d / "config", {"c": w.cluster("plain")}, {}, {"ctx": {"cluster": "c"}}, "ctx")
    return Case(env={"KUBECONFIG": str(kc)})


def impersonation_uid_flag(w: World, d: Path) -> Case:
    return _one(w, d, {"token": "token-admin"}, args=["--as", "u1", "--as-uid", "42"])


def exec_v1_without_interactive_mode(w: World, d: Path) -> Case:
    """v1 requires interactiveMode."""
    return _exec(w, d, "v1", "token-x")


def exec_failing(w: World, d: Path) -> Case:
    """The plugin exits 1 (an expired login, say): no request."""
    case = _exec(w, d, "v1", "token-x", interactiveMode="Never")
    (d / "bin" / "credential-plugin").write_text("#!/bin/sh\necho 'log in first' >&2\nexit 1\n")
    return case


def server_without_scheme(w: World, d: Path) -> Case:
    """server: 127.0.0.1:PORT, no scheme."""
    return _one(w, d, {"token": "token-no-scheme"}, cluster={"server": w.url("plain").removeprefix("http://")})


def impersonation_flags(w: World, d: Path) -> Case:
    return _one(w, d, {"token": "token-admin"}, args=["--as", "student", "--as-group", "lab", "--as-group", "students"])


def impersonation_kubeconfig(w: World, d: Path) -> Case:
    """The kubeconfig user's as/as-groups."""
    return _one(w, d, {"token": "token-admin", "as": "kc-user", "as-groups": ["g1", "g2"]})


def impersonation_flag_over_kubeconfig(w: World, d: Path) -> Case:
    """--as given, the kubeconfig user also has as/as-groups."""
    return _one(w, d, {"token": "token-admin", "as": "kc-user", "as-groups": ["kc-group"]}, args=["--as", "flag-user"])


def impersonation_extra(w: World, d: Path) -> Case:
    """as-uid and as-user-extra in the kubeconfig."""
    return _one(w, d, {"token": "token-admin", "as": "kc-user", "as-uid": "1234",
                       "as-user-extra": {"reason": ["lab check"], "scopes.example.com/team": ["a", "b"]}})


def impersonation_groups_only(w: World, d: Path) -> Case:
    """--as-group without --as."""
    return _one(w, d, {"token": "token-admin"}, args=["--as-group", "lab"])


def basic_auth(w: World, d: Path) -> Case:
    return _one(w, d, {"username": "ann", "password": "s3cret"})


def plain_http(w: World, d: Path) -> Case:
    """A server on plain HTTP, a user with a token and a client certificate."""
    return _one(w, d, {"token": "token-over-http", **w.client_cert("alice", data=True)}, cluster=w.cluster("plain"))


def plain_http_impersonation(w: World, d: Path) -> Case:
    return _one(w, d, {"token": "token-over-http", "as": "kc-user"}, cluster=w.cluster("plain"), args=["--as-group", "g"])


def insecure_skip_verify(w: World, d: Path) -> Case:
    return _one(w, d, {"token": "token-insecure"}, cluster=w.cluster("main", **{"insecure-skip-tls-verify": True}))


def ca_file(w: World, d: Path) -> Case:
    """certificate-authority as a file, relative to the kubeconfig."""
    d.mkdir(parents=True, exist_ok=True)
    return _one(w, d, {"token": "token-ca-file"},
                cluster=w.cluster("main", **{"certificate-authority": os.path.relpath(w.pki.ca, d)}))


def ca_data_over_file(w: World, d: Path) -> Case:
    """Both: certificate-authority-data (the right CA) and certificate-authority (an unrelated one)."""
    return _one(w, d, {"token": "token-ca-both"}, cluster=w.cluster(
        "main", **{"certificate-authority": str(w.pki.other_ca), "certificate-authority-data": w.b64(w.pki.ca)}))


def untrusted_server(w: World, d: Path) -> Case:
    """The server's certificate is not signed by the CA the kubeconfig trusts: nothing may be sent."""
    return _one(w, d, {"token": "token-untrusted"}, cluster=w.cluster("main", **{"certificate-authority-data": w.b64(w.pki.other_ca)}))


def tls_server_name(w: World, d: Path) -> Case:
    """tls-server-name: the server's certificate names only SNI_NAME, the server URL is an IP."""
    return _one(w, d, {"token": "token-sni"}, cluster=w.cluster("sni", **{"tls-server-name": SNI_NAME}))


def server_with_path(w: World, d: Path) -> Case:
    """A server URL with a path (a proxying front end such as Rancher's)."""
    return _one(w, d, {"token": "token-prefixed"}, cluster={**w.cluster("main"), "server": w.url("main") + "/k8s/clusters/c-1"})


def context_without_user(w: World, d: Path) -> Case:
    """The context names a user that no file defines."""
    kc = write_kubeconfig(w, d / "config", {"c": w.cluster("main")}, {}, {"ctx": {"cluster": "c", "user": "nobody"}}, "ctx")
    return Case(env={"KUBECONFIG": str(kc)})


def missing_context(w: World, d: Path) -> Case:
    """--context names a context that does not exist: no request at all."""
    return _one(w, d, {"token": "token-x"}, args=["--context", "nope"])


SITUATIONS: dict[str, Callable[[World, Path], Case]] = {f.__name__.replace("_", "-"): f for f in (
    # which file, context and namespace
    kubeconfig_list, kubeconfig_list_split, kubeconfig_flag, context_flag, namespace_flag, no_namespace,
    context_without_user, missing_context,
    # credentials
    token, token_file, token_and_token_file, basic_auth, token_and_basic_auth, empty_user,
    exec_v1, exec_v1beta1, exec_client_cert, token_and_exec, exec_and_client_cert, exec_always_interactive,
    exec_not_found, exec_v1_without_interactive_mode, exec_failing,
    client_cert_files, client_cert_data, client_cert_and_token, client_cert_from_other_file, client_cert_data_and_file,
    # impersonation
    impersonation_flags, impersonation_kubeconfig, impersonation_flag_over_kubeconfig, impersonation_extra,
    impersonation_groups_only, impersonation_uid_flag,
    # the server and how it is trusted
    plain_http, plain_http_impersonation, plain_http_without_user, server_without_scheme, server_with_path,
    insecure_skip_verify, insecure_and_ca, ca_file, ca_data_over_file, untrusted_server, tls_server_name,
)}


# -- running both ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("kubectl-parity")
    pki = PKI(base / "pki")
    log: list[Seen] = []
    servers = {"main": RecordingAPI("main", log, pki), "other": RecordingAPI("other", log, pki),
               "plain": RecordingAPI("plain", log), "sni": RecordingAPI("sni", log, pki, cert=pki.sni_server),
               "decoy": RecordingAPI("decoy", log, pki)}
    (base / "home").mkdir()
    (base / "cwd").mkdir()
    w = World(base, pki, log, servers, base / "home", base / "cwd")
    yield w
    for s in servers.values():
        s.close()


def _env(w: World, case: Case, path_prefix: str | None = None) -> dict[str, str]:
    env = {"PATH": (path_prefix + os.pathsep if path_prefix else "") + os.environ.get("PATH", "/usr/bin:/bin"),
           "HOME": str(w.home), "LANG": "C.UTF-8", "PYTHONPATH": str(ROOT), "NSINSPECT_NO_PROGRESS": "1"}
    env.update(case.env)
    return env


def case_of(w: World, name: str) -> Case:
    if name not in w.cases:
        w.cases[name] = SITUATIONS[name](w, w.dir / "cases" / name)
    return w.cases[name]


def client_of(user_agent: str) -> str:
    """Which client sent a request: its User-Agent names the binary (kubectl.1.27/..., kubectl/..., the
    kubectl dispatcher's own /version call) or the Python client (nsinspect)."""
    name = user_agent.split("/", 1)[0]
    if name.startswith("kubectl."):
        return name.removeprefix("kubectl.")
    return "default" if name.startswith("kubectl") else "nsinspect"


def runs_of(w: World, name: str) -> dict[str, Run]:
    """nsinspect and every kubectl in one situation, all at once (the machine has 2 cores and kubectl
    mostly waits); each request is told apart by its User-Agent, each exec plugin call by its EXEC_LOG."""
    if name not in w.runs:
        case = case_of(w, name)
        cmds = {"nsinspect": [sys.executable, "-m", "nsinspect", *case.before, "pod", POD, "-o", "json", *case.args]}
        cmds.update({v: [path, *case.before, "get", "pod", POD, "-o", "json", *case.args]
                     for v, path in kubectl_binaries().items() if path})
        w.log.clear()
        procs = {}
        for who, cmd in cmds.items():
            log = w.dir / "exec" / f"{name}.{who}.log"
            log.parent.mkdir(exist_ok=True)
            log.unlink(missing_ok=True)
            env = {**_env(w, case), "EXEC_LOG": str(log)}
            procs[who] = (subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                           text=True, env=env, cwd=w.cwd), log)
        out = {}
        for who, (proc, log) in procs.items():
            _, err = proc.communicate(timeout=60)
            calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
            out[who] = Run(proc.returncode, err, [s for s in w.log if client_of(s.user_agent) == who], calls)
        w.runs[name] = out
    return w.runs[name]


def run(w: World, cmd: list[str], case: Case, path_prefix: str | None = None) -> Run:
    """Run one client alone; what reached the servers meanwhile."""
    w.log.clear()
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(w, case, path_prefix), cwd=w.cwd, timeout=60,
                       stdin=subprocess.DEVNULL)
    return Run(r.returncode, r.stderr, list(w.log), [])


POD_GET = re.compile(rf".*/api/v1/namespaces/[^/]+/pods/{POD}")


def pod_get(r: Run) -> Seen | None:
    return next((s for s in r.log if s.method == "GET" and POD_GET.fullmatch(s.path)), None)


def assert_same_pod_get(k: Run, n: Run, what: str) -> None:
    kget, nget = pod_get(k), pod_get(n)
    assert nget == kget, f"{what}: kubectl sent {kget}, nsinspect sent {nget} (kubectl stderr: {k.stderr.strip()[:300]!r}, " \
                         f"nsinspect stderr: {n.stderr.strip()[:300]!r})"
    if kget is None:  # kubectl refused: so does nsinspect, in one sentence of its own (after what a plugin printed)
        assert k.code != 0 and n.code in (2, 4), (k.stderr, n.stderr)
        ours = [line for line in n.stderr.splitlines() if line.startswith("nsinspect:")]
        assert len(ours) == 1 and n.stderr.rstrip().endswith(ours[0]) and "Traceback" not in n.stderr, n.stderr
    # Credentials go only where kubectl sends them: every (server, credentials) nsinspect used, kubectl used too.
    sent = {(s.server, s.credentials) for s in k.log}
    extra = {(s.server, s.credentials) for s in n.log} - sent
    assert not extra, f"{what}: nsinspect sent credentials where kubectl did not: {extra}"
    assert not any(DECOY_TOKEN in (s.authorization or "") for s in n.log)


@pytest.mark.parametrize("kubectl", KUBECTLS)
@pytest.mark.parametrize("situation", list(SITUATIONS))
def test_the_pod_get_is_the_one_kubectl_sends(world: World, situation: str, kubectl: str) -> None:
    kubectl_binary(kubectl)  # present, or skipped (failed under CI)
    runs = runs_of(world, situation)
    k, n = runs[kubectl], runs["nsinspect"]
    assert_same_pod_get(k, n, f"{situation} (kubectl {kubectl})")
    if case_of(world, situation).uses_exec:
        # The exec plugin runs when kubectl runs it, and is given what kubectl gives it: arguments, the
        # kubeconfig's env, the working directory, KUBERNETES_EXEC_INFO.
        assert n.exec_calls[:1] == k.exec_calls[:1]


def test_the_situations_are_not_all_alike(world: World) -> None:
    """The differential test can fail: the situations reach different servers, with different credentials."""
    seen = set()
    for name in SITUATIONS:
        get = pod_get(runs_of(world, name)["nsinspect"])
        seen.add(None if get is None else (get.server, get.path, get.credentials, get.impersonation))
    assert len(seen) >= 20 and None in seen


def test_a_redirect_carries_no_token_further_than_kubectl_does(world: World) -> None:
    """The API server answers the pod's GET with a redirect to another server. kubectl follows it with
    its token; nsinspect (urllib3) follows it without: less than kubectl, never more."""
    case = case_of(world, "impersonation-flags")
    world.servers["main"].redirect_to = world.url("other")
    try:
        k = run(world, [kubectl_binary("default"), "get", "pod", POD, "-o", "json", *case.args], case)
        n = run(world, [sys.executable, "-m", "nsinspect", "pod", POD, "-o", "json", *case.args], case)
    finally:
        world.servers["main"].redirect_to = None
    followed = [s for s in n.log if s.server == "other"]
    assert [s.server for s in k.log if POD_GET.fullmatch(s.path)] == ["main", "other"]
    assert followed and followed[0].authorization is None and followed[0].impersonation == pod_get(n).impersonation
    assert {(s.server, s.credentials) for s in n.log} <= {(s.server, s.credentials) for s in k.log} | {("other", (None, None))}


@pytest.fixture(scope="module")
def proxy():
    p = ConnectProxy("proxy-user", "proxy-pass")
    yield p
    p.close()


PROXY_CASES = ("proxy-url", "https-proxy-loopback-server", "https-proxy-named-server")


@pytest.mark.parametrize("kubectl", KUBECTLS)
@pytest.mark.parametrize("how", PROXY_CASES)
def test_the_proxy_is_the_one_kubectl_uses(world: World, proxy: ConnectProxy, how: str, kubectl: str) -> None:
    """The cluster's proxy-url, or HTTPS_PROXY (with credentials): the pod's GET goes through the proxy
    exactly when kubectl's does, with the same credentials; a loopback server is reached directly."""
    binary = kubectl_binary(kubectl)
    d = world.dir / "proxy" / how
    port = world.servers["main"].server.server_address[1]
    cluster = world.cluster("main")
    env: dict[str, str] = {}
    if how == "proxy-url":
        cluster["proxy-url"] = proxy.url
    else:
        env["HTTPS_PROXY"] = proxy.url
        if how == "https-proxy-named-server":
            cluster["server"] = f"https://{PROXIED_NAME}:{port}"  # only the proxy resolves this name
    case = _one(world, d, {"token": "token-via-proxy"}, cluster=cluster)
    case.env.update(env)

    def run_through(cmd: list[str]) -> tuple[Seen | None, bool, set[str], bool]:
        """The pod's GET, whether the proxy carried it, the CONNECT targets, and whether all were authorized."""
        proxy.seen.clear()
        r = run(world, cmd, case)
        get = pod_get(r)
        assert get is not None, r.stderr
        return get, get.port in proxy.ports, {t for t, _ in proxy.seen}, all(ok for _, ok in proxy.seen)

    k = run_through([binary, "get", "pod", POD, "-o", "json"])
    if how not in world.proxied:  # nsinspect does not depend on the kubectl version
        world.proxied[how] = run_through([sys.executable, "-m", "nsinspect", "pod", POD, "-o", "json"])
    n = world.proxied[how]
    assert n == k, (how, k, n)
    assert k[1] == (how != "https-proxy-loopback-server") and k[3]


# -- the plugin, as users run it ---------------------------------------------------------------------
@pytest.mark.parametrize("kubectl", KUBECTLS)
def test_kubectl_finds_the_plugin_on_path(world: World, kubectl: str, tmp_path: Path) -> None:
    launcher = tmp_path / "kubectl-nsinspect"
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} -m nsinspect.kubectl \"$@\"\n")
    launcher.chmod(0o755)
    case = case_of(world, "context-flag")
    binary = kubectl_binary(kubectl)
    n = run(world, [binary, "nsinspect", "pod", POD, "-o", "json", "-n", "lab", *case.args], case, path_prefix=str(tmp_path))
    assert "nsinspect agent" in n.stderr and pod_get(n) is not None, n.stderr  # the plugin ran, and got as far as the agent
    k = run(world, [binary, "get", "pod", POD, "-o", "json", "-n", "lab", *case.args], case)
    assert_same_pod_get(k, n, f"kubectl {kubectl} nsinspect")
    assert pod_get(n).path.startswith("/api/v1/namespaces/lab/") and pod_get(n).server == "other"  # -n and --context reached it
    r = subprocess.run([binary, "nsinspect", "--help"], capture_output=True, text=True, env=_env(world, case, str(tmp_path)))
    assert r.returncode == 0 and "Usage: kubectl nsinspect" in r.stdout, r.stderr


@pytest.mark.parametrize("kubectl", KUBECTLS)
def test_kustomize_builds_what_deploy_prints(kubectl: str) -> None:
    def key(o: dict) -> tuple:
        return o["apiVersion"], o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]

    built = subprocess.run([kubectl_binary(kubectl), "kustomize", str(ROOT / "daemonset")], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    ours = subprocess.run([sys.executable, "-m", "nsinspect", "deploy"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert ours.returncode == 0, ours.stderr
    theirs = {key(o): o for o in yaml.safe_load_all(built.stdout) if o}
    mine = {key(o): o for o in yaml.safe_load_all(ours.stdout) if o}
    assert len(theirs) >= 5 and mine == theirs
