#!/usr/bin/env python3
"""Capture the verbose CRI info of each containerd build into tests/fixtures/cri (run as root).

    sudo python3 scripts/capture_cri_fixtures.py [ID...]     # default: every build of scripts/runtimes.py

Starts the build's private containerd (tests/cri_env.py), makes the course's "debugged" pod (an app
container and an ephemeral one targeting it), asks PodSandboxStatus / ContainerStatus verbosely, and
keeps only what nsinspect reads (pid, the CRI config's security context, the OCI spec's namespaces),
the list of every top-level key the build sent, and a planted secret in place of the real environment.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT), str(ROOT / "scripts")]

KEEP = ("pid", "sandboxID", "removing", "runtimeType", "netNamespaceClosed", "processStatus")
PLANTED_ENV = ["PATH=/bin", "SECRET_TOKEN=do-not-leak"]


def trim(info: dict) -> dict:
    out = {k: info[k] for k in KEEP if k in info}
    out["keys"] = sorted(info)
    cfg = info.get("config") or {}
    out["config"] = {"metadata": cfg.get("metadata"),
                     "linux": {"security_context": (cfg.get("linux") or {}).get("security_context")}}
    if "envs" in cfg:
        out["config"]["envs"] = [{"key": "SECRET_TOKEN", "value": "do-not-leak"}]
    namespaces = ((info.get("runtimeSpec") or {}).get("linux") or {}).get("namespaces")
    out["runtimeSpec"] = {"process": {"env": PLANTED_ENV}, "linux": {"namespaces": namespaces}}
    return out


def capture(rid: str) -> dict:
    from cri_env import Containerd, ContainerSpec, run_pod
    from google.protobuf.json_format import MessageToDict

    from nsinspect.cri.client import RuntimeClient
    from nsinspect.cri.v1 import api_pb2 as pb

    env = Containerd.create(rid)
    try:
        client = RuntimeClient.connect(env.endpoint)
        pod = run_pod(client, "debugged", containers=[ContainerSpec("web")],
                      ephemeral=[ContainerSpec("debugger", target="web")])
        st = client.stub.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod.sandbox_id, verbose=True))
        out = {"sandbox": trim(json.loads(st.info["info"])), "sandbox_status_linux": MessageToDict(st.status.linux)}
        for name, cid in pod.containers.items():
            cs = client.stub.ContainerStatus(pb.ContainerStatusRequest(container_id=cid, verbose=True))
            out[name] = trim(json.loads(cs.info["info"]))
        client.close()
        return out
    finally:
        env.destroy()


def main() -> int:
    import runtimes

    for rid in sys.argv[1:] or list(runtimes.SUITES):
        dest = ROOT / "tests" / "fixtures" / "cri" / f"containerd-{rid}.json"
        dest.write_text(json.dumps(capture(rid), indent=1, sort_keys=True) + "\n")
        print(dest.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
