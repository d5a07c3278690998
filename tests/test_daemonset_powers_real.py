"""nsinspect with exactly the DaemonSet's powers, against processes and containers of non-root users.

The powers are read from daemonset/daemonset.yaml (so the two cannot drift): its user, its capabilities
(drop ALL, add ...) and no_new_privs, applied with setpriv(1).  Every answer is compared with the kernel
as full root reads it (readlink) and with the same command run with root's full powers.  Most workloads
in a cluster run as non-root users: /proc/<pid>/ns of another uid is mode 0511 and /proc/<pid>/fd 0500,
which uid 0 without DAC powers may not list (nsinspect reads them by name, through O_PATH and fdinfo).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from cri_env import Agent
from helpers import NS_TYPES, assert_one_sentence_error, cli_json, node_truth, run_cli, truth
from population import USERS, held_fds, ns_rows

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "daemonset" / "daemonset.yaml"


def agent_container() -> dict:
    with open(MANIFEST) as f:
        ds = next(d for d in yaml.safe_load_all(f) if d and d.get("kind") == "DaemonSet")
    return next(c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "agent")


def daemonset_powers() -> tuple[str, ...]:
    """A setpriv(1) command line that gives what the manifest's securityContext gives, and nothing else."""
    sc = agent_container()["securityContext"]
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["privileged"] is False
    caps = ",".join(["-all", *(f"+{c.lower()}" for c in sc["capabilities"].get("add", []))])
    uid = sc.get("runAsUser", 0)
    cmd = ["setpriv", f"--reuid={uid}", f"--regid={sc.get('runAsGroup', uid)}", "--clear-groups",
           f"--bounding-set={caps}", f"--inh-caps={caps}", f"--ambient-caps={caps}"]
    if sc.get("allowPrivilegeEscalation") is False:
        cmd.append("--no-new-privs")
    return (*cmd, "--")


POWERS = daemonset_powers()


def powered(*args: str, prefix: tuple[str, ...] = (), env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, prefix=(*prefix, *POWERS), env=env)


def powered_json(*args: str, prefix: tuple[str, ...] = (), env: dict[str, str] | None = None) -> dict:
    r = powered(*args, "-o", "json", prefix=prefix, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_the_powers_are_the_manifests():
    """The capability set the tests run with is the manifest's (SYS_PTRACE only, today), as the kernel sees it."""
    r = subprocess.run([*POWERS, "grep", "-E", "^(Cap(Eff|Prm|Bnd)|NoNewPrivs|Uid):", "/proc/self/status"],
                       capture_output=True, text=True, check=True)
    status = dict(line.split(":", 1) for line in r.stdout.splitlines())
    added = agent_container()["securityContext"]["capabilities"]["add"]
    want = sum(1 << {"SYS_PTRACE": 19, "DAC_READ_SEARCH": 2, "SYS_ADMIN": 21}[c] for c in added)
    for key in ("CapEff", "CapPrm", "CapBnd"):
        assert int(status[key], 16) == want, (key, status[key])
    assert status["NoNewPrivs"].strip() == "1" and status["Uid"].split()[0] == "0"


# -- processes of non-root users on the node ---------------------------------------------------------

# The scan's C speed-up and its pure-Python path, both with these powers.
SCANS = pytest.mark.parametrize("scan", [{}, {"NSINSPECT_PURE_PYTHON": "1"}], ids=["C", "python"])


@SCANS
def test_node_with_the_daemonsets_powers_is_the_kernels(population, scan):
    full = ns_rows(cli_json("node"))
    data = powered_json("node", env=scan)
    mine = ns_rows(data)
    node = node_truth()
    for pid in (*population["sleepers"], population["pinner"]):
        assert pid not in data["scan"]["denied_pids"]
        for t, ino in truth(pid).items():
            row = mine[(t, ino)]
            # Only this population is in its own namespaces: their rows must be the full-power rows exactly.
            if ino != node[t]:
                assert row == full[(t, ino)], (pid, t)
    # The pin is visible only in its mount namespace, whose one process is uid 123456's.
    pinned = [n for n in mine.values() if any(m["path"] == population["pin"] for m in n["mounts"])]
    assert len(pinned) == 1 and pinned[0]["type"] == "net" and pinned[0]["nprocs"] == 0, pinned
    assert pinned[0] == full[("net", pinned[0]["ns"])]
    assert pinned[0]["mounts"] == [{"path": population["pin"], "mnt_ns": truth(population["pinner"])["mnt"]}]
    holder = population["holder"]
    for t, ino in held_fds(holder).items():
        row = mine[(t, ino)]
        assert row["nprocs"] == 0 and {"pid": holder, "fd": {"uts": 3, "ipc": 4, "user": 5}[t]} in row["fds"], t
        assert row == full[(t, ino)], t  # parents and owners too, read through a duplicate of the holder's fd
    assert data["scan"]["fds_untyped"] == [] and data["scan"]["as_root"] is True
    assert holder not in data["scan"]["denied_pids"]


@pytest.mark.parametrize("how", [(), ("-o", "wide"), ("--tree",), ("-o", "yaml")], ids=["table", "wide", "tree", "yaml"])
def test_node_formats_with_the_daemonsets_powers(population, how):
    r = powered("node", *how)
    assert r.returncode == 0, r.stderr
    for pid in population["sleepers"]:
        assert str(truth(pid)["pid"]) in r.stdout  # each user's own pid namespace is a row
    assert "even root" not in r.stdout


def test_pid_with_the_daemonsets_powers_is_the_kernels(population):
    for pid in (*population["sleepers"], population["pinner"], population["holder"]):
        data = powered_json("pid", str(pid))
        assert data["namespaces"] == truth(pid), pid
        assert data == cli_json("pid", str(pid))


def test_type_filter_with_the_daemonsets_powers(population):
    for t in ("pid", "uts", "user"):
        rows = ns_rows(powered_json("node", "-t", t))
        assert {k[0] for k in rows} == {t}
        for pid in population["sleepers"]:
            assert (t, truth(pid)[t]) in rows
    held = held_fds(population["holder"])
    assert ("uts", held["uts"]) in ns_rows(powered_json("node", "-t", "uts"))


@SCANS
def test_fds_outside_our_pid_namespace_are_named_with_the_reason(population, scan):
    """As in the agent's container: the host's /proc, our own pid namespace.  The holder's fd table is another
    user's, and its pid is not ours to open (no pidfd_getfd): its namespaces are named by inode, with why."""
    data = powered_json("node", prefix=("unshare", "--pid", "--fork"), env=scan)
    held = held_fds(population["holder"])
    untyped = {(u["ns"], u["pid"], u["fd"]) for u in data["scan"]["fds_untyped"]}
    assert {(ino, population["holder"], {"uts": 3, "ipc": 4, "user": 5}[t]) for t, ino in held.items()} <= untyped
    mine = ns_rows(data)
    for pid in population["sleepers"]:
        for t, ino in truth(pid).items():
            assert (t, ino) in mine
    table = powered("node", prefix=("unshare", "--pid", "--fork")).stdout
    n = len(data["scan"]["fds_untyped"])
    assert f"{n} namespaces held by open fds are of a type that could not be read (inode " in table
    assert "another user's fd table, and its pid is not in our pid namespace" in table


def test_a_root_process_without_ptrace_is_told_what_it_lacks(population):
    no_caps = ("setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--")
    r = run_cli("pid", str(population["sleepers"][0]), prefix=no_caps)
    assert_one_sentence_error(r, 5)
    assert "CAP_SYS_PTRACE" in r.stderr and "even root" not in r.stderr
    data = json.loads(run_cli("node", "-o", "json", prefix=no_caps).stdout)
    assert data["scan"]["as_root"] is False and population["sleepers"][0] in data["scan"]["denied_pids"]


# -- containers of non-root users, local and through the agent ----------------------------------------

NONROOT = ("nonroot-demo", "nonroot-shared-pid")


def _members(data: dict) -> list[dict]:
    return [m for m in data["members"] if m["pid"] is not None]


def _stray_started(ctrd) -> None:
    """nonroot-demo's rootless container (uid 1000) has run its ``unshare`` (conftest: NONROOT_STRAY)."""
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        data = cli_json("-r", ctrd.endpoint, "pod", "nonroot-demo", "-n", "lab")
        strays = [s for m in data["members"] for s in m["strays"]]
        if strays and all(s["comm"] == "sleep" for s in strays):
            return
        time.sleep(0.1)
    raise AssertionError("the non-root stray did not start")


def test_nonroot_pods_with_the_daemonsets_powers(ctrd):
    _stray_started(ctrd)
    for name in NONROOT:
        args = ("-r", ctrd.endpoint, "pod", name, "-n", "lab")
        data = powered_json(*args)
        assert data == cli_json(*args), name
        for m in _members(data):
            assert m["namespaces"] == truth(m["pid"]), (name, m["name"])
            if m["role"] == "app":
                assert os.stat(f"/proc/{m['pid']}").st_uid in USERS
        for fmt in ("table", "tree", "yaml"):  # (wide has the details: the next test)
            assert powered(*args, "-o", fmt).stdout == run_cli(*args, "-o", fmt).stdout, (name, fmt)
    r = powered("-r", ctrd.endpoint, "check", "nonroot-shared-pid", "-n", "lab", "--expect", "pid=shared",
                "--expect", "net=shared", "--expect", "mnt=private")
    assert r.returncode == 0, r.stdout + r.stderr
    r = powered("-r", ctrd.endpoint, "check", "nonroot-demo", "-n", "lab", "--expect", "pid=shared")
    assert r.returncode == 1
    rootless = next(m for m in powered_json("-r", ctrd.endpoint, "pod", "nonroot-demo", "-n", "lab")["members"]
                    if m["name"] == "rootless")
    assert [set(s["differs"]) for s in rootless["strays"]] == [{"user", "uts"}]  # uid 1000's stray, seen
    pods = {p["name"]: p for p in powered_json("-r", ctrd.endpoint, "pods", "-A")["pods"]}
    full = {p["name"]: p for p in cli_json("-r", ctrd.endpoint, "pods", "-A")["pods"]}
    for name in NONROOT:
        assert pods[name] == full[name]


def test_nonroot_details_say_what_these_powers_cannot_read(ctrd):
    args = ("-r", ctrd.endpoint, "pod", "nonroot-demo", "-n", "lab", "--details")
    data, full = powered_json(*args), cli_json(*args)
    for m, f in zip(_members(data), _members(full), strict=True):
        d = m["details"]
        for section in ("uts", "ipc"):  # only inside the namespace: setns, CAP_SYS_ADMIN
            assert "CAP_SYS_ADMIN" in d[section]["error"], (m["name"], section, d[section])
        for section in ("net", "mnt", "user", "cgroup", "pid"):
            assert d[section] == f["details"][section], (m["name"], section)
            assert not d[section]["error"], (m["name"], section)


@pytest.fixture(scope="module")
def powered_agent(ctrd):
    a = Agent(ctrd.endpoint, prefix=POWERS)
    yield a
    assert a.stop() == 0


def test_the_agent_with_the_daemonsets_powers(ctrd, powered_agent, population):
    for name in NONROOT:
        remote = run_cli("--agent", powered_agent.address, "pod", name, "-n", "lab", "-o", "json")
        assert remote.returncode == 0, remote.stderr
        data = json.loads(remote.stdout)
        assert data == cli_json("-r", ctrd.endpoint, "pod", name, "-n", "lab")
        for m in _members(data):
            assert m["namespaces"] == truth(m["pid"])
    for pid in population["sleepers"]:
        r = run_cli("--agent", powered_agent.address, "pid", str(pid), "-o", "json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["namespaces"] == truth(pid)
    full, node = ns_rows(cli_json("node")), node_truth()
    for _ in range(3):  # the first call reads every process; the next ones keep what did not change (node.warm)
        r = run_cli("--agent", powered_agent.address, "node", "-o", "json")
        assert r.returncode == 0, r.stderr
        rows = ns_rows(json.loads(r.stdout))
        for pid in (*population["sleepers"], population["pinner"], population["holder"]):
            for t, ino in ((t, ino) for t, ino in truth(pid).items() if t in NS_TYPES):
                assert (t, ino) in rows, (pid, t)
                if ino != node[t]:  # the population's own namespaces: the full-power cold rows exactly
                    assert rows[(t, ino)] == full[(t, ino)], (pid, t)
        for t, ino in held_fds(population["holder"]).items():  # held by another user's fd only
            assert rows[(t, ino)] == full[(t, ino)], t
    assert "Traceback" not in powered_agent.logs()
