import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

# helpers.py sits beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

from cri_env import USERNS_HOST_ID, Containerd, ContainerSpec, remove_pod, require_runtime, run_pod  # noqa: E402
from helpers import require_root  # noqa: E402
from population import population as make_population  # noqa: E402

STRAYS_ADMIN = "unshare -u -i sleep 1000 & unshare -n sleep 1001 & exec sleep 1002"
STRAYS_ROOTLESS = "unshare -U -r -u sleep 1003 & exec sleep 1004"
NONROOT_STRAY = "unshare -U -r -u sleep 1007 & exec sleep 1008"  # as uid 1000: a user namespace needs no capability

# The real-runtime tests run once per containerd build (scripts/runtimes.py); select with
# --runtime ID (repeatable) or -m containerd_1_6 / containerd_1_7 / containerd_2.
RUNTIMES = {"1.6": "containerd_1_6", "1.7": "containerd_1_7", "2.x": "containerd_2"}


def pytest_addoption(parser):
    parser.addoption("--runtime", action="append", choices=list(RUNTIMES), default=None,
                     help="run the real-runtime tests against this containerd build only (repeatable; default: all)")


def pytest_configure(config):
    for rid, mark in RUNTIMES.items():
        config.addinivalue_line("markers", f"{mark}: a real-runtime test on containerd {rid} (scripts/runtimes.py)")


def pytest_generate_tests(metafunc):
    for fixture in ("ctrd", "ctrd_v2"):
        if fixture in metafunc.fixturenames:
            chosen = metafunc.config.getoption("runtime") or list(RUNTIMES)
            params = [pytest.param(rid, marks=getattr(pytest.mark, RUNTIMES[rid]), id=f"containerd-{rid}") for rid in chosen]
            metafunc.parametrize(fixture, params, indirect=True, scope="session")


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    """Per non-root user: a process in fresh net/uts/ipc/pid/mnt namespaces; a mount namespace only a non-root
    process is in, holding a bind mount of a net namespace nobody is in; a non-root process holding fds on
    namespaces nobody is in (tests/population.py)."""
    require_root()
    with make_population(tmp_path_factory.mktemp("pins")) as p:
        yield p


def _sandbox_info(client, sandbox_id):
    from nsinspect.cri.v1 import api_pb2 as cri

    st = client.stub.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True), timeout=10)
    return st.status.state, json.loads(st.info["info"])


@pytest.fixture
def orphaned(ctrd):
    """A pod of its own whose pause process was killed: (pod, app pid, pinned net path)."""
    pod = run_pod(ctrd.client, "pinned-demo", containers=[ContainerSpec("app")])
    try:
        _state, info = _sandbox_info(ctrd.client, pod.sandbox_id)
        path = next(ns["path"] for ns in info["runtimeSpec"]["linux"]["namespaces"] if ns["type"] == "network")
        from nsinspect.node.engine import LocalEngine

        app = LocalEngine(runtime_endpoint=ctrd.endpoint, parallel=False)
        try:
            app_pid = next(m.pid for m in app.pod("pinned-demo", "lab").members if m.name == "app")
        finally:
            app.close()
        os.kill(info["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while _sandbox_info(ctrd.client, pod.sandbox_id)[0] == 0:  # SANDBOX_READY until containerd sees the exit
            assert time.monotonic() < deadline, "containerd did not notice the sandbox's exit"
            time.sleep(0.1)
        yield pod, app_pid, path
    finally:
        remove_pod(ctrd.client, pod.sandbox_id)


@pytest.fixture(scope="session")
def ctrd(request):
    """A private containerd of one build with the course's pods, shared by the pod, agent and cluster tests."""
    require_root()
    require_runtime(request.param)
    env = Containerd.create(request.param)
    from nsinspect.cri.client import RuntimeClient

    client = RuntimeClient.connect(env.endpoint)
    pods = {
        "namespace-demo": run_pod(client, "namespace-demo", containers=[ContainerSpec("web"), ContainerSpec("sidecar")]),
        "shared-pid-demo": run_pod(client, "shared-pid-demo", containers=[ContainerSpec("app"), ContainerSpec("debug")], share_pid=True),
        "hostnet": run_pod(client, "hostnet", containers=[ContainerSpec("app")], host_network=True),
        "hostpid-ipc": run_pod(client, "hostpid-ipc", containers=[ContainerSpec("app")], host_pid=True, host_ipc=True),
        "with-init": run_pod(
            client, "with-init", containers=[ContainerSpec("app")],
            init=[ContainerSpec("setup", ["/bin/true"]), ContainerSpec("migrate", ["/bin/true"])],
        ),
        "debugged": run_pod(
            client, "debugged", containers=[ContainerSpec("web"), ContainerSpec("cache")],
            ephemeral=[ContainerSpec("debugger", target="web")],
        ),
        # hostUsers: false, as kubelet asks for it (containerd 1.6 drops the request: see test_userns_pod).
        "userns-demo": run_pod(client, "userns-demo", containers=[ContainerSpec("app"), ContainerSpec("sidecar")],
                               userns_host_id=USERNS_HOST_ID),
        # Stray processes (tests/test_strays_real.py): container processes that left some of its namespaces.
        "stray-demo": run_pod(client, "stray-demo", containers=[
            ContainerSpec("admin", ["/bin/sh", "-c", STRAYS_ADMIN], privileged=True),  # unshare -u/-i/-n needs CAP_SYS_ADMIN
            ContainerSpec("rootless", ["/bin/sh", "-c", STRAYS_ROOTLESS]),  # a user namespace first: no capability needed
            ContainerSpec("app", ["/bin/sh", "-c", "sleep 1005 & exec sleep 1006"]),  # a child in its namespaces: no stray
        ]),
        # Workloads of non-root users, the common case in clusters (restricted Pod Security makes it mandatory):
        # read with the DaemonSet's powers in tests/test_daemonset_powers_real.py.
        "nonroot-demo": run_pod(client, "nonroot-demo", containers=[
            ContainerSpec("web", run_as_user=1000), ContainerSpec("nobody", run_as_user=65534),
            ContainerSpec("high", run_as_user=123456),
            ContainerSpec("rootless", ["/bin/sh", "-c", NONROOT_STRAY], run_as_user=1000)]),
        "nonroot-shared-pid": run_pod(client, "nonroot-shared-pid", share_pid=True, containers=[
            ContainerSpec("app", run_as_user=1000), ContainerSpec("debug", run_as_user=65534)]),
    }
    env.client = client
    env.pods = pods
    yield env
    client.close()
    env.destroy()


@pytest.fixture(scope="session")
def ctrd_v2(request):
    """A private containerd of one build on a unified cgroup hierarchy (cri_env: cgroup2), with pods
    as the cgroup rules tell them apart: plain, hostNetwork + hostPID, and privileged beside unprivileged; and one
    whose container has stray processes (unshare)."""
    require_root()
    require_runtime(request.param)
    env = Containerd.create(request.param, cgroup2=True)
    from nsinspect.cri.client import RuntimeClient

    client = RuntimeClient.connect(env.endpoint)
    pods = {
        "plain": run_pod(client, "plain", containers=[ContainerSpec("web"), ContainerSpec("sidecar")]),
        "hostns": run_pod(client, "hostns", containers=[ContainerSpec("app")], host_network=True, host_pid=True),
        "privileged": run_pod(client, "privileged", containers=[ContainerSpec("admin", privileged=True), ContainerSpec("app")]),
        "stray": run_pod(client, "stray", containers=[ContainerSpec("admin", ["/bin/sh", "-c", STRAYS_ADMIN], privileged=True)]),
    }
    env.client = client
    env.pods = pods
    yield env
    client.close()
    env.destroy()
