#!/usr/bin/env python3
"""Build the krew plugin archive and write its manifest (krew/nsinspect.yaml) with the archive's sha256.

nsinspect is a Python package (grpcio has compiled parts per platform), so the krew archive holds
a small launcher, `kubectl-nsinspect`, that runs the installed package (`python3 -m
nsinspect.kubectl`); the manifest's caveats say to `pip install nsinspect` first.
  python3 scripts/krew_release.py [--out dist] [--url-base https://github.com/OWNER/nsinspect/releases/download]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LAUNCHER = """#!/bin/sh
# kubectl-nsinspect: the kubectl plugin of nsinspect (https://pypi.org/project/nsinspect/).
PY="${NSINSPECT_PYTHON:-python3}"
if ! "$PY" -c 'import nsinspect.kubectl' 2>/dev/null; then
    echo "kubectl nsinspect: the nsinspect package is not installed for $PY; run: $PY -m pip install nsinspect" >&2
    exit 4
fi
exec "$PY" -m nsinspect.kubectl "$@"
"""

PLATFORMS = [("linux", "amd64"), ("linux", "arm64"), ("darwin", "amd64"), ("darwin", "arm64")]


def archive(version: str) -> bytes:
    """A reproducible tar.gz: fixed mtimes, owners and order."""
    import gzip

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in (("kubectl-nsinspect", LAUNCHER.encode(), 0o755),):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uname, info.gname = len(data), mode, 0, "root", "root"
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def manifest(version: str, url: str, sha256: str) -> str:
    platforms = "".join(
        f"""  - selector:
      matchLabels:
        os: {os_}
        arch: {arch}
    uri: {url}
    sha256: {sha256}
    bin: kubectl-nsinspect
    files:
    - from: kubectl-nsinspect
      to: .
"""
        for os_, arch in PLATFORMS
    )
    return f"""apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: nsinspect
spec:
  version: v{version}
  homepage: https://github.com/nsinspect/nsinspect
  shortDescription: Which Linux namespaces the containers of a pod really share
  description: |
    Shows, for a pod, each container's Linux namespaces (net, ipc, uts, pid, mnt, user,
    cgroup, time) as the kernel has them, next to what the runtime was asked for and what the
    pod's spec declares. Asks the nsinspect agent (a DaemonSet: nsinspect deploy) on the pod's
    node through the API server's port-forward.
  caveats: |
    This launcher runs the nsinspect Python package: install it first with
      python3 -m pip install nsinspect
    and deploy the agent once per cluster with: kubectl nsinspect deploy --apply
  platforms:
{platforms}"""


def main() -> int:
    from nsinspect import __version__

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "dist"))
    ap.add_argument("--manifest", default=str(ROOT / "krew" / "nsinspect.yaml"))
    ap.add_argument("--url-base", default="https://github.com/nsinspect/nsinspect/releases/download")
    args = ap.parse_args()
    data = archive(__version__)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"kubectl-nsinspect-v{__version__}.tar.gz"
    (out / name).write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    Path(args.manifest).write_text(manifest(__version__, f"{args.url_base}/v{__version__}/{name}", sha))
    print(f"{out / name}  sha256 {sha}\n{args.manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
