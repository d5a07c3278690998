"""Cluster mode's pure parts: the spec reader and the three-way comparison, kubectl-style argv,
the packaged manifests (printed and applied), the krew manifest and its launcher."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from helpers import assert_one_sentence_error, run_cli
from kube_stub import EVERYTHING, StubAPI

from nsinspect.cli import normalize_argv
from nsinspect.cluster.spec import compare, spec_of
from nsinspect.model import INFERRED_EPHEMERAL, NS_TYPES, Member, NamespaceId, PodInfo, PodView, Process, ProcessId, Verdict

ROOT = Path(__file__).resolve().parent.parent


def _member(name, role, ino_pid, cid, created, target=""):
    ns = {t: NamespaceId(4, 4026530000 + i) for i, t in enumerate(NS_TYPES)}
    ns["pid"] = NamespaceId(4, ino_pid)
    return Member(name, role, cid, "running", Process(ProcessId(100 + created, 1), 1, 0, "root", name, name), ns,
                  target_id=target, created_at=created)


def _view():
    members = [
        _member("p", "sandbox", 1, "sb", 1),
        _member("side", "app", 2, "c-side", 2),  # a native sidecar looks like an app container to the runtime
        _member("web", "app", 3, "c-web", 3),
        _member("dbg", "ephemeral", 3, "c-dbg", 4, target="c-web"),
    ]
    sharing = {t: Verdict("shared", "shared", "r") for t in NS_TYPES}
    sharing["pid"] = Verdict("mixed", "mixed", "pid=TARGET")
    return PodView(PodInfo("lab", "p", "u1", "sb", "n1"), members, sharing, {}, notes=(INFERRED_EPHEMERAL,))


POD = {
    "metadata": {"name": "p", "namespace": "lab", "uid": "u1"},
    "spec": {
        "nodeName": "n1", "shareProcessNamespace": True,
        "initContainers": [{"name": "side", "restartPolicy": "Always"}, {"name": "setup"}],
        "containers": [{"name": "web"}],
        "ephemeralContainers": [{"name": "dbg", "targetContainerName": "web"}],
    },
    "status": {"phase": "Running", "initContainerStatuses": [{"name": "setup", "state": {"waiting": {"reason": "PodInitializing"}}}]},
}


def test_spec_of_reads_what_namespaces_depend_on():
    s = spec_of(POD)
    assert (s.node, s.share_process_namespace, s.host_network, s.host_users, s.phase) == ("n1", True, False, None, "Running")
    assert [(c.name, c.role, c.sidecar, c.target) for c in s.containers] == [
        ("side", "init", True, ""), ("setup", "init", False, ""), ("web", "app", False, ""), ("dbg", "ephemeral", False, "web")]
    assert s.find("setup").state == "waiting (PodInitializing)"
    assert spec_of({"spec": {"hostUsers": False}}).host_users is False


def test_compare_takes_roles_from_the_spec_and_shows_disagreement():
    v = compare(_view(), spec_of(POD))
    roles = [(m.name, m.role, m.sidecar) for m in v.members]
    assert roles == [("p", "sandbox", False), ("side", "init", True), ("setup", "init", False), ("web", "app", False),
                     ("dbg", "ephemeral", False)]
    assert next(m for m in v.members if m.name == "setup").state == "waiting"
    assert any("'setup' is in the spec but not in the runtime (waiting (PodInitializing))" in n for n in v.notes)
    assert not any("inferred" in n for n in v.notes)
    # shareProcessNamespace in the spec, but the runtime set up pid per container (+ TARGET): flagged.
    pid = v.sharing["pid"]
    assert (pid.declared, pid.expected, pid.ok) == ("shared", "mixed", False)
    assert v.sharing["net"].ok and v.sharing["mnt"].declared is None and v.sharing["mnt"].ok


def test_compare_notes_a_target_the_runtime_did_not_join():
    view = _view()
    view = view._replace(members=[m._replace(target_id="c-side") if m.name == "dbg" else m for m in view.members])
    v = compare(view, spec_of(POD))
    assert any("targets 'web' in the spec, but the runtime joined it to another container" in n for n in v.notes)


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["pod", "x", "--context", "prod"], ["--context", "prod", "pod", "x"]),
        (["-n", "shop", "pod", "x", "--kubeconfig=/k"], ["--kubeconfig=/k", "pod", "-n", "shop", "x"]),
        (["pods", "-A", "--local"], ["--local", "pods", "-A"]),
        (["-o", "json", "pod", "x"], ["pod", "-o", "json", "x"]),
        (["pod", "--", "--context"], ["pod", "--", "--context"]),
        (["-nshop", "-ojson", "pod", "x"], ["pod", "-nshop", "-ojson", "x"]),
        (["-rtcp://h:1", "pods", "-cweb"], ["-rtcp://h:1", "pods", "-cweb"]),
    ],
)
def test_kubectl_style_argv(argv, want):
    assert normalize_argv(argv) == want


def test_deploy_prints_the_shipped_manifests():
    r = run_cli("deploy")
    assert r.returncode == 0, r.stderr
    printed = [o for o in yaml.safe_load_all(r.stdout) if o]
    files = [o for f in sorted((ROOT / "daemonset").glob("*.yaml")) if f.name != "kustomization.yaml"
             for o in yaml.safe_load_all(f.read_text()) if o]
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(printed, key=key) == sorted(files, key=key)
    assert printed[0]["kind"] == "Namespace"  # the kustomization's order: the namespace first
    r = run_cli("deploy", "--image", "registry.example/nsinspect:1.2")
    ds = next(o for o in yaml.safe_load_all(r.stdout) if o and o["kind"] == "DaemonSet")
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/nsinspect:1.2"
    assert_one_sentence_error(run_cli("deploy", "--image", "bad image"), 2)


def test_deploy_applies_server_side_and_reports_rbac(tmp_path):
    api = StubAPI(tls=True)  # kubectl (and nsinspect) send credentials only over TLS
    try:
        kc = api.kubeconfig(tmp_path / "kc")
        r = run_cli("--kubeconfig", str(kc), "deploy", "--apply")
        assert r.returncode == 0, r.stderr
        paths = [p for p, _ in api.applied]
        assert paths[0] == "/api/v1/namespaces/nsinspect-system"
        assert "/apis/apps/v1/namespaces/nsinspect-system/daemonsets/nsinspect-agent" in paths
        assert "/apis/networking.k8s.io/v1/namespaces/nsinspect-system/networkpolicies/nsinspect-agent-deny-all" in paths
        assert "/apis/rbac.authorization.k8s.io/v1/namespaces/nsinspect-system/roles/nsinspect-user" in paths
        assert "daemonset/nsinspect-agent applied" in r.stdout
        api.user("viewer", "bob", EVERYTHING - {("patch", "*", "*")})
        r = run_cli("--kubeconfig", str(api.kubeconfig(tmp_path / "bob", token="viewer")), "deploy", "--apply")
        assert_one_sentence_error(r, 5)
        assert "you may not patch namespaces" in r.stderr
    finally:
        api.close()


def test_krew_manifest_matches_its_archive_and_the_launcher_runs(tmp_path):
    man = tmp_path / "nsinspect.yaml"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "krew_release.py"), "--out", str(tmp_path), "--manifest", str(man)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = yaml.safe_load(man.read_text())
    assert (m["apiVersion"], m["kind"], m["metadata"]["name"]) == ("krew.googlecontainertools.github.com/v1alpha2", "Plugin", "nsinspect")
    from nsinspect import __version__

    assert m["spec"]["version"] == f"v{__version__}" and m["spec"]["shortDescription"]
    archive = next(tmp_path.glob("kubectl-nsinspect-*.tar.gz"))
    data = archive.read_bytes()
    for p in m["spec"]["platforms"]:
        assert p["sha256"] == hashlib.sha256(data).hexdigest() and p["uri"].endswith(archive.name)
        assert p["bin"] == "kubectl-nsinspect" and set(p["selector"]["matchLabels"]) == {"os", "arch"}
    # Reproducible: the same bytes twice (krew checks the sha256).
    subprocess.run([sys.executable, str(ROOT / "scripts" / "krew_release.py"), "--out", str(tmp_path), "--manifest", str(man)], check=True,
                   capture_output=True)
    assert archive.read_bytes() == data
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(tmp_path / "x")
    launcher = tmp_path / "x" / "kubectl-nsinspect"
    r = subprocess.run([str(launcher), "--help"], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "NSINSPECT_PYTHON": sys.executable})
    assert r.returncode == 0 and "Usage: kubectl nsinspect" in r.stdout, r.stderr
    gone = {"PATH": "/nonexistent", "NSINSPECT_PYTHON": "/nonexistent/python3"}
    r = subprocess.run([str(launcher), "--help"], capture_output=True, text=True, env=gone)
    assert r.returncode == 4 and "pip install nsinspect" in r.stderr


def test_cluster_json_contract_keeps_the_local_keys():
    from nsinspect.render.data import pod

    d = pod(compare(_view(), spec_of(POD)))
    assert {"pod", "members", "sharing"} <= set(d)
    assert set(d["sharing"]["net"]) >= {"actual", "expected", "ok", "declared"}
    json.dumps(d)


def test_local_mode_never_imports_the_kubernetes_client(tmp_path):
    """The client costs ~350 ms to import: only cluster mode pays it."""
    import os

    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('IMPORTED' if 'kubernetes' in sys.modules else 'CLEAN', file=sys.stderr))\n"
            "from nsinspect.cli import main\n"
            "main(sys.argv[1:])\n")
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env["HOME"] = str(tmp_path)
    for args in (["node", "-t", "uts"], ["pods"], ["pod", "x", "-r", "unix:///nonexistent.sock"], ["--help"]):
        r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
        assert r.stderr.strip().endswith("CLEAN"), (args, r.stderr)
    kc = tmp_path / "kc"
    kc.write_text("{}")
    env["KUBECONFIG"] = str(kc)  # a configuration is found: cluster mode imports it (and says what is wrong)
    r = subprocess.run([sys.executable, "-c", code, "pod", "x"], capture_output=True, text=True, env=env)
    assert r.stderr.strip().endswith("IMPORTED") and r.returncode == 2, r.stderr


def test_big_lists_are_read_in_pages(tmp_path):
    from kube_stub import pod_object

    from nsinspect.cluster.api import LIST_PAGE, Kube

    api = StubAPI(tls=True)
    try:
        n = 2 * LIST_PAGE + 7
        for i in range(n):
            api.add_pod(pod_object(f"p{i:04d}", f"ns{i % 3}", "n1", [{"name": "c"}]))
        kube = Kube(str(api.kubeconfig(tmp_path / "kc")))
        pods = kube.list_pods(None)
        assert len(pods) == n and len({p["metadata"]["uid"] for p in pods}) == n
        assert api.pages == 3
        assert len(kube.list_pods("ns1")) == len([i for i in range(n) if i % 3 == 1])
        kube.close()
    finally:
        api.close()


@pytest.mark.parametrize(
    ("server", "env", "want"),
    [
        ("https://10.1.2.3:6443", {"HTTPS_PROXY": "http://px:3128"}, "http://px:3128"),
        ("https://10.1.2.3:6443", {"https_proxy": "http://px:3128", "no_proxy": "10.0.0.0/8"}, None),
        ("https://api.corp.example", {"HTTPS_PROXY": "http://px", "NO_PROXY": ".corp.example"}, None),
        ("https://corp.example", {"HTTPS_PROXY": "http://px", "NO_PROXY": "corp.example"}, None),
        ("https://api.x:6443", {"HTTPS_PROXY": "http://px", "NO_PROXY": "api.x:6443"}, None),
        ("https://api.x:443", {"HTTPS_PROXY": "http://px", "NO_PROXY": "api.x:6443"}, "http://px"),
        ("https://notcorp.example", {"HTTPS_PROXY": "http://px", "NO_PROXY": "corp.example"}, "http://px"),
        ("https://h", {"HTTPS_PROXY": "http://px", "NO_PROXY": "*"}, None),
        ("http://h", {"HTTPS_PROXY": "http://px"}, None),  # by the server's scheme, as Go's ProxyFromEnvironment
        ("http://h", {"HTTP_PROXY": "http://px"}, "http://px"),
        ("https://127.0.0.1:6443", {"HTTPS_PROXY": "http://px"}, None),  # loopback: never, as in Go
        ("https://localhost:6443", {"HTTPS_PROXY": "http://px"}, None),
        ("https://[::1]:6443", {"HTTPS_PROXY": "http://px"}, None),
    ],
)
def test_proxy_from_the_environment(server, env, want):
    from nsinspect.cluster.api import proxy_for

    assert proxy_for(server, None, env) == want
    assert proxy_for(server, "http://from-kubeconfig", env) == "http://from-kubeconfig"  # regardless of NO_PROXY


def test_a_socks_proxy_without_its_packages_is_one_sentence(monkeypatch):
    import importlib.util

    from nsinspect.cluster import api
    from nsinspect.errors import InvalidArgument

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("socks", "python_socks") else real(name, *a))
    with pytest.raises(InvalidArgument, match=r"socks5://h:1080 needs PySocks and python-socks: pip install PySocks python-socks"):
        api._require_socks("socks5://me:pw@h:1080")


def test_proxy_errors_never_show_its_credentials():
    from nsinspect.cluster.api import Kube

    k = Kube.__new__(Kube)  # only the error wording is under test here
    k.proxy = "http://me:s3cr%3At@px:3128"
    e = k._unreachable("cannot reach X", "ProxyError('http://me:s3cr%3At@px:3128': refused) for me:s3cr%3At", "the context")
    assert "s3cr" not in str(e) and "via the proxy http://px:3128 (ProxyError('http://px:3128': refused)" in str(e)
    k.proxy = None
    assert str(k._unreachable("cannot reach X", "refused", "the context")) == "cannot reach X (refused); check the context and your network"


def test_key_material_from_the_kubeconfig_stays_private(tmp_path):
    """client-certificate-data and friends become files the TLS library can read: owner-only, in a
    directory of our own that is gone when the process ends (the client's loader left them in /tmp)."""
    import base64
    import os
    import stat

    from nsinspect.cluster.api import Kube

    pem = b"-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n"
    kc = tmp_path / "kc"
    kc.write_text(json.dumps({
        "current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1", "certificate-authority-data": base64.b64encode(pem).decode()}}],
        "users": [{"name": "u", "user": {"client-certificate-data": base64.b64encode(pem).decode(),
                                         "client-key-data": base64.b64encode(b"key").decode()}}],
    }))
    kube = Kube(str(kc))
    for path in (kube.config.ssl_ca_cert, kube.config.cert_file, kube.config.key_file):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert open(kube.config.key_file, "rb").read() == b"key"
    code = f"from nsinspect.cluster.api import Kube; print(Kube({str(kc)!r}).config.key_file)"
    left = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout.strip()
    assert left and not os.path.exists(os.path.dirname(left))
