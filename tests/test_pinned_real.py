"""A sandbox whose process is gone still has the namespaces its runtime pinned by path (containerd's
/var/run/netns/cni-*): read by stat of that path, compared with the kernel's links of the app container."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from helpers import run_cli

from nsinspect.agent import convert
from nsinspect.agent.v1 import agent_pb2 as pb
from nsinspect.node.engine import LocalEngine

pytestmark = pytest.mark.runtime


def _ino(pid, t):
    return int(os.readlink(f"/proc/{pid}/ns/{t}").split("[")[1].rstrip("]"))


@pytest.fixture
def short_tmp():
    """A directory with a short path: a unix socket's path under it has at most 107 characters."""
    d = Path(tempfile.mkdtemp(prefix="nsi", dir="/tmp"))
    yield d
    shutil.rmtree(d)  # unlinks the symlinks in it, never follows them


def test_sandbox_without_process_keeps_pinned_net(ctrd, orphaned, short_tmp):
    pod, app_pid, path = orphaned
    r = run_cli("-r", ctrd.endpoint, "pod", "pinned-demo", "-n", "lab", "-o", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    sandbox, app = data["members"][0], next(m for m in data["members"] if m["name"] == "app")
    assert sandbox["role"] == "sandbox" and sandbox["pid"] is None and sandbox["state"] == "notready"
    # Three sources agree: the pinned path, the app's link, and what nsinspect reports for the sandbox.
    assert sandbox["pinned"] == {"net": path}
    assert sandbox["namespaces"] == {"net": os.stat(path).st_ino} == {"net": _ino(app_pid, "net")}
    assert app["pinned"] == {} and app["namespaces"]["net"] == _ino(app_pid, "net")
    assert data["sharing"]["net"]["actual"] == "shared" and data["sharing"]["net"]["ok"]
    assert any("no process" in n and path in n for n in data["notes"])

    table = run_cli("-r", ctrd.endpoint, "pod", "pinned-demo", "-n", "lab")
    assert table.returncode == 0 and "has no process" in table.stdout and str(os.stat(path).st_ino) in table.stdout, table.stderr

    check = run_cli("-r", ctrd.endpoint, "check", "pinned-demo", "-n", "lab", "--expect", "net=shared", "-o", "json")
    assert check.returncode == 0, check.stdout + check.stderr
    (result,) = json.loads(check.stdout)["results"]
    assert {(e["role"], e["ns"]) for e in result["evidence"]} == {("sandbox", _ino(app_pid, "net")), ("app", _ino(app_pid, "net"))}

    # The agent's wire carries it.
    engine = LocalEngine(runtime_endpoint=ctrd.endpoint, parallel=False)
    try:
        view = engine.pod("pinned-demo", "lab")
    finally:
        engine.close()
    assert dict(view.members[0].pinned) == {"net": path}
    assert convert.from_pod(pb.PodView.FromString(convert.to_pod(view).SerializeToString())) == view

    # Under a host root, the node's /var/run/netns is found as <root>/run/netns (the node's /var/run is a
    # symlink to /run); an unmounted pin (a plain file, not nsfs) holds nothing; a pin absent from the
    # host root (a DaemonSet mounts only some of the node's directories: CRI-O pins under /run/ipcns and
    # /run/utsns too) is found through the node's own root, /proc/1/root (here kthreadd's: PID 1's is hidden).
    for root, kind in ((short_tmp / "h", "nsfs"), (short_tmp / "s", "stale"), (short_tmp / "e", "absent")):
        root.mkdir()
        (root / "tmp").symlink_to("/tmp")  # the test containerd's socket
        if kind == "nsfs":
            (root / "run").symlink_to("/run")
        elif kind == "stale":
            stale = root / "run" / path.removeprefix("/var/run/")
            stale.parent.mkdir(parents=True)
            stale.touch()
        r = run_cli("-r", ctrd.endpoint, "--host-root", str(root), "pod", "pinned-demo", "-n", "lab", "-o", "json")
        assert r.returncode == 0, r.stderr
        sandbox = json.loads(r.stdout)["members"][0]
        if kind == "stale":
            assert sandbox["pinned"] == {} and sandbox["namespaces"] == {}
        else:
            assert sandbox["pinned"] == {"net": path} and sandbox["namespaces"] == {"net": _ino(app_pid, "net")}, kind
