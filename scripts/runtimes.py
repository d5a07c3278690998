#!/usr/bin/env python3
"""The containerd builds the real-runtime tests run against, fetched from Debian by package name.

    python3 scripts/runtimes.py fetch [ID...]     # download + unpack what is missing (default: all)
    python3 scripts/runtimes.py list              # what is here, with versions

| id  | containerd from            | runc                                   |
|-----|----------------------------|----------------------------------------|
| 1.6 | this machine (bookworm)    | this machine's (1.1.x)                 |
| 1.7 | Debian trixie (1.7.x)      | trixie's (1.1.x), on trixie's glibc    |
| 2.x | Debian sid (2.x)           | sid's (1.3.x), on sid's glibc          |

Newer suites' packages are fetched with a private apt configuration (its own sources list, lists and
archives under the cache; the machine's own packages are never touched) from the Debian mirror this
machine already uses, then unpacked with ``dpkg-deb -x``.  Their containerd binaries are static enough
to run on bookworm; their runc needs a newer glibc, so runc gets that suite's libc6 and libseccomp2
beside it and ``patchelf`` points its interpreter and rpath there (``/proc/self/exe`` stays runc, which
runc's re-exec needs).  The cache (``$NSINSPECT_RUNTIME_CACHE``, default ``~/.cache/nsinspect/runtimes``)
is kept between runs: a fetched runtime is reused until ``fetch --refresh``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SUITES = {"1.6": None, "1.7": "trixie", "2.x": "sid"}  # None: this machine's own packages
EXPECT = {"1.6": "1.6.", "1.7": "1.7.", "2.x": "2."}  # what `containerd --version` must say
PACKAGES = ("containerd", "runc", "libc6", "libseccomp2")
LISTS_MAX_AGE = 24 * 3600


@dataclass(frozen=True)
class Runtime:
    """One containerd build and the runc it runs with."""

    id: str
    bin_dir: str  # containerd, containerd-shim-runc-v2, ctr
    runc: str
    version: str  # containerd's own version string
    runc_version: str

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def tool(self, name: str) -> str:
        return os.path.join(self.bin_dir, name)

    def env(self) -> dict[str, str]:
        """The environment containerd runs in: its own shim and runc found first."""
        path = os.pathsep.join([self.bin_dir, os.path.dirname(self.runc), os.environ.get("PATH", "/usr/bin:/bin")])
        return dict(os.environ, PATH=path)


def cache_dir() -> Path:
    return Path(os.environ.get("NSINSPECT_RUNTIME_CACHE") or Path.home() / ".cache/nsinspect/runtimes")


def _version(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = re.search(r"\b(\d+\.\d+\.\d+\S*)", out)
    if not m:
        raise RuntimeError(f"cannot read a version from {' '.join(cmd)}: {out.strip()!r}")
    return m.group(1)


def _which(tool: str) -> str:
    path = shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path is None:
        raise RuntimeError(f"{tool} is not installed: apt-get install containerd runc (scripts/test.sh does)")
    return path


def _system() -> Runtime:
    containerd = _which("containerd")
    runc = _which("runc")
    return Runtime("1.6", os.path.dirname(containerd), runc, _version([containerd, "--version"]),
                   _version([runc, "--version"]))


# -- a private apt for the newer suites ------------------------------------------------------------
def debian_mirror(etc: str = "/etc/apt") -> tuple[str, str]:
    """(URI, keyring) of the Debian archive this machine's apt already uses (deb822 or one-line)."""
    entries: list[tuple[str, list[str], str]] = []
    for path in sorted(glob.glob(f"{etc}/sources.list.d/*.sources")):
        for stanza in Path(path).read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.lstrip().startswith("#"):
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
            if "deb" in fields.get("types", "").split() and fields.get("uris"):
                entries.append((fields["uris"].split()[0], fields.get("suites", "").split(), fields.get("signed-by", "")))
    for path in [f"{etc}/sources.list", *sorted(glob.glob(f"{etc}/sources.list.d/*.list"))]:
        if os.path.exists(path):
            for line in Path(path).read_text().splitlines():
                m = re.match(r"deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)", line.strip())
                if m:
                    key = re.search(r"signed-by=(\S+)", m.group(1) or "")
                    entries.append((m.group(2), [m.group(3)], key.group(1) if key else ""))
    for uri, suites, key in entries:
        # The main archive: a plain release suite (not -security, -updates, -backports).
        if any(re.fullmatch(r"[a-z]+", s) for s in suites) and "security" not in uri:
            return uri.rstrip("/"), key or "/usr/share/keyrings/debian-archive-keyring.gpg"
    raise RuntimeError("no Debian archive in /etc/apt/sources.list*: add the Debian mirror, then rerun")


def _apt(cache: Path, suite: str) -> list[str]:
    apt = cache / "apt"
    for d in ("lists/partial", "archives/partial"):
        (apt / d).mkdir(parents=True, exist_ok=True)
    sources = apt / "sources.list"
    uri, key = debian_mirror()
    sources.write_text(f"deb [signed-by={key}] {uri} {suite} main\n")
    return [
        "-o", f"Dir::Etc::sourcelist={sources}", "-o", "Dir::Etc::sourceparts=-",
        "-o", f"Dir::State::Lists={apt / 'lists' / suite}", "-o", f"Dir::Cache={apt}",
        "-o", f"Dir::Cache::archives={apt / 'archives'}", "-o", "APT::Get::List-Cleanup=0",
        "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root",
    ]


def _download(cache: Path, suite: str, refresh: bool) -> dict[str, Path]:
    opts = _apt(cache, suite)
    lists = cache / "apt" / "lists" / suite
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    fresh = [p for p in lists.glob("*_Packages*") if time.time() - p.stat().st_mtime < LISTS_MAX_AGE]
    if refresh or not fresh:
        subprocess.run(["apt-get", *opts, "-qq", "update"], check=True, stdout=subprocess.DEVNULL)
    debs = cache / "debs" / suite
    debs.mkdir(parents=True, exist_ok=True)
    out = {}
    for pkg in PACKAGES:
        show = subprocess.run(["apt-cache", *opts, "show", "--no-all-versions", pkg], capture_output=True, text=True,
                              check=True).stdout
        filename = os.path.basename(re.search(r"^Filename: (\S+)", show, re.M).group(1))
        deb = debs / filename
        if not deb.exists():  # the archive's file name carries the version: a new upload is a new file
            subprocess.run(["apt-get", *opts, "-qq", "download", pkg], check=True, cwd=debs, stdout=subprocess.DEVNULL)
        out[pkg] = deb
    return out


def _unpack(rid: str, suite: str, cache: Path, refresh: bool) -> Runtime:
    debs = _download(cache, suite, refresh)
    dest = cache / rid
    staging = Path(tempfile.mkdtemp(prefix=f".{rid}-", dir=cache))
    try:
        root = staging / "root"
        for deb in debs.values():
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        bin_dir = staging / "bin"
        bin_dir.mkdir()
        for tool in ("containerd", "containerd-shim-runc-v2", "ctr"):
            shutil.copy2(root / "usr/bin" / tool, bin_dir / tool)
        libdir = dest / "root/usr/lib/x86_64-linux-gnu"  # where the libraries will be once moved in place
        if not (root / "usr/lib/x86_64-linux-gnu").is_dir():
            raise RuntimeError(f"{suite}'s libc6 has no usr/lib/x86_64-linux-gnu: this script supports amd64 only")
        runc = bin_dir / "runc"
        shutil.copy2(root / "usr/sbin/runc", runc)
        subprocess.run(["patchelf", "--set-interpreter", str(libdir / "ld-linux-x86-64.so.2"), "--set-rpath",
                        str(libdir), str(runc)], check=True)
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _describe(rid, dest)


def _describe(rid: str, dest: Path) -> Runtime:
    bin_dir = dest / "bin"
    rt = Runtime(rid, str(bin_dir), str(bin_dir / "runc"), _version([str(bin_dir / "containerd"), "--version"]),
                 _version([str(bin_dir / "runc"), "--version"]))
    (dest / "runtime.json").write_text(json.dumps(rt.__dict__, indent=1))
    return rt


def ensure(rid: str, refresh: bool = False) -> Runtime:
    """The runtime ``rid``, fetched and unpacked first if the cache does not have it."""
    if rid not in SUITES:
        raise ValueError(f"unknown runtime {rid!r}: choose from {', '.join(SUITES)}")
    suite = SUITES[rid]
    if suite is None:
        rt = _system()
    else:
        cache = cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        meta = cache / rid / "runtime.json"
        if meta.exists() and not refresh:
            rt = Runtime(**json.loads(meta.read_text()))
            if not (os.access(rt.tool("containerd"), os.X_OK) and os.access(rt.runc, os.X_OK)):
                rt = _unpack(rid, suite, cache, True)
        else:
            rt = _unpack(rid, suite, cache, refresh)
    if not rt.version.startswith(EXPECT[rid]):
        raise RuntimeError(f"runtime {rid}: found containerd {rt.version}, expected {EXPECT[rid]}x "
                           f"(Debian moved on: update SUITES/EXPECT in scripts/runtimes.py)")
    return rt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download and unpack the runtimes (default: all)")
    f.add_argument("ids", nargs="*", default=list(SUITES))
    f.add_argument("--refresh", action="store_true", help="ask the archive again even if cached")
    sub.add_parser("list", help="the runtimes and their versions")
    args = ap.parse_args(argv)
    ids = args.ids if args.cmd == "fetch" else list(SUITES)
    for rid in ids:
        try:
            rt = ensure(rid, getattr(args, "refresh", False))
        except (RuntimeError, ValueError, subprocess.CalledProcessError, OSError) as e:
            print(f"runtimes.py: {rid}: {e}", file=sys.stderr)
            return 1
        print(f"{rt.id:4} containerd {rt.version:24} runc {rt.runc_version:16} {rt.bin_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
