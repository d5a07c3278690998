"""daemonset/: valid Kubernetes objects (strict schema), least privilege, and wired as the agent
expects -- the last checked by running the agent with the DaemonSet's own arguments and
environment against a node layout mounted like the pod's volumes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from cri_env import Agent
from helpers import require_root, run_cli, truth

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "daemonset"
AGENT_NS = "nsinspect-system"
K8S_VERSIONS = ("1.30", "1.33", "1.37")  # appArmorProfile is a field since 1.30


def docs() -> list[dict]:
    out = []
    for f in sorted(MANIFESTS.glob("*.yaml")):
        if f.name != "kustomization.yaml":
            out += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return out


def one(kind: str) -> dict:
    found = [d for d in docs() if d["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


def agent_container() -> dict:
    (c,) = one("DaemonSet")["spec"]["template"]["spec"]["containers"]
    return c


def test_every_manifest_is_valid_against_the_kubernetes_schema():
    import kubernetes_validate

    kinds = set()
    for d in docs():
        kinds.add(d["kind"])
        for v in K8S_VERSIONS:
            kubernetes_validate.validate(d, v, strict=True)  # raises on an unknown or mistyped field
    assert kinds == {"Namespace", "ServiceAccount", "DaemonSet", "NetworkPolicy", "Role", "RoleBinding"}
    listed = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(f.name for f in MANIFESTS.glob("*.yaml") if f.name != "kustomization.yaml")


def test_namespace_is_privileged_and_says_why():
    ns = one("Namespace")
    assert ns["metadata"]["name"] == AGENT_NS
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    text = (MANIFESTS / "namespace.yaml").read_text()
    assert "hostPath" in text and "SYS_PTRACE" in text  # the reasons are written down
    for d in docs():
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == AGENT_NS, d["kind"]


def test_pod_has_no_token_and_no_host_namespaces():
    sa = one("ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    spec = one("DaemonSet")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == sa["metadata"]["name"]
    assert spec["automountServiceAccountToken"] is False
    assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
    assert {"operator": "Exists"} in spec["tolerations"]  # every node
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"


def test_container_drops_all_and_adds_only_ptrace_with_a_reason():
    sc = agent_container()["securityContext"]
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["capabilities"]["add"] == ["SYS_PTRACE"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["privileged"] is False and sc["seccompProfile"]["type"] == "RuntimeDefault"
    text = (MANIFESTS / "daemonset.yaml").read_text()
    lines = text.splitlines()
    for cap in sc["capabilities"]["add"]:
        at = next(i for i, line in enumerate(lines) if re.match(rf"\s*- {cap}\b", line))
        assert lines[at - 1].strip().startswith("#"), f"{cap} has no comment saying why"


def test_host_mounts_are_read_only_and_match_the_agent_flags():
    c = agent_container()
    spec = one("DaemonSet")["spec"]["template"]["spec"]
    host = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    assert set(host.values()) == {"/proc", "/run/containerd", "/sys/fs/cgroup", "/run/netns"}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    for name, path in host.items():
        assert mounts[name]["readOnly"] is True, name
        assert mounts[name]["mountPath"] == "/host" + path, name
    # Sandboxes' namespaces pinned after the agent started (pods.pinned) must reach it.
    assert mounts["host-netns"]["mountPropagation"] == "HostToContainer"
    assert c["args"][:2] == ["--proc", "/host/proc"]
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


def test_listens_on_loopback_with_exec_health_probes_and_resources():
    c = agent_container()
    listen = c["args"][c["args"].index("--listen") + 1]
    assert listen.startswith("127.0.0.1:")
    for probe in ("readinessProbe", "livenessProbe"):
        cmd = c[probe]["exec"]["command"]
        assert cmd[:3] == ["nsinspect", "agent", "--probe"] and cmd[cmd.index("--listen") + 1] == listen
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind])


def test_network_policy_denies_all_traffic_to_the_agent():
    np = one("NetworkPolicy")["spec"]
    labels = one("DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in np["podSelector"]["matchLabels"].items())
    assert "Ingress" in np["policyTypes"] and not np.get("ingress")
    assert "Egress" in np["policyTypes"] and not np.get("egress")


def test_role_is_exactly_what_cluster_mode_needs():
    rules = one("Role")["rules"]
    granted = {(r, v) for rule in rules for r in rule["resources"] for v in rule["verbs"]}
    assert granted == {("pods", "get"), ("pods", "list"), ("pods/portforward", "create"), ("pods/portforward", "get")}
    assert one("RoleBinding")["roleRef"]["name"] == one("Role")["metadata"]["name"]


def test_dockerfile_builds_unprivileged_and_ships_no_compiler():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) == 2
    build, final = stages
    assert re.search(r"^USER (?!root|0\b)\S+", build, re.M)
    assert not re.search(r"apt-get|gcc|build-essential|\bmake\b", final)
    assert '"--proc", "/host/proc", "agent"' in final and 'ENTRYPOINT ["nsinspect"]' in final
    assert "--only-binary=:all:" in build  # dependencies come as wheels; only nsinspect is compiled


def test_the_default_image_is_what_the_release_workflow_publishes():
    """`nsinspect deploy` runs the DaemonSet's image; the release workflow pushes exactly that name, tagged with the
    package version, for amd64 and arm64, on a tag v<version>; --image replaces it (private registries)."""
    from nsinspect import __version__

    image = agent_container()["image"]
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    owner = re.search(r"homepage: https://github.com/([^/]+)/", (ROOT / "krew" / "nsinspect.yaml").read_text()).group(1)
    assert image == wf["env"]["IMAGE"].replace("${{ github.repository_owner }}", owner) + f":{__version__}"
    assert wf[True]["push"]["tags"] == ["v*"]  # (YAML 1.1 reads the key `on` as true)
    check = "\n".join(step.get("run", "") for step in wf["jobs"]["check"]["steps"])
    assert 'test "${GITHUB_REF_NAME}" = "v${version}"' in check and "daemonset/daemonset.yaml" in check
    push = "\n".join(step.get("run", "") for step in wf["jobs"]["image"]["steps"])
    assert "for arch in amd64 arm64" in push and '--platform "linux/${arch}"' in push
    assert 'buildah manifest push --all nsinspect-agent "docker://${IMAGE}:${{ needs.check.outputs.version }}"' in push
    r = run_cli("deploy")
    assert r.returncode == 0 and f"image: {image}\n" in r.stdout
    r = run_cli("deploy", "--image", "registry.example.com/mirror/nsinspect-agent:0.1.0")
    assert r.returncode == 0 and "image: registry.example.com/mirror/nsinspect-agent:0.1.0\n" in r.stdout and image not in r.stdout
    sys.path.insert(0, str(ROOT / "scripts"))
    import agent_image

    assert agent_image.default_tag() == image  # what the image recipe tags by default


def test_dockerfile_build_stage_copies_what_the_wheel_needs(tmp_path):
    """The files the build stage copies, and nothing else, make a wheel with the scan's C speed-up
    (no container engine here: the stage's COPY lines are replayed into a directory)."""
    if not shutil.which("gcc"):
        pytest.fail("gcc is needed to build the C speed-up (scripts/test.sh installs it)")
    build = re.split(r"^FROM ", (ROOT / "Dockerfile").read_text(), flags=re.M)[1]
    src = tmp_path / "src"
    src.mkdir()
    for line in re.findall(r"^COPY (.+)$", build, re.M):
        *names, _dest = [w for w in line.split() if not w.startswith("--")]
        for name in names:
            path = ROOT / name
            if path.is_dir():
                shutil.copytree(path, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
            else:
                shutil.copy2(path, src / name)
    out = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--wheel-dir", str(out), str(src)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("nsinspect-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("nsinspect/node/_scan.") and n.endswith(".so") for n in names), names
    assert "nsinspect/manifests/daemonset.yaml" in names


@pytest.fixture()
def node_layout(ctrd, tmp_path):
    """The pod's view of the node: /host/proc and /host/run/containerd, bind-mounted read-only."""
    require_root()
    host = tmp_path / "host"
    mounts = [(Path("/proc"), host / "proc"), (Path(ctrd.dir), host / "run" / "containerd")]
    done = []
    try:
        for src, dst in mounts:
            dst.mkdir(parents=True)
            subprocess.run(["mount", "--bind", str(src), str(dst)], check=True)
            done.append(dst)
            subprocess.run(["mount", "-o", "remount,bind,ro", str(dst)], check=True)
        yield host
    finally:
        for dst in reversed(done):
            subprocess.run(["umount", "-l", str(dst)], check=False)


def test_the_daemonsets_arguments_work_on_that_layout(ctrd, node_layout, monkeypatch):
    c = agent_container()
    args = [a.replace("/host", str(node_layout)) for a in c["args"]]
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    monkeypatch.setenv("CONTAINER_RUNTIME_ENDPOINT", env["CONTAINER_RUNTIME_ENDPOINT"])
    monkeypatch.setenv("NODE_NAME", "node-from-downward-api")
    i = args.index("agent")
    rest = args[i + 1:]
    j = rest.index("--listen")
    del rest[j:j + 2]  # the same loopback address, on a free port
    agent = Agent(None, None, *rest, global_args=tuple(args[:i]))
    try:
        r = run_cli("--agent", agent.address, "pod", "namespace-demo", "-n", "lab", "-o", "json")
        assert r.returncode == 0, (r.stderr, agent.logs())
        data = json.loads(r.stdout)
        assert data["pod"]["node"] == "node-from-downward-api"
        for m in data["members"]:
            assert m["namespaces"] == truth(m["pid"])
        assert os.path.ismount(node_layout / "proc")
    finally:
        assert agent.stop() == 0
