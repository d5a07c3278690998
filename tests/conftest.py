import sys
from pathlib import Path

import pytest

# helpers.py sits beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

from cri_env import Containerd, ContainerSpec, require_runtime_tools, run_pod  # noqa: E402
from helpers import require_root  # noqa: E402


@pytest.fixture(scope="session")
def ctrd():
    """A private containerd with the course's pods, shared by the pod and agent tests."""
    require_root()
    require_runtime_tools()
    env = Containerd.create()
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
    }
    env.client = client
    env.pods = pods
    yield env
    client.close()
    env.destroy()


