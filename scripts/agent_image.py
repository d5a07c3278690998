#!/usr/bin/env python3
"""The agent's image, built from this checkout's Dockerfile without a Docker engine (buildah), as an OCI archive.

    python3 scripts/agent_image.py build [--out agent.tar] [--tag NAME:TAG] [--base IMAGE | --debootstrap-base]

``build`` runs ``buildah bud`` on the repository's Dockerfile: no daemon, its own storage (``vfs``, under the
cache), ``--isolation chroot``, and writes an OCI archive that ``ctr images import`` and ``skopeo copy``
take (``skopeo copy oci-archive:agent.tar docker://REGISTRY/NAME:TAG`` publishes it).  The tag defaults to
the image the DaemonSet names (``daemonset/daemonset.yaml``, ``ghcr.io/nsinspect/nsinspect-agent:<version>``).

The Dockerfile starts from ``python:3.11-slim`` (``ARG PYTHON_IMAGE``).  Where no registry serves that image
(this project's CI reaches only Debian's and PyPI), ``--debootstrap-base`` makes a stand-in from Debian's
registry: bookworm's Python 3.11 with its headers, made the image's ``python`` and ``pip`` by a virtual
environment at ``/usr/local`` (where the official image has them), and this machine's trusted certificates
(so that pip reaches PyPI through a TLS-intercepting proxy, as this machine does).  The base is cached as an
OCI archive (``$NSINSPECT_IMAGE_CACHE``, default ``~/.cache/nsinspect/image``) and remade by ``--refresh``.

Needs root (buildah's chroot isolation, debootstrap) and Debian's ``buildah`` and ``debootstrap``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE_TAG = "localhost/nsinspect/python:3.11-bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python3-dev", "ca-certificates")
MIRROR = "http://deb.debian.org/debian"


def cache_dir() -> Path:
    return Path(os.environ.get("NSINSPECT_IMAGE_CACHE") or Path.home() / ".cache/nsinspect/image")


def default_tag() -> str:
    """The image the DaemonSet names: what `nsinspect deploy` runs and the release workflow publishes."""
    text = (ROOT / "daemonset" / "daemonset.yaml").read_text()
    m = re.search(r"^\s*image:\s*(\S+)\s*$", text, re.M)
    if not m:
        raise SystemExit("daemonset/daemonset.yaml names no image")
    return m.group(1)


def _run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def _buildah(*args: str) -> list[str]:
    """buildah with storage of its own: nothing of the machine's (or another run's) containers storage is touched."""
    store = cache_dir() / "storage"
    return ["buildah", "--storage-driver", "vfs", "--root", str(store / "root"), "--runroot", str(store / "run"), *args]


def make_base(refresh: bool = False) -> Path:
    """The stand-in for python:3.11-slim, as an OCI archive (cached)."""
    out = cache_dir() / "python-3.11-bookworm.tar"
    if out.exists() and not refresh:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run("debootstrap", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES), "bookworm", str(rootfs), MIRROR,
             stdout=subprocess.DEVNULL)
        # python and pip where the official image has them: /usr/local/bin, on every PATH first.
        _run("chroot", str(rootfs), "/usr/bin/python3", "-m", "venv", "/usr/local")
        shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/ca-certificates.crt")
        for d in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for p in (rootfs / d).glob("*"):
                if p.is_file():
                    p.unlink()
        layer = Path(tmp) / "rootfs.tar"
        _run("tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(layer), ".")
        ctr = _run(*_buildah("from", "scratch"), capture_output=True, text=True).stdout.strip()
        try:
            _run(*_buildah("add", ctr, str(layer), "/"), stdout=subprocess.DEVNULL)
            _run(*_buildah("config", "--env", "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                           "--env", "LANG=C.UTF-8", "--env", "PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
                           "--cmd", "python3", ctr))
            _run(*_buildah("commit", "--rm", ctr, BASE_TAG), stdout=subprocess.DEVNULL)
        except BaseException:
            subprocess.run(_buildah("rm", ctr), capture_output=True)
            raise
        part = out.with_suffix(".part")
        part.unlink(missing_ok=True)
        _run(*_buildah("push", "--quiet", BASE_TAG, f"oci-archive:{part}:{BASE_TAG}"), stdout=subprocess.DEVNULL)
        part.rename(out)
    return out


def build(out: Path, tag: str, base: str | None, debootstrap_base: bool, refresh: bool = False) -> Path:
    args = ["bud", "--isolation", "chroot", "--layers=false", "-f", str(ROOT / "Dockerfile"), "-t", tag]
    if debootstrap_base:
        archive = make_base(refresh)
        _run(*_buildah("pull", "--quiet", f"oci-archive:{archive}"), stdout=subprocess.DEVNULL)
        base = BASE_TAG
    if base:
        args += ["--build-arg", f"PYTHON_IMAGE={base}"]
    t0 = time.monotonic()
    _run(*_buildah(*args, str(ROOT)), stdout=subprocess.DEVNULL)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    _run(*_buildah("push", "--quiet", tag, f"oci-archive:{out}:{tag}"), stdout=subprocess.DEVNULL)
    subprocess.run(_buildah("rmi", tag), capture_output=True)
    print(f"{out}: {tag} ({out.stat().st_size / 1e6:.0f} MB, built in {time.monotonic() - t0:.0f} s)", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the agent's image from this checkout into an OCI archive")
    b.add_argument("--out", type=Path, default=Path("nsinspect-agent.tar"), help="the OCI archive to write")
    b.add_argument("--tag", default=None, help="the image's name (default: the DaemonSet's image)")
    g = b.add_mutually_exclusive_group()
    g.add_argument("--base", help="the Python image to build on (default: the Dockerfile's python:3.11-slim)")
    g.add_argument("--debootstrap-base", action="store_true", help="build on a Python 3.11 base made from Debian's registry")
    b.add_argument("--refresh", action="store_true", help="remake the cached debootstrap base")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("scripts/agent_image.py runs buildah with chroot isolation: run it as root.", file=sys.stderr)
        return 2
    for tool in ("buildah", *(("debootstrap",) if a.debootstrap_base else ())):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed: apt-get install {tool}", file=sys.stderr)
            return 2
    try:
        build(a.out.resolve(), a.tag or default_tag(), a.base, a.debootstrap_base, a.refresh)
    except subprocess.CalledProcessError as e:
        print(f"{Path(e.cmd[0]).name} failed (exit {e.returncode}); its output is above.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
