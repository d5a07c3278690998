"""A pod spec sent over CRI as kubelet sends it: the tests run the agent's own DaemonSet this way.

What kubelet does for one pod, reduced to what a runtime sees (kubelet's kuberuntime_sandbox.go,
kuberuntime_container_linux.go, security_context.go and pkg/securitycontext/util.go):

- the sandbox: metadata, hostname (the pod's name unless hostNetwork), log directory
  /var/log/pods/NS_NAME_UID, a port mapping per container port, kubelet's labels, the pod's cgroup
  parent (cgroupfs driver: /kubepods/<qos>/pod<uid>), the sandbox resources, and a security context with
  the namespace options (hostNetwork/hostPID/hostIPC), the pod-level seccomp profile and privileged when a
  container is;
- each container: the image, ``command``/``args`` as written (an empty command keeps the image's
  entrypoint), env with ``fieldRef`` resolved (spec.nodeName), one Mount per volumeMount (hostPath: the
  host path, checked or created by its ``type``; emptyDir: a directory of the pod's, tmpfs for
  ``medium: Memory``), plus kubelet's own /etc/hosts and /dev/termination-log; resources as cgroup values
  (cpu shares from the request, quota from the limit, the memory limit, Burstable's oom_score_adj); the
  security context: capabilities as written, run_as_user/group, readonly_rootfs, no_new_privs from
  ``allowPrivilegeEscalation: false``, the default masked and read-only /proc paths, seccomp and AppArmor
  profiles (the container's, else the pod's);
- exec probes: ExecSync with the probe's command and timeout.

``host_paths`` maps a manifest hostPath to where the test keeps it (the test containerd's socket directory is
not /run/containerd): the substitution is the only liberty taken.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import selectors
import socket
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

KUBE = "io.kubernetes"

# pkg/securitycontext/util.go (kept in sync with moby's defaults there).
DEFAULT_MASKED_PATHS = ("/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                        "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap")
DEFAULT_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

_UNITS = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "k": 1000, "M": 1000**2, "G": 1000**3}


def quantity(q: str | int) -> float:
    """A Kubernetes quantity (``20m``, ``160Mi``, ``2``) as a number (cores or bytes)."""
    q = str(q)
    if q.endswith("m"):
        return int(q[:-1]) / 1000
    for suffix, mult in _UNITS.items():
        if q.endswith(suffix):
            return float(q[: -len(suffix)]) * mult
    return float(q)


def _memory_capacity() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


@dataclass
class Probe:
    command: list[str]
    timeout: int


@dataclass
class Translated:
    """A pod as kubelet sends it: the sandbox config, its containers' configs, their exec probes."""

    name: str
    namespace: str
    uid: str
    sandbox: object  # PodSandboxConfig
    containers: list = field(default_factory=list)  # ContainerConfig
    probes: dict[str, dict[str, Probe]] = field(default_factory=dict)  # container -> readiness/liveness
    sandbox_id: str = ""
    pod_dir: Path | None = None  # kubelet's /var/lib/kubelet/pods/<uid>
    tmpfs: list[str] = field(default_factory=list)  # emptyDir mounts to undo


def pod_template(manifest: Path, kind: str = "DaemonSet") -> dict:
    import yaml

    with open(manifest) as f:
        obj = next(o for o in yaml.safe_load_all(f) if o and o.get("kind") == kind)
    return obj


def translate(obj: dict, *, node: str, image: str | None, kubelet_dir: Path, host_paths: dict[str, str] | None = None) -> Translated:
    """The pod a DaemonSet ``obj`` makes on ``node``, as CRI requests (``image`` replaces its image)."""
    from nsinspect.cri.v1 import api_pb2 as pb

    host_paths = host_paths or {}
    tpl = obj["spec"]["template"]
    spec, meta = tpl["spec"], tpl.get("metadata", {})
    namespace = obj["metadata"]["namespace"]
    name = f"{obj['metadata']['name']}-{secrets.token_hex(3)[:5]}"  # the DaemonSet controller's generateName
    uid = str(uuid.uuid4())
    pod_dir = kubelet_dir / "pods" / uid
    out = Translated(name, namespace, uid, None, pod_dir=pod_dir)

    psc = spec.get("securityContext") or {}
    opts = pb.NamespaceOption(
        network=pb.NODE if spec.get("hostNetwork") else pb.POD,
        pid=pb.NODE if spec.get("hostPID") else (pb.POD if spec.get("shareProcessNamespace") else pb.CONTAINER),
        ipc=pb.NODE if spec.get("hostIPC") else pb.POD,
    )
    labels = {**meta.get("labels", {}), f"{KUBE}.pod.name": name, f"{KUBE}.pod.namespace": namespace, f"{KUBE}.pod.uid": uid}
    containers = spec["containers"]
    requests = [c.get("resources", {}).get("requests", {}) for c in containers]
    limits = [c.get("resources", {}).get("limits", {}) for c in containers]
    guaranteed = all(r == lim and lim for r, lim in zip(requests, limits, strict=True))
    qos = "guaranteed" if guaranteed else ("burstable" if any(requests) or any(limits) else "besteffort")
    cgroup_parent = f"/kubepods/pod{uid}" if qos == "guaranteed" else f"/kubepods/{qos}/pod{uid}"

    sandbox_sc = pb.LinuxSandboxSecurityContext(
        namespace_options=opts,
        privileged=any((c.get("securityContext") or {}).get("privileged") for c in containers),
    )
    if "runAsUser" in psc:
        sandbox_sc.run_as_user.value = psc["runAsUser"]
    _profile(sandbox_sc.seccomp, psc.get("seccompProfile"))
    sandbox = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=0),
        hostname="" if spec.get("hostNetwork") else name[:63],
        log_directory=f"/var/log/pods/{namespace}_{name}_{uid}",
        port_mappings=[pb.PortMapping(protocol=getattr(pb, p.get("protocol", "TCP")), container_port=p["containerPort"],
                                      host_port=p.get("hostPort", 0), host_ip=p.get("hostIP", ""))
                       for c in containers for p in c.get("ports", [])],
        labels=labels,
        annotations={**meta.get("annotations", {}), "kubernetes.io/config.source": "api", "kubernetes.io/config.seen": "now"},
        linux=pb.LinuxPodSandboxConfig(cgroup_parent=cgroup_parent, security_context=sandbox_sc),
    )
    sandbox.linux.resources.CopyFrom(_resources(
        {k: sum(quantity(r.get(k, 0)) for r in requests) for k in ("cpu", "memory")},
        {k: sum(quantity(lim.get(k, 0)) for lim in limits) for k in ("cpu", "memory")}, qos))
    out.sandbox = sandbox

    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    node_env = {"spec.nodeName": node, "metadata.name": name, "metadata.namespace": namespace, "metadata.uid": uid}
    for c in containers:
        csc = c.get("securityContext") or {}
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=c["name"], attempt=0),
            image=pb.ImageSpec(image=image or c["image"]),
            command=c.get("command", []),
            args=c.get("args", []),
            working_dir=c.get("workingDir", ""),
            envs=[pb.KeyValue(key=e["name"], value=(e["value"] if "value" in e else node_env[e["valueFrom"]["fieldRef"]["fieldPath"]]).encode())
                  for e in c.get("env", [])],
            labels={f"{KUBE}.container.name": c["name"], f"{KUBE}.pod.name": name, f"{KUBE}.pod.namespace": namespace,
                    f"{KUBE}.pod.uid": uid},
            annotations={f"{KUBE}.container.restartCount": "0",
                         f"{KUBE}.container.terminationMessagePath": c.get("terminationMessagePath", "/dev/termination-log"),
                         f"{KUBE}.pod.terminationGracePeriod": str(spec.get("terminationGracePeriodSeconds", 30))},
            log_path=f"{c['name']}/0.log",
        )
        for vm in c.get("volumeMounts", []):
            config.mounts.append(_mount(pb, vm, volumes[vm["name"]], pod_dir, host_paths, out))
        config.mounts.extend(_kubelet_mounts(pb, pod_dir, c["name"], spec))
        res = c.get("resources", {})
        config.linux.resources.CopyFrom(_resources({k: quantity(v) for k, v in res.get("requests", {}).items()},
                                                   {k: quantity(v) for k, v in res.get("limits", {}).items()}, qos))
        sc = config.linux.security_context
        sc.namespace_options.CopyFrom(opts)
        sc.privileged = bool(csc.get("privileged"))
        caps = csc.get("capabilities") or {}
        sc.capabilities.add_capabilities.extend(caps.get("add", []))
        sc.capabilities.drop_capabilities.extend(caps.get("drop", []))
        for key, fld in (("runAsUser", "run_as_user"), ("runAsGroup", "run_as_group")):
            value = csc.get(key, psc.get(key))
            if value is not None:
                getattr(sc, fld).value = value
        sc.readonly_rootfs = bool(csc.get("readOnlyRootFilesystem"))
        sc.no_new_privs = csc.get("allowPrivilegeEscalation") is False
        if not sc.privileged and csc.get("procMount") != "Unmasked":
            sc.masked_paths.extend(DEFAULT_MASKED_PATHS)
            sc.readonly_paths.extend(DEFAULT_READONLY_PATHS)
        _profile(sc.seccomp, csc.get("seccompProfile") or psc.get("seccompProfile"))
        apparmor = csc.get("appArmorProfile") or psc.get("appArmorProfile")
        if apparmor:
            _profile(sc.apparmor, apparmor)
            sc.apparmor_profile = {"Unconfined": "unconfined", "RuntimeDefault": "runtime/default"}.get(
                apparmor["type"], "localhost/" + apparmor.get("localhostProfile", ""))
        out.containers.append(config)
        out.probes[c["name"]] = {kind: Probe(c[kind]["exec"]["command"], c[kind].get("timeoutSeconds", 1))
                                 for kind in ("readinessProbe", "livenessProbe", "startupProbe") if "exec" in c.get(kind, {})}
    return out


def _profile(field_, profile: dict | None) -> None:
    from nsinspect.cri.v1 import api_pb2 as pb

    if not profile:  # kubelet sends Unconfined when neither the pod nor the container names one
        field_.profile_type = pb.SecurityProfile.Unconfined
        return
    field_.profile_type = getattr(pb.SecurityProfile, profile["type"])
    if profile["type"] == "Localhost":
        field_.localhost_ref = profile["localhostProfile"]


def _resources(requests: dict[str, float], limits: dict[str, float], qos: str):
    """kubelet's cgroup values: cpu shares from the request (min 2), quota from the limit over a 100 ms
    period, the memory limit, and oom_score_adj by QoS class (Burstable: by the memory request)."""
    from nsinspect.cri.v1 import api_pb2 as pb

    r = pb.LinuxContainerResources(cpu_shares=max(int(requests.get("cpu", 0) * 1024), 2))
    if limits.get("cpu"):
        r.cpu_period = 100000
        r.cpu_quota = int(limits["cpu"] * 100000)
    if limits.get("memory"):
        r.memory_limit_in_bytes = int(limits["memory"])
    if qos == "guaranteed":
        r.oom_score_adj = -997
    elif qos == "besteffort":
        r.oom_score_adj = 1000
    else:
        adj = 1000 - int(1000 * requests.get("memory", 0) / _memory_capacity())
        r.oom_score_adj = min(max(adj, 2), 999)
    return r


def _mount(pb, vm: dict, volume: dict, pod_dir: Path, host_paths: dict[str, str], out: Translated):
    prop = {"HostToContainer": pb.PROPAGATION_HOST_TO_CONTAINER, "Bidirectional": pb.PROPAGATION_BIDIRECTIONAL}.get(
        vm.get("mountPropagation", "None"), pb.PROPAGATION_PRIVATE)
    if "hostPath" in volume:
        path = volume["hostPath"]["path"]
        host = host_paths.get(path, path)
        kind = volume["hostPath"].get("type", "")
        if kind == "DirectoryOrCreate":
            os.makedirs(host, mode=0o755, exist_ok=True)
        elif kind == "Directory" and not os.path.isdir(host):
            raise AssertionError(f"hostPath type check failed: {host} is not a directory (kubelet would not start the pod)")
    elif "emptyDir" in volume:
        host = str(pod_dir / "volumes" / "kubernetes.io~empty-dir" / vm["name"])
        os.makedirs(host, mode=0o777, exist_ok=True)
        if volume["emptyDir"].get("medium") == "Memory":
            size = volume["emptyDir"].get("sizeLimit")
            opts = f"size={int(quantity(size))}" if size else ""
            subprocess.run(["mount", "-t", "tmpfs", *(["-o", opts] if opts else []), "tmpfs", host], check=True)
            out.tmpfs.append(host)
    else:
        raise AssertionError(f"volume kind not translated here: {sorted(volume)}")
    return pb.Mount(container_path=vm["mountPath"], host_path=host, readonly=bool(vm.get("readOnly")), propagation=prop)


def _kubelet_mounts(pb, pod_dir: Path, container: str, spec: dict) -> list:
    """kubelet's own: the pod's /etc/hosts (unless hostNetwork) and the container's termination log."""
    mounts = []
    if not spec.get("hostNetwork"):
        hosts = pod_dir / "etc-hosts"
        hosts.parent.mkdir(parents=True, exist_ok=True)
        hosts.write_text("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        mounts.append(pb.Mount(container_path="/etc/hosts", host_path=str(hosts)))
    log = pod_dir / "containers" / container / secrets.token_hex(4)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    mounts.append(pb.Mount(container_path="/dev/termination-log", host_path=str(log)))
    return mounts


def run(client, t: Translated) -> dict[str, str]:
    """RunPodSandbox, then CreateContainer + StartContainer for each container; name -> container id."""
    from nsinspect.cri.v1 import api_pb2 as pb

    os.makedirs(t.sandbox.log_directory, exist_ok=True)
    stub = client.stub
    t.sandbox_id = stub.RunPodSandbox(pb.RunPodSandboxRequest(config=t.sandbox), timeout=60).pod_sandbox_id
    ids = {}
    for config in t.containers:
        cid = stub.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=t.sandbox_id, config=config,
                                                             sandbox_config=t.sandbox), timeout=60).container_id
        stub.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=60)
        ids[config.metadata.name] = cid
    return ids


def probe(client, container_id: str, p: Probe):
    """An exec probe as kubelet runs it: ExecSync, the probe's timeout; success is exit code 0."""
    from nsinspect.cri.v1 import api_pb2 as pb

    return client.stub.ExecSync(pb.ExecSyncRequest(container_id=container_id, cmd=p.command, timeout=p.timeout),
                                timeout=p.timeout + 10)


def cleanup(t: Translated) -> None:
    """What kubelet removes with the pod: its emptyDirs and directory, its pod cgroup (cgroupfs driver)."""
    import shutil

    for m in t.tmpfs:
        subprocess.run(["umount", "-l", m], check=False)
    if t.pod_dir is not None:
        shutil.rmtree(t.pod_dir, ignore_errors=True)
    parent = t.sandbox.linux.cgroup_parent.strip("/")
    for ctl in Path("/sys/fs/cgroup").iterdir():
        d = ctl / parent
        if d.is_dir():
            for sub in sorted(d.glob("*/"), reverse=True):
                try:
                    sub.rmdir()
                except OSError:
                    pass
            try:
                d.rmdir()
            except OSError:
                pass
    shutil.rmtree(t.sandbox.log_directory, ignore_errors=True)


# -- port-forward, as the runtime does it -------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


class PortForward:
    """What ``kubectl port-forward`` reaches through the runtime: a connection to ``port`` on 127.0.0.1 inside
    the pod's network namespace (the runtime enters it and dials; here a thread per connection does, after
    setns(2) of that thread alone).  ``address`` is the host side."""

    def __init__(self, netns_path: str, port: int):
        self._ns = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        self.port = port
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._closed = False
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._start(self._accept)

    def _start(self, target, *args) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._start(self._pipe, conn)

    def _pipe(self, conn: socket.socket) -> None:
        if _libc.setns(self._ns, CLONE_NEWNET) != 0:
            conn.close()
            raise OSError(ctypes.get_errno(), "setns")
        try:
            up = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        except OSError:
            conn.close()
            return
        up.settimeout(None)
        with self._lock:
            self._open.update((conn, up))
        sel = selectors.DefaultSelector()
        sel.register(conn, selectors.EVENT_READ, up)
        sel.register(up, selectors.EVENT_READ, conn)
        try:
            while not self._closed:
                for key, _ in sel.select():
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            with self._lock:
                self._open.difference_update((conn, up))
            conn.close()
            up.close()

    def close(self) -> None:
        """Stop: no thread of it outlives this (tests count the threads of their process)."""
        self._closed = True
        for s in (self._listener, *list(self._open)):
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept() or select()
            except OSError:
                pass
        for t in self._threads:
            t.join(10)
        self._listener.close()
        os.close(self._ns)
