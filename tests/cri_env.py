"""A real containerd for tests and benchmarks, started in a private directory.

containerd + runc + CNI plugins from Debian; an OCI image built from busybox-static and
imported with ctr; pods created over CRI the way kubelet does (kubelet's labels, sandbox
config echoed into CreateContainer, NamespaceOption on sandbox and containers).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

IMAGE = "docker.io/nsinspect/busybox:test"
APPLETS = ("sh", "sleep", "true", "cat", "ls", "ps", "hostname", "id", "readlink", "unshare")
KUBE = "io.kubernetes"
USERNS_LENGTH = 65536  # kubelet's ids per pod (userNsUnitLength, the default idsPerPod)
USERNS_HOST_ID = 65536  # the first range kubelet gives out (ids below 65536 are never a pod's)


def _blob(layout: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return f"sha256:{digest}", len(data)


def build_image_tar(dest: Path) -> Path:
    """An OCI image layout tarball: /bin/busybox and its applet links; the pause process is `sleep`."""
    layout = dest / "layout"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for d in ("bin", "proc", "sys", "dev", "etc", "tmp"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(ti)
        busybox = Path(shutil.which("busybox") or "/bin/busybox").read_bytes()
        ti = tarfile.TarInfo("bin/busybox")
        ti.size, ti.mode = len(busybox), 0o755
        tar.addfile(ti, io.BytesIO(busybox))
        for a in APPLETS:
            ti = tarfile.TarInfo(f"bin/{a}")
            ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(ti)
    layer_bytes = layer.getvalue()
    layer_digest, layer_size = _blob(layout, layer_bytes)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/bin/sleep"], "Cmd": ["2147483647"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }
    cfg_digest, cfg_size = _blob(layout, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": cfg_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    }
    man_digest, man_size = _blob(layout, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": man_digest,
                "size": man_size,
                "annotations": {"io.containerd.image.name": IMAGE, "org.opencontainers.image.ref.name": "test"},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    out = dest / "busybox-oci.tar"
    with tarfile.open(out, "w") as tar:
        for p in sorted(layout.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(layout)), recursive=False)
    return out


# containerd 1.x reads a version-2 configuration; 2.x moved the CRI plugin's options (version 3).
CONFIG_V2 = """version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{image}"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
"""

CONFIG_V3 = """version = 3
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{image}"
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{d}/cni"
"""

# A cgroup v2 node on this cgroup v1 (hybrid) machine: containerd, its shims and runc in a mount
# namespace of their own with the unified hierarchy at /sys/fs/cgroup (docs/cgroup.md).  That hierarchy
# has no cpu/memory controller here (they are bound to v1), so the runc below drops the resources from
# each bundle's spec before it creates the container: the sandbox's cpu.weight would fail otherwise.
_CGROUP2 = 'mount -t cgroup2 none /sys/fs/cgroup && exec "$@"'

RUNC_WITHOUT_RESOURCES = """#!{python}
import json, os, sys
args = sys.argv[1:]
for flag in ("--bundle", "-b"):
    if ("create" in args or "run" in args) and flag in args:
        path = os.path.join(args[args.index(flag) + 1], "config.json")
        with open(path) as f:
            spec = json.load(f)
        res = spec.get("linux", {{}}).get("resources")
        if res:
            spec["linux"]["resources"] = {{k: v for k, v in res.items() if k == "devices"}}
            with open(path, "w") as f:
                json.dump(spec, f)
os.execv({runc!r}, [{runc!r}, *args])
"""

CNI = {
    "cniVersion": "0.4.0",
    "name": "nsinspect-test",
    "plugins": [
        {
            "type": "bridge",
            "bridge": "nsitest0",
            "isGateway": True,
            "ipMasq": False,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.213.0.0/16"}]], "dataDir": "{d}/ipam"},
        },
        {"type": "loopback"},
    ],
}


def require_runtime(rid: str | None = None):
    """The containerd build ``rid`` (fetched on first use), or a skip -- never a skip under CI."""
    import pytest

    try:
        return runtime(rid)
    except (RuntimeError, ValueError, OSError, subprocess.CalledProcessError) as e:
        if os.environ.get("CI"):
            pytest.fail(f"containerd {rid} is not available ({e}); CI must run the runtime tests")
        pytest.skip(f"containerd {rid} is not available: {e}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agent:
    """``nsinspect agent`` in a subprocess, as the DaemonSet runs it; ``address`` once it serves."""

    def __init__(self, endpoint: str | None, listen: str | None = None, *extra: str, global_args: tuple[str, ...] = (),
                 node: str | None = None, wait: bool = True, prefix: tuple[str, ...] = ()):
        self.address = listen or f"127.0.0.1:{free_port()}"
        self.log = tempfile.NamedTemporaryFile(prefix="nsinspect-agent-", suffix=".log", delete=False)
        runtime = ("-r", endpoint) if endpoint else ()
        self.proc = subprocess.Popen(  # prefix: a command that runs it, such as Containerd.in_mount_ns()
            [*prefix, sys.executable, "-m", "nsinspect", *runtime, *global_args, "agent", "--listen", self.address, *extra],
            stdout=self.log, stderr=self.log, cwd=ROOT, env=dict(os.environ, **({"NODE_NAME": node} if node else {})),
        )
        if wait:
            self.wait_healthy()

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + 60
        while not self.healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the agent did not come up: {self.logs()[-2000:]}")
            time.sleep(0.1)

    def healthy(self) -> bool:
        from nsinspect.agent.server import probe

        return probe(self.address)

    def logs(self) -> str:
        return Path(self.log.name).read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def runtime(rid: str | None = None):
    """The containerd build ``rid`` (scripts/runtimes.py: 1.6, 1.7, 2.x; default $NSINSPECT_RUNTIME or 1.6),
    fetched from Debian's archive on first use."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import runtimes
    finally:
        sys.path.pop(0)
    return runtimes.ensure(rid or os.environ.get("NSINSPECT_RUNTIME") or "1.6")


NETNS_DIR = "/run/netns"  # where containerd pins the network namespaces of sandboxes (its default)


def _propagation(path: str) -> tuple[str, set[str]]:
    """The mount point under which ``path`` lies and its propagation tags (``shared:N``, ``master:N``)."""
    best, tags = "/", set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            target = fields[4].replace("\\040", " ")
            optional = fields[6:fields.index("-")]
            if (path == target or path.startswith(target.rstrip("/") + "/")) and len(target) >= len(best):
                best, tags = target, {t.split(":")[0] for t in optional}
    return best, tags


def shared_netns_dir() -> None:
    """Make the node's /run/netns a shared mount, as iproute2 (``ip netns add``) and a systemd node (whose / is
    shared) have it. The DaemonSet mounts it with ``mountPropagation: HostToContainer``, which containerd refuses
    on a private mount ("is not a shared or slave mount"); this machine's / is private. Done before containerd
    pins anything there, and recursively, so that pins already there stay visible; left in place, as ip leaves it."""
    os.makedirs(NETNS_DIR, exist_ok=True)
    target, tags = _propagation(NETNS_DIR)
    if "shared" in tags:  # a slave only would not pass the pins made here on to the agent's copy
        return
    if target != NETNS_DIR:
        subprocess.run(["mount", "--rbind", NETNS_DIR, NETNS_DIR], check=True)
    subprocess.run(["mount", "--make-rshared", NETNS_DIR], check=True)


@dataclass
class Containerd:
    """A private containerd: ``start()``, use ``endpoint``, ``stop()``."""

    dir: Path
    runtime: object = None  # scripts/runtimes.Runtime
    proc: subprocess.Popen | None = None
    log: Path | None = None
    cgroup2: bool = False  # in a private mount namespace with cgroup2 at /sys/fs/cgroup

    @property
    def socket(self) -> str:
        return str(self.dir / "containerd.sock")

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    @property
    def version(self) -> str:
        return self.runtime.version

    def ctr(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([self.runtime.tool("ctr"), "-a", self.socket, *args], **kw)

    @classmethod
    def create(cls, rid: str | None = None, cgroup2: bool = False) -> Containerd:
        """Start one; ``cgroup2``: on a unified cgroup hierarchy of its own (see ``_CGROUP2``)."""
        rt = runtime(rid)
        d = Path(tempfile.mkdtemp(prefix="nsinspect-ctrd-"))
        # mkdtemp's 0700 would stop a user-namespaced pod's root (uid 65536 on the node) on its way to its
        # rootfs (runc: "remount-private ... permission denied"); containerd's own dirs are 0711 likewise.
        d.chmod(0o711)
        (d / "cni").mkdir()
        config = CONFIG_V3 if rt.major >= 2 else CONFIG_V2
        runc = rt.runc
        if cgroup2:
            runc = str(d / "runc")
            Path(runc).write_text(RUNC_WITHOUT_RESOURCES.format(python=sys.executable, runc=rt.runc))
            os.chmod(runc, 0o755)
        (d / "config.toml").write_text(config.format(d=d, image=IMAGE, runc=runc))
        cni = json.loads(json.dumps(CNI).replace("{d}", str(d)))
        # Several suites on one machine (worktrees side by side) each take their own bridge and subnet.
        net = int(os.environ.get("NSINSPECT_TEST_NET", "0"))
        if net:
            cni["plugins"][0]["bridge"] = f"nsitest{net}"
            cni["plugins"][0]["ipam"]["ranges"] = [[{"subnet": f"10.{213 + net}.0.0/16"}]]
        (d / "cni" / "10-nsinspect-test.conflist").write_text(json.dumps(cni))
        shared_netns_dir()
        env = cls(d, rt, cgroup2=cgroup2)
        env.start()
        env.import_image()
        return env

    def in_mount_ns(self) -> tuple[str, ...]:
        """A command prefix that runs in containerd's mount namespace (its /sys/fs/cgroup), from the
        checkout's root (entering a mount namespace moves the working directory to its /)."""
        if not self.cgroup2 or self.proc is None:
            return ()
        return ("nsenter", "-m", "-t", str(self.proc.pid), f"--wd={ROOT}")

    def start(self, timeout: float = 30) -> None:
        self.log = self.dir / "containerd.log"
        with open(self.log, "ab") as log:
            cmd = [self.runtime.tool("containerd"), "--config", str(self.dir / "config.toml")]
            if self.cgroup2:
                cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", _CGROUP2, "containerd", *cmd]
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env=self.runtime.env(),  # its own shim and runc first
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited: {self.log.read_text()[-2000:]}")
            if os.path.exists(self.socket):
                r = self.ctr("version", capture_output=True)
                if r.returncode == 0 and self._cri_ready():
                    return
            time.sleep(0.1)
        raise RuntimeError(f"containerd did not come up: {self.log.read_text()[-2000:]}")

    def _cri_ready(self) -> bool:
        from nsinspect.cri.client import RuntimeClient

        try:
            RuntimeClient.connect(self.endpoint, timeout=2).close()
            return True
        except Exception:
            return False

    def import_image(self) -> None:
        tar = build_image_tar(self.dir)
        self.ctr("-n", "k8s.io", "images", "import", "--all-platforms", str(tar), check=True, capture_output=True)

    def stop(self) -> None:
        """Stop the daemon only (shims and pods stay up, as in a real containerd restart)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def destroy(self) -> None:
        """Remove every pod, then stop the daemon, kill any shim left, and delete the directory."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                from nsinspect.cri.client import RuntimeClient

                c = RuntimeClient.connect(self.endpoint)
                for sb in c.list_sandboxes():
                    remove_pod(c, sb.id)
                c.close()
            except Exception:
                pass
        self.stop()
        # Shims of this containerd carry its state dir in their command line.
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    cmd = Path(f"/proc/{name}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"containerd-shim" in cmd and str(self.dir).encode() in cmd:
                    try:
                        os.kill(int(name), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        subprocess.run(["umount", "-R", "-l", str(self.dir)], capture_output=True)
        for mnt in sorted(_mounts_under(self.dir), reverse=True):
            subprocess.run(["umount", "-l", mnt], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def _mounts_under(d: Path) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            if mp.startswith(str(d)):
                out.append(mp)
    return out


# -- pods, the way kubelet makes them -------------------------------------------------------------
@dataclass
class ContainerSpec:
    name: str
    command: list[str] = field(default_factory=lambda: ["/bin/sleep", "3600"])
    target: str | None = None  # ephemeral: name of the container whose pid namespace it joins
    wait_exit: bool = False  # an init container: wait for it to exit before the next
    privileged: bool = False  # securityContext.privileged (the pod's sandbox is made privileged too)
    run_as_user: int | None = None  # securityContext.runAsUser (kubelet sends it, and runAsGroup, as Int64Value)
    # Volumes as kubelet sends them: (host path, container path, read-only), each a bind mount in the container.
    mounts: list[tuple[str, str, bool]] = field(default_factory=list)


@dataclass
class Pod:
    name: str
    namespace: str
    uid: str
    sandbox_id: str
    containers: dict[str, str]  # name -> container id
    config: object = None


def run_pod(
    client,
    name: str,
    namespace: str = "lab",
    containers: list[ContainerSpec] | None = None,
    host_network: bool = False,
    host_pid: bool = False,
    host_ipc: bool = False,
    share_pid: bool = False,
    init: list[ContainerSpec] | None = None,
    ephemeral: list[ContainerSpec] | None = None,
    userns_host_id: int | None = None,
) -> Pod:
    """Run a pod as kubelet does.  ``userns_host_id`` makes it a ``hostUsers: false`` pod: kubelet's
    userns manager sends mode POD with one uid and one gid mapping, container id 0 -> that host id
    (a multiple of 65536), 65536 long, to the sandbox and to every container alike."""
    from nsinspect.cri.v1 import api_pb2 as pb

    uid = str(uuid.uuid4())
    stub = client.stub
    opts = pb.NamespaceOption(
        network=pb.NODE if host_network else pb.POD,
        pid=pb.NODE if host_pid else (pb.POD if share_pid else pb.CONTAINER),
        ipc=pb.NODE if host_ipc else pb.POD,
    )
    if userns_host_id is not None:
        ids = [pb.IDMapping(host_id=userns_host_id, container_id=0, length=USERNS_LENGTH)]
        opts.userns_options.CopyFrom(pb.UserNamespace(mode=pb.POD, uids=ids, gids=ids))
    labels = {f"{KUBE}.pod.name": name, f"{KUBE}.pod.namespace": namespace, f"{KUBE}.pod.uid": uid}
    sandbox_config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=0),
        # runc refuses to set a hostname without a private UTS namespace: kubelet sends none for hostNetwork.
        hostname="" if host_network else name,
        log_directory=f"/tmp/nsinspect-test-logs/{namespace}_{name}_{uid}",
        labels=labels,
        annotations={"kubernetes.io/config.source": "api"},
        linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=opts, privileged=any(c.privileged for c in [*(containers or []), *(init or [])]))),
    )
    os.makedirs(sandbox_config.log_directory, exist_ok=True)
    sandbox_id = stub.RunPodSandbox(pb.RunPodSandboxRequest(config=sandbox_config), timeout=60).pod_sandbox_id
    pod = Pod(name, namespace, uid, sandbox_id, {}, sandbox_config)
    for spec in init or []:
        spec.wait_exit = True
        add_container(client, pod, spec)
    for spec in containers or [ContainerSpec(name)]:
        add_container(client, pod, spec)
    for spec in ephemeral or []:
        add_container(client, pod, spec)
    return pod


def add_container(client, pod: Pod, spec: ContainerSpec, start: bool = True) -> str:
    """Create and start one container in a running pod, as kubelet does (an ephemeral one when
    ``spec.target`` names the container whose pid namespace it joins); ``start=False``: created only."""
    from nsinspect.cri.v1 import api_pb2 as pb

    sandbox_config = pod.config
    opts = pb.NamespaceOption()
    opts.CopyFrom(sandbox_config.linux.security_context.namespace_options)
    if spec.target:
        opts.pid = pb.TARGET
        opts.target_id = pod.containers[spec.target]
    config = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=spec.name, attempt=0),
        image=pb.ImageSpec(image=IMAGE),
        command=spec.command,
        envs=[pb.KeyValue(key="SECRET_TOKEN", value=b"do-not-leak-" + spec.name.encode())],
        labels=dict(sandbox_config.labels, **{f"{KUBE}.container.name": spec.name}),
        log_path=f"{spec.name}/0.log",
        linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(namespace_options=opts, privileged=spec.privileged)),
        mounts=[pb.Mount(host_path=h, container_path=c, readonly=ro) for h, c, ro in spec.mounts],
    )
    if spec.run_as_user is not None:
        config.linux.security_context.run_as_user.value = spec.run_as_user
        config.linux.security_context.run_as_group.value = spec.run_as_user
    stub = client.stub
    cid = stub.CreateContainer(
        pb.CreateContainerRequest(pod_sandbox_id=pod.sandbox_id, config=config, sandbox_config=sandbox_config), timeout=60
    ).container_id
    if start:
        stub.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=60)
    pod.containers[spec.name] = cid
    if spec.wait_exit:
        wait_exited(client, cid)
    return cid


def wait_exited(client, cid: str, timeout: float = 30) -> None:
    from nsinspect.cri.v1 import api_pb2 as pb

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = client.stub.ContainerStatus(pb.ContainerStatusRequest(container_id=cid), timeout=10).status
        if st.state == pb.CONTAINER_EXITED:
            return
        time.sleep(0.05)
    raise AssertionError(f"container {cid} did not exit")


def remove_pod(client, sandbox_id: str) -> None:
    from nsinspect.cri.v1 import api_pb2 as pb

    stub = client.stub
    for c in client.list_containers(sandbox_id):
        try:
            stub.StopContainer(pb.StopContainerRequest(container_id=c.id, timeout=0), timeout=30)
            stub.RemoveContainer(pb.RemoveContainerRequest(container_id=c.id), timeout=30)
        except Exception:
            pass
    stub.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=60)
    stub.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=60)
