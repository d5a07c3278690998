"""The agent's warm `node` (mount tables kept, listed again only when their namespace changed) equals a cold scan
taken at the same moment, under churn: processes, namespaces, bind mounts and fds appearing and vanishing between
calls, and mount tables that change while every process stays the same.

The churn runs in a pid namespace of its own with its own /proc (`unshare --pid --fork --mount-proc`), so that
nothing but the test moves between the two scans: every answer must be equal, byte for byte as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import require_root

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parent.parent

CHURN = r'''
import json, os, random, signal, subprocess, sys, tempfile, time
from nsinspect.node.cached import CachedEngine
from nsinspect.node.engine import LocalEngine
from nsinspect.render import data

if os.environ.get("NSI_DEAF"):  # the test's own mutant: mount tables never seen to change
    import select

    class Deaf:
        def register(self, *a): pass
        def poll(self, *a): return []
    select.poll = Deaf

if os.environ.get("NSI_SLICES"):  # the warm scan cut into slices read by threads, as on a node of 1,500+ processes
    from nsinspect.node import procfs

    procfs.PARALLEL_MIN_PIDS = 2

rng = random.Random(20)
pins = tempfile.mkdtemp(prefix="nsi-warm-")
warm = CachedEngine(parallel=False)
procs = []  # (Popen, kind)
report = []

def ns(pid, t):
    return os.readlink(f"/proc/{pid}/ns/{t}")

def quiet():
    """Every process of this pid namespace is us or a tracked one, and each tracked one is a single process
    running sleep (its tree's unshare, mount, sh and killed children gone): nothing moves during the scans."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        want = {os.getpid()} | {p.pid for p, _kind, _pin in procs if p is not None}
        have = {int(d) for d in os.listdir("/proc") if d.isdigit()}
        try:
            asleep = all(open(f"/proc/{q}/comm").read().strip() == "sleep" for q in want - {os.getpid()})
        except OSError:
            asleep = False
        if have == want and asleep:
            return
        time.sleep(0.01)
    raise AssertionError(f"churn did not settle: {sorted(have - want)} {sorted(want - have)}")


def spawn(kind):
    pin = os.path.join(pins, f"{kind}-{len(procs)}")
    if kind == "ns":  # new namespaces, nothing else
        cmd = ["unshare", "--net", "--uts", "--ipc", "sleep", "1000"]
    elif kind == "mnt":  # a mount namespace of its own that pins a net namespace nobody is in
        open(pin, "w").close()
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               f"unshare --net mount --bind /proc/self/ns/net {pin} && exec sleep 1000"]
    elif kind == "fd":  # holds an fd on a namespace its child leaves behind
        cmd = ["sh", "-c", "unshare --uts sleep 1000 & c=$!; "
               "while [ \"$(readlink /proc/$c/ns/uts)\" = \"$(readlink /proc/self/ns/uts)\" ]; do sleep 0.01; done; "
               "exec 3</proc/$c/ns/uts; kill $c; wait $c; exec sleep 1000"]
    else:  # "pin": a bind mount in our own mount namespace of a namespace whose process then exits
        open(pin, "w").close()
        p = subprocess.Popen(["unshare", "--ipc", "sleep", "1000"])
        while ns(p.pid, "ipc") == ns(os.getpid(), "ipc"):
            time.sleep(0.01)
        subprocess.run(["mount", "--bind", f"/proc/{p.pid}/ns/ipc", pin], check=True)
        p.kill(); p.wait()
        procs.append((None, "pin", pin))
        return
    p = subprocess.Popen(cmd, start_new_session=True)
    procs.append((p, kind, pin))
    quiet()

def vanish(i):
    p, kind, pin = procs.pop(i)
    if p is None:
        subprocess.run(["umount", pin], check=True)
        return
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()

def remount(p, pin):
    """The mount table of a process's own mount namespace changes; no process comes or goes."""
    other = f"{pin}.{len(report)}"  # a new pin each time
    target = ns(p.pid, "mnt")
    subprocess.run(["nsenter", "-m", "-t", str(p.pid), "sh", "-c",
                    f"touch {other} && unshare --uts mount --bind /proc/self/ns/uts {other}"], check=True)
    return target

for rnd in range(12):
    for _ in range(rng.randint(1, 3)):
        spawn(rng.choice(["ns", "mnt", "fd", "pin"]))
    if len(procs) > 3 and rng.random() < 0.7:
        vanish(rng.randrange(len(procs)))
    mnts = [(p, pin) for p, kind, pin in procs if kind == "mnt"]
    changed = remount(*rng.choice(mnts)) if mnts and rnd % 2 else None
    quiet()
    a = data.node(warm.node())
    cold = LocalEngine(parallel=False)
    b = data.node(cold.node())
    cold.close()
    t = warm.mount_tables
    report.append({"round": rnd, "equal": a == b, "reused": t.reused, "read": t.read, "rows": len(a["namespaces"]),
                   "changed": changed is not None})
    if a != b:
        A = {(r["type"], r["ns"]): r for r in a["namespaces"]}
        B = {(r["type"], r["ns"]): r for r in b["namespaces"]}
        report[-1]["diff"] = repr(([k for k in a if a[k] != b[k]], [k for k in A if k not in B], [k for k in B if k not in A],
                                  [(k, A[k], B[k]) for k in A if k in B and A[k] != B[k]]))[:3000]
        if not os.environ.get("NSI_DEAF"):
            break
for i in range(len(procs) - 1, -1, -1):
    vanish(i)
warm.close()
print(json.dumps(report))
'''


def churn(**env: str) -> list[dict]:
    import os

    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--propagation", "private", sys.executable, "-c", CHURN],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ, **env))
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.splitlines()[-1])


@pytest.mark.parametrize("sliced", [False, True], ids=["one-slice", "threads"])
def test_warm_node_equals_a_cold_scan_under_churn(sliced):
    """Byte for byte, every round; with ``threads`` the warm scan's slices are read by threads (mount tables
    once, for all) and the cold one in a single slice."""
    require_root()
    report = churn(**({"NSI_SLICES": "1"} if sliced else {}))
    bad = [x for x in report if not x["equal"]]
    assert not bad, bad
    assert len(report) == 12
    assert sum(x["reused"] for x in report) >= 6, report  # warm: kept tables were used


def test_the_churn_catches_a_warm_scan_that_misses_changes():
    """The same churn against a mutant that never sees a mount table change: some answer differs, so the
    test above would catch a warm scan that reuses a changed table (a remount with no process change)."""
    require_root()
    report = churn(NSI_DEAF="1")
    assert any(not x["equal"] and x["changed"] for x in report), report


SHARED_PIN = r'''
import json, os, subprocess, sys, tempfile, time
from nsinspect.node.cached import CachedEngine
from nsinspect.node.engine import LocalEngine
from nsinspect.render import data

def ns(pid, t):
    return os.readlink(f"/proc/{pid}/ns/{t}")

pin = tempfile.mktemp(prefix="nsi-shared-pin-")
open(pin, "w").close()
holder = subprocess.Popen(["unshare", "--ipc", "sleep", "1000"])
while ns(holder.pid, "ipc") == ns(os.getpid(), "ipc"):
    time.sleep(0.01)
subprocess.run(["mount", "--bind", f"/proc/{holder.pid}/ns/ipc", pin], check=True)
ipc = int(ns(holder.pid, "ipc")[5:-1])
holder.kill(); holder.wait()
# A private copy of our mount namespace: it holds the pin too, and keeps it when we unmount ours.
copy = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "1000"])
while ns(copy.pid, "mnt") == ns(os.getpid(), "mnt") or ns(copy.pid, "mnt") is None:
    time.sleep(0.01)
warm = CachedEngine(parallel=False)
out = []
for step in ("both hold it", "only the copy holds it"):
    if step == "only the copy holds it":
        subprocess.run(["umount", pin], check=True)
    a, b = data.node(warm.node()), data.node(LocalEngine(parallel=False).node())
    row = next((r for r in a["namespaces"] if r["type"] == "ipc" and r["ns"] == ipc), None)
    out.append({"step": step, "equal": a == b, "row": row is not None, "reused": warm.mount_tables.reused})
copy.kill(); copy.wait()
warm.close()
print(json.dumps(out))
'''


def test_a_pin_two_mount_namespaces_share_stays_when_one_unmounts_it():
    """A bind mount copied into a private mount namespace: when the node's namespace unmounts it, the copy still
    holds it. The warm answer reuses the copy's kept table, which must be its whole table (the C pass reports a
    path once per call, for the first namespace that has it)."""
    require_root()
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--propagation", "private", sys.executable, "-c", SHARED_PIN],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    steps = json.loads(r.stdout.splitlines()[-1])
    assert all(s["equal"] and s["row"] for s in steps), steps
    assert steps[1]["reused"] >= 1, steps  # the copy's table was kept, not read again
