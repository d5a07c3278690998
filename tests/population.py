"""Processes of non-root users on the node, as the DaemonSet-powers tests read them (uids 1000, 65534, 123456)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from helpers import comm, descendants

USERS = (1000, 65534, 123456)

HOLD_FDS = (  # as the user: a namespace whose only process exits while this shell keeps fds open on it
    'unshare --user --map-root-user --uts --ipc sleep 600 & c=$!; '
    'while [ "$(readlink /proc/$c/ns/uts)" = "$(readlink /proc/self/ns/uts)" ]; do sleep 0.02; done; '
    'exec 3</proc/$c/ns/uts 4</proc/$c/ns/ipc 5</proc/$c/ns/user; kill $c; wait $c; exec sleep 600'
)


def _as(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


@contextmanager
def population(pin_dir: Path) -> Iterator[dict]:
    """Per user: a process in fresh net/uts/ipc/pid/mnt namespaces; a mount namespace only a non-root
    process is in, holding a bind mount of a net namespace nobody is in; a non-root process holding fds on
    namespaces nobody is in."""
    pin_dir.chmod(0o755)
    pin = pin_dir / f"net-{uuid.uuid4().hex[:8]}"
    pin.touch()
    procs = []
    for uid in USERS:
        procs.append(subprocess.Popen(["unshare", "--net", "--uts", "--ipc", "--pid", "--mount", "--fork", *_as(uid), "sleep", "600"],
                                      start_new_session=True))
    procs.append(subprocess.Popen(  # the pin lives in this mount namespace only, whose one process is uid 123456's
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f'unshare --net mount --bind /proc/self/ns/net {pin} && exec {" ".join(_as(USERS[2]))} sleep 600'],
        start_new_session=True))
    procs.append(subprocess.Popen([*_as(USERS[0]), "sh", "-c", HOLD_FDS], start_new_session=True))
    try:
        pids = _settle(procs)
        yield {"sleepers": pids[:3], "pinner": pids[3], "holder": pids[4], "pin": str(pin)}
    finally:
        for p in procs:
            os.killpg(p.pid, 9)
            p.wait()


def _settle(procs: list[subprocess.Popen], timeout: float = 15) -> list[int]:
    """The non-root process of each tree, once it runs sleep with its final namespaces and fds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = []
        for p in procs:
            tree = [p.pid, *descendants(p.pid)]
            mine = [q for q in tree if comm(q) == "sleep" and os.stat(f"/proc/{q}").st_uid != 0]
            found.append(mine[-1] if mine else None)
        if all(found) and len(os.listdir(f"/proc/{found[-1]}/fd")) >= 6:
            return found  # type: ignore[return-value]
        time.sleep(0.05)
    raise AssertionError("the non-root processes did not start")


def ns_rows(data: dict) -> dict[tuple[str, int], dict]:
    return {(n["type"], n["ns"]): n for n in data["namespaces"]}


def held_fds(pid: int) -> dict[str, int]:
    """The kernel's word on what the holder's fds 3-5 name."""
    out = {}
    for fd in (3, 4, 5):
        t, _, rest = os.readlink(f"/proc/{pid}/fd/{fd}").partition(":[")
        out[t] = int(rest[:-1])
    return out


