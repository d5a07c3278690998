"""The agent's warm `node` (each process read again only when its CPU clock moved, mount tables listed again
only when their namespace changed) equals a cold scan taken at the same moment, under churn: processes,
namespaces, bind mounts and fds appearing and vanishing between calls; mount tables that change while every
process stays the same; long-lived processes that change themselves (setns into a new namespace, open or close
an fd on one, their fd table shared with an idle process by clone(CLONE_FILES)); and processes whose parent
exits (a new PPID, with no run of their own); zombies; a mount namespace's reader that chroots (its table's paths
change with no mount event).

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
import json, os, random, select, signal, subprocess, sys, tempfile, time
from nsinspect.node.cached import CachedEngine
from nsinspect.node.engine import LocalEngine
from nsinspect.render import data

if os.environ.get("NSI_DEAF"):  # the test's own mutant: mount tables never seen to change (select.select stays)
    class Deaf:
        def register(self, *a): pass
        def unregister(self, *a): pass
        def poll(self, *a): return []
    select.poll = Deaf

from nsinspect.node import warm as warm_module

if os.environ.get("NSI_BLIND"):  # the test's own mutant: no process is ever seen to run
    warm_module.moved = lambda pids, clocks: []
if os.environ.get("NSI_ALONE"):  # the test's own mutant: no fd table is ever seen shared
    warm_module._Kcmp.same_files = lambda self, a, b: False
if os.environ.get("NSI_HASTY"):  # the test's own mutant: the last answer again whenever the same pids are there
    warm_module.WarmNode._same_answer = lambda self, types, pids, *rest: self._last is not None and self._last[1] == pids
if os.environ.get("NSI_ROOTED"):  # the test's own mutant: a mount table kept though its reader ran (and chrooted)
    warm_module.WarmNode._ran = lambda self: set()
if os.environ.get("NSI_UNTRUSTED"):  # nohz_full, or no pidfds: every process read again on every call
    warm_module.ticks_everywhere = lambda: False

HELPER = """
import ctypes, os, platform, signal, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(15, b"nsi-idle", 0, 0, 0)  # PR_SET_NAME
kind, held, child = sys.argv[1], [], 0
if kind in ("idle", "uid"):  # alone in a uts namespace of its own: its description shows
    assert libc.unshare(0x04000000) == 0
if kind == "share":  # clone(CLONE_FILES) without CLONE_THREAD: a second process with our fd table, idle forever
    child = libc.syscall(56 if platform.machine() == "x86_64" else 220, 0x400 | signal.SIGCHLD, 0, 0, 0, 0)
    if child == 0:
        while True:
            signal.pause()
elif kind == "root":  # a mount namespace of its own, a namespace pinned in a directory it chroots into when poked
    import tempfile
    top = tempfile.mkdtemp(prefix="nsi-root-")
    assert libc.unshare(0x00020000 | 0x04000000) == 0  # CLONE_NEWNS | CLONE_NEWUTS
    assert libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None) == 0  # MS_REC | MS_PRIVATE
    open(top + "/pin", "w").close()
    assert libc.mount(b"/proc/self/ns/uts", (top + "/pin").encode(), None, 4096, None) == 0  # MS_BIND
elif kind == "orphan":  # a child alone in its uts namespace (its PPID shows) whose parent exits when poked
    child = subprocess.Popen(["unshare", "--uts", "sleep", "1000"]).pid
    while os.readlink(f"/proc/{child}/ns/uts") == os.readlink("/proc/self/ns/uts") or open(f"/proc/{child}/comm").read() != "sleep\\n":
        pass

def poke(sig):
    if kind == "orphan":
        os._exit(0)
    if kind == "root":  # a new root (the first time): the pin's path in our table changes, with no mount event
        if held:
            os.chroot(".")
        else:
            os.chroot(top)
            os.chdir("/")
            held.append(top)
        os.write(1, b"done\\n")
        return
    euid = os.geteuid()
    if euid != 0:
        os.seteuid(0)
    if sig == signal.SIGHUP:  # euid 0 <-> 65534 (USER and UID show it: /proc/PID's owner); no link or fd changes
        if euid == 0:
            os.seteuid(65534)
            libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: a uid change made us not dumpable, and /proc/PID root's
    elif sig == signal.SIGUSR1:  # into a new uts namespace (the old one stays the child's, if any)
        assert libc.unshare(0x04000000) == 0
    elif held:
        os.close(held.pop())
    else:  # an fd on our uts namespace, then leave it: only the fd (and a sharing child) holds it now
        held.append(os.open("/proc/self/ns/uts", os.O_RDONLY))
        assert libc.unshare(0x04000000) == 0
    os.write(1, b"done\\n")

# Taken synchronously, not by a handler: a handler's signal that lands between the interpreter's last look and
# pause(2) is held until the next one, and the test would wait for its "done" forever.
POKES = {signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP}
signal.pthread_sigmask(signal.SIG_BLOCK, POKES)
os.write(1, f"ready {child}\\n".encode())
while True:
    poke(signal.sigwait(POKES))
"""

rng = random.Random(20)
pins = tempfile.mkdtemp(prefix="nsi-warm-")
warm = CachedEngine(parallel=False)
procs = []  # (Popen or None, kind, pin, [pids of its that we reap: an fd-sharing child, an orphan])
report = []

def ns(pid, t):
    return os.readlink(f"/proc/{pid}/ns/{t}")

def line(p):
    """The helper's next line; a helper that does not answer fails the test in a minute instead of hanging it."""
    if not select.select([p.stdout], [], [], 60)[0]:
        raise AssertionError(f"helper {p.args[-1]} (pid {p.pid}) gave no answer in 60 s")
    return p.stdout.readline()

def quiet():
    """Every process of this pid namespace is us or a tracked one, and each tracked one is a single process
    running sleep (its tree's unshare, mount, sh and killed children gone): nothing moves during the scans."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        want = {os.getpid()} | {p.pid for p, _kind, _pin, _ours in procs if p is not None and p.poll() is None} \
            | {q for *_rest, ours in procs for q in ours}
        have = {int(d) for d in os.listdir("/proc") if d.isdigit()}
        try:
            asleep = all(open(f"/proc/{q}/comm").read().strip().startswith(("sleep", "nsi-idle")) for q in want - {os.getpid()})
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
    elif kind == "zombie":  # a child that exited and that its parent never reaps (sleep does not wait)
        p = subprocess.Popen(["unshare", "--uts", "sh", "-c", "sleep 0 & exec sleep 1000"], start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                kids = open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()
                state = open(f"/proc/{kids[0]}/stat").read().rsplit(")", 1)[1].split()[0] if kids else ""
                if open(f"/proc/{p.pid}/comm").read() == "sleep\n" and state == "Z":
                    break
            except OSError:
                pass
            time.sleep(0.01)
        procs.append((p, kind, pin, [int(kids[0])]))
        quiet()
        return
    elif kind in ("idle", "share", "orphan", "uid", "root"):  # a process that changes itself when poked (HELPER)
        p = subprocess.Popen([sys.executable, "-c", HELPER, kind], start_new_session=True, stdout=subprocess.PIPE)
        child = int(line(p).split()[1])
        procs.append((p, kind, pin, [child] if kind == "share" else []))
        if kind == "orphan":
            procs[-1][3].append(child)  # ours to reap once its parent exits
        quiet()
        return
    else:  # "pin": a bind mount in our own mount namespace of a namespace whose process then exits
        open(pin, "w").close()
        p = subprocess.Popen(["unshare", "--ipc", "sleep", "1000"])
        while ns(p.pid, "ipc") == ns(os.getpid(), "ipc"):
            time.sleep(0.01)
        subprocess.run(["mount", "--bind", f"/proc/{p.pid}/ns/ipc", pin], check=True)
        p.kill(); p.wait()
        procs.append((None, "pin", pin, []))
        return
    p = subprocess.Popen(cmd, start_new_session=True)
    procs.append((p, kind, pin, []))
    quiet()

def vanish(i):
    p, kind, pin, ours = procs.pop(i)
    if p is None:
        subprocess.run(["umount", pin], check=True)
        return
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:  # an orphan's parent, gone already: the orphan is its own group's now? no: ours
        pass
    for q in ours:
        try:
            os.kill(q, signal.SIGKILL)
        except ProcessLookupError:
            pass
    p.wait()
    for q in ours:  # reparented to us (we are this pid namespace's init): reap them
        try:
            os.waitpid(q, 0)
        except ChildProcessError:
            pass

def poke(seteuid=False):
    """A long-lived process changes itself: no process comes or goes (an orphan's parent exits)."""
    helpers = [(p, kind) for p, kind, _pin, _ours in procs
               if kind in (("uid",) if seteuid else ("idle", "share", "orphan", "root")) and p.poll() is None]
    if not helpers:
        return None
    p, kind = rng.choice(helpers)
    if kind == "orphan":
        os.kill(p.pid, signal.SIGUSR1)
        p.wait()
        return "orphaned"
    if kind == "root":
        os.kill(p.pid, signal.SIGUSR1)
        assert line(p) == b"done\n"
        return "root:chroot"
    sig = signal.SIGHUP if seteuid else signal.SIGUSR2 if kind == "share" else rng.choice([signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP])
    os.kill(p.pid, sig)
    assert line(p) == b"done\n"
    return f"{kind}:{ {signal.SIGUSR1: 'setns', signal.SIGUSR2: 'fd', signal.SIGHUP: 'seteuid'}[sig] }"

def remount(p, pin):
    """The mount table of a process's own mount namespace changes; no process comes or goes."""
    other = f"{pin}.{len(report)}"  # a new pin each time
    target = ns(p.pid, "mnt")
    subprocess.run(["nsenter", "-m", "-t", str(p.pid), "sh", "-c",
                    f"touch {other} && unshare --uts mount --bind /proc/self/ns/uts {other}"], check=True)
    return target

for rnd in range(12):
    kinds = ["ns", "mnt", "fd", "pin", "idle", "share", "orphan", "uid", "zombie", "root"]
    for kind in (kinds if rnd == 0 else [rng.choice(kinds) for _ in range(rng.randint(1, 3))]):  # each kind, then at random
        spawn(kind)
    if len(procs) > 3 and rng.random() < 0.5:
        vanish(rng.randrange(len(procs)))
    mnts = [(p, pin) for p, kind, pin, _ours in procs if kind == "mnt"]
    changed = remount(*rng.choice(mnts)) if mnts and rnd % 2 else None
    poked = [poke() for _ in range(rng.randint(1, 3))]
    quiet()
    a = data.node(warm.node())
    if rnd % 3 == 2:  # a uid change alone (a run, no link or fd changes) between two warm calls: not the last answer again
        warm.node()
        poked.append(poke(seteuid=True))
        quiet()
        a = data.node(warm.node())
    again = data.node(warm.node())  # nothing changed: the last answer, again
    same_answer = warm.warm_node.same_answer
    cold = LocalEngine(parallel=False)
    b = data.node(cold.node())
    cold.close()
    t = warm.warm_node.tables
    report.append({"round": rnd, "equal": a == b and again == b, "same_answer": same_answer, "reused": t.reused, "read": t.read,
                   "rows": len(a["namespaces"]),
                   "changed": changed is not None, "poked": [x for x in poked if x], "kept": warm.warm_node.kept,
                   "reread": warm.warm_node.reread})
    if a != b:
        A = {(r["type"], r["ns"]): r for r in a["namespaces"]}
        B = {(r["type"], r["ns"]): r for r in b["namespaces"]}
        report[-1]["diff"] = repr(([k for k in a if a[k] != b[k]], [k for k in A if k not in B], [k for k in B if k not in A],
                                  [(k, A[k], B[k]) for k in A if k in B and A[k] != B[k]]))[:3000]
        if not any(os.environ.get(m) for m in ("NSI_DEAF", "NSI_BLIND", "NSI_ALONE", "NSI_HASTY", "NSI_ROOTED")):
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


@pytest.mark.parametrize("clocks", ["trusted", "untrusted"])
def test_warm_node_equals_a_cold_scan_under_churn(clocks):
    """Byte for byte, every round; ``untrusted``: as on a node with nohz_full CPUs, every process is read again."""
    require_root()
    report = churn(**({"NSI_UNTRUSTED": "1"} if clocks == "untrusted" else {}))
    bad = [x for x in report if not x["equal"]]
    assert not bad, bad
    assert len(report) == 12
    assert {p.split(":")[0] for x in report for p in x["poked"]} >= {"idle", "share", "orphaned", "uid", "root"}, report
    if clocks == "trusted":  # warm: most processes were kept, not read again, and the last answer given again
        assert sum(x["kept"] for x in report[1:]) > sum(x["reread"] for x in report[1:]), report
        assert sum(x["same_answer"] for x in report) >= 6, report
        assert sum(x["reused"] for x in report) >= 6, report  # kept mount tables were used
    else:  # nothing is kept: every process, and so every mount table's reader, is read again
        assert not any(x["kept"] or x["reused"] for x in report), report


@pytest.mark.parametrize("mutant", ["NSI_DEAF", "NSI_BLIND", "NSI_ALONE", "NSI_HASTY", "NSI_ROOTED"])
def test_the_churn_catches_a_warm_scan_that_misses_changes(mutant):
    """The same churn against mutants: one that never sees a mount table change (a remount with no process
    change), one that never sees a process run (its setns and fds), one that never sees an fd table shared, one
    that gives the last answer again whenever the same pids are there (a process with another uid), one that keeps a
    mount table whose reader chrooted.
    Some answer differs for each, so the test above would catch a warm scan that keeps what changed."""
    require_root()
    report = churn(**{mutant: "1"})
    missed = [x for x in report if not x["equal"]]
    if mutant == "NSI_DEAF":
        assert any(x["changed"] for x in missed), report
    elif mutant == "NSI_BLIND":
        assert any(x["poked"] for x in missed), report
    elif mutant == "NSI_ROOTED":
        assert any("root:chroot" in x["poked"] for x in missed), report
    elif mutant == "NSI_ALONE":
        assert any(any(p.startswith("share") for p in x["poked"]) for x in missed), report
    else:
        assert any(any(p.endswith("seteuid") for p in x["poked"]) for x in missed), report


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
    out.append({"step": step, "equal": a == b, "row": row is not None, "reused": warm.warm_node.tables.reused})
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
