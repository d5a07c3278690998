"""pod --details on the course pods of a real containerd, compared with what other tools say
(ip, hostname and ipcs run inside the namespaces by nsenter, findmnt, the container's own ps)."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from cri_env import Agent
from helpers import run_cli

pytestmark = pytest.mark.runtime


def details_json(env, name, *extra):
    r = run_cli("-r", env.endpoint, "pod", name, "-n", "lab", "--details", "-o", "json", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def running(data):
    return [m for m in data["members"] if m["pid"] is not None]


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30).stdout


def ip_addresses(pid: int) -> set[tuple[str, str, str]]:
    """(interface, family, address/prefix) as `ip -o addr` shows them inside the member's network namespace."""
    out = set()
    for line in sh("nsenter", "-t", str(pid), "-n", "ip", "-o", "addr").splitlines():
        f = line.split()
        out.add((f[1], f[2], f[3]))
    return out


def ip_links(pid: int) -> set[str]:
    return {line.split(":")[1].strip().split("@")[0] for line in sh("nsenter", "-t", str(pid), "-n", "ip", "-o", "link").splitlines()}


def test_net_and_uts_details_match_ip_and_hostname(ctrd):
    for name in ctrd.pods:
        data = details_json(ctrd, name)
        for m in running(data):
            d, pid = m["details"], m["pid"]
            assert d is not None, (name, m["name"])
            assert not d["net"]["error"] and not d["uts"]["error"], (name, m["name"], d)
            assert d["uts"]["hostname"] == sh("nsenter", "-t", str(pid), "-u", "hostname").strip(), (name, m["name"])
            if m["namespaces"]["net"] == os.stat("/proc/self/ns/net").st_ino:
                continue  # the node's network: its interfaces come and go with other pods of this machine
            assert set(d["net"]["interfaces"]) == ip_links(pid), (name, m["name"])
            want = ip_addresses(pid)
            ours = {(a["interface"], a["family"], f"{a['address']}/{a['prefix']}") for a in d["net"]["addresses"] if a["interface"]}
            assert ours <= want, (name, m["name"])
            # Every address ip shows is ours; those /proc does not tie to an interface are the loopback's.
            assert {a["address"] for a in d["net"]["addresses"]} == {w[2].split("/")[0] for w in want}, (name, m["name"])
            assert all(a["interface"] or a["address"].startswith("127.") for a in d["net"]["addresses"])
            assert d["uts"]["hostname"] != ""
    demo = details_json(ctrd, "namespace-demo")
    assert {m["details"]["uts"]["hostname"] for m in running(demo)} == {"namespace-demo"}
    eth0 = [a for a in running(demo)[0]["details"]["net"]["addresses"] if a["interface"] == "eth0" and a["family"] == "inet"]
    assert len(eth0) == 1
    assert demo["sharing"]["net"]["evidence"] == f"all running members: same IP {eth0[0]['address']} on eth0 (interfaces lo, eth0)"
    assert demo["sharing"]["uts"]["evidence"] == "all running members: same hostname namespace-demo"
    hostnet = details_json(ctrd, "hostnet")
    assert {m["details"]["uts"]["hostname"] for m in running(hostnet)} == {os.uname().nodename}
    assert "the node's uts namespace" in hostnet["sharing"]["uts"]["evidence"]


def test_mnt_user_cgroup_pid_details_match_the_kernel(ctrd):
    for name in ctrd.pods:
        data = details_json(ctrd, name)
        for m in running(data):
            d, pid = m["details"], m["pid"]
            tree = json.loads(sh("findmnt", "-N", str(pid), "-J", "-o", "TARGET,FSTYPE,SOURCE,MAJ:MIN"))["filesystems"][0]
            assert tree["target"] == "/" and d["mnt"]["root"]["fstype"] == tree["fstype"], (name, m["name"])
            assert d["mnt"]["root"]["device"] == tree["maj:min"]
            assert d["user"]["uid"] == os.stat(f"/proc/{pid}").st_uid
            want_root = 65536 if data["members"][0]["uid_map"] and data["members"][0]["uid_map"][0]["outside"] else 0
            assert d["user"]["root_uid"] == want_root, (name, m["name"])
            with open(f"/proc/{pid}/cgroup") as f:
                assert d["cgroup"]["path"] in f.read()
            assert d["cgroup"]["cpu_max"] and d["cgroup"]["memory_max"], d["cgroup"]
            if m["namespaces"]["pid"] != os.stat("/proc/self/ns/pid").st_ino:
                # The container's own ps, in its pid and mount namespaces, lists what the member sees.
                ps = sh("nsenter", "-t", str(pid), "-p", "-m", "ps", "-o", "pid,comm").splitlines()[1:]
                seen = {(int(line.split()[0]), line.split()[1]) for line in ps if "ps" not in line.split()[1:]}
                ours = {(p["ns_pid"], p["comm"]) for p in d["pid"]["processes"]}
                assert d["pid"]["nprocs"] == len(seen) and ours == seen, (name, m["name"], seen, ours)
    demo = details_json(ctrd, "namespace-demo")
    assert "root in the container is uid 0 on the node" in demo["sharing"]["user"]["evidence"]
    # The runtime's files bind-mounted from the sandbox's directory into both containers.
    assert "web, sidecar mount the same volume at /etc/hostname" in demo["sharing"]["mnt"]["evidence"]
    shared = details_json(ctrd, "shared-pid-demo")
    # the sandbox's process as pid 1, and the sleep of app and of debug
    assert re.fullmatch(r"all running members: same 3 processes: \S+ \(1\), sleep \(\d+\), sleep \(\d+\)",
                        shared["sharing"]["pid"]["evidence"]), shared["sharing"]["pid"]["evidence"]
    host = details_json(ctrd, "hostpid-ipc")
    assert "the node's pid namespace" in host["sharing"]["pid"]["evidence"]


def test_cgroup_limits_are_the_cgroupfs(ctrd):
    data = details_json(ctrd, "namespace-demo")
    web = next(m for m in data["members"] if m["name"] == "web")
    cg = web["details"]["cgroup"]
    if cg["version"] == 2:
        d = os.path.join("/sys/fs/cgroup", cg["path"].lstrip("/"))
        files = {os.path.join(d, "cpu.max"): "50000 100000", os.path.join(d, "memory.max"): "268435456"}
    else:
        with open(f"/proc/{web['pid']}/cgroup") as f:
            _h, controllers, cpu = next(line.strip().split(":", 2) for line in f if "cpu" in line.split(":")[1].split(","))
        d = os.path.join("/sys/fs/cgroup", controllers, cpu.lstrip("/"))
        files = {os.path.join(d, "cpu.cfs_quota_us"): "50000",
                 os.path.join("/sys/fs/cgroup/memory", cg["path"].lstrip("/"), "memory.limit_in_bytes"): "268435456"}
    old = {}
    for path, value in files.items():
        old[path] = open(path).read().strip()
        with open(path, "w") as f:
            f.write(value)
    try:
        cg = next(m for m in details_json(ctrd, "namespace-demo")["members"] if m["name"] == "web")["details"]["cgroup"]
        assert cg["cpu_max"] == "50000 100000" and cg["memory_max"] == "268435456" and not cg["error"], cg
    finally:
        for path, value in old.items():
            with open(path, "w") as f:
                f.write("-1" if value.startswith("-") else value)


def test_sysv_objects_are_seen_by_the_members_that_share_ipc(ctrd):
    demo = details_json(ctrd, "namespace-demo")
    web = next(m for m in demo["members"] if m["name"] == "web")
    ipc = f"--ipc=/proc/{web['pid']}/ns/ipc"
    made = sh("nsenter", ipc, "ipcmk", "-M", "65536")
    shmid = int(re.search(r"(\d+)\s*$", made.strip()).group(1))
    semid = int(re.search(r"(\d+)\s*$", sh("nsenter", ipc, "ipcmk", "-S", "2").strip()).group(1))
    try:
        demo = details_json(ctrd, "namespace-demo")
        for m in running(demo):
            objects = {(o["kind"], o["id"], o["size"]) for o in m["details"]["ipc"]["objects"]}
            assert ("shm", shmid, 65536) in objects and ("sem", semid, 2) in objects, (m["name"], objects)
        assert demo["sharing"]["ipc"]["evidence"].startswith("all running members: same System V objects: 1 shared memory segment")
        assert "65536 bytes" in demo["sharing"]["ipc"]["evidence"]
        # What ipcs says inside the namespace.
        ipcs = sh("nsenter", ipc, "ipcs", "-m")
        assert str(shmid) in ipcs
        other = details_json(ctrd, "shared-pid-demo")
        for m in running(other):
            assert all(o["id"] != shmid or o["kind"] != "shm" for o in m["details"]["ipc"]["objects"])
    finally:
        sh("nsenter", ipc, "ipcrm", "-m", str(shmid), "-s", str(semid))
    # hostIPC: the node's objects.
    node_shm = int(re.search(r"(\d+)\s*$", sh("ipcmk", "-M", "4096").strip()).group(1))
    try:
        host = details_json(ctrd, "hostpid-ipc")
        for m in running(host):
            assert ("shm", node_shm) in {(o["kind"], o["id"]) for o in m["details"]["ipc"]["objects"]}
    finally:
        sh("ipcrm", "-m", str(node_shm))


def test_details_table_escapes_untrusted_hostnames(ctrd):
    data = details_json(ctrd, "with-init")
    app = next(m for m in running(data) if m["name"] == "app")
    uts = f"--uts=/proc/{app['pid']}/ns/uts"
    evil = "evil\x1b]0;owned\x07\x1b[2J"
    subprocess.run(["nsenter", uts, "python3", "-c", f"import socket; socket.sethostname({evil!r})"], check=True)
    try:
        r = run_cli("-r", ctrd.endpoint, "pod", "with-init", "-n", "lab", "--details")
        assert r.returncode == 0, r.stderr
        assert "\x1b" not in r.stdout and "\x07" not in r.stdout
        assert "hostname evil\\x1b]0;owned\\x07\\x1b[2J" in r.stdout
        assert "DETAILS" in r.stdout
        data = details_json(ctrd, "with-init")
        assert {m["details"]["uts"]["hostname"] for m in running(data)} == {evil}
    finally:
        subprocess.run(["nsenter", uts, "hostname", "with-init"], check=True)


def test_the_pod_picture_draws_the_evidence_in_its_boxes(ctrd):
    r = run_cli("-r", ctrd.endpoint, "pod", "namespace-demo", "-n", "lab", "-o", "tree", "--details")
    assert r.returncode == 0, r.stderr
    drawing = r.stdout[:r.stdout.rindex("└")]  # the boxes; the verdicts' sentences follow
    # Shared namespaces give their evidence once, in their box; each member's own mnt and pid in its box.
    assert drawing.count("hostname namespace-demo") == 1 and drawing.count(" on eth0 (interfaces lo, eth0)") == 1
    assert drawing.count("root overlay") == 3 and drawing.count("1 process: sleep (1)") == 3
    plain = run_cli("-r", ctrd.endpoint, "pod", "namespace-demo", "-n", "lab", "-o", "tree").stdout
    assert "hostname" not in plain and "eth0" not in plain


def test_without_details_nothing_changes(ctrd):
    r = run_cli("-r", ctrd.endpoint, "pod", "namespace-demo", "-n", "lab", "-o", "json")
    data = json.loads(r.stdout)
    assert all(m["details"] is None for m in data["members"])
    assert data["sharing"]["net"]["evidence"] is None
    table = run_cli("-r", ctrd.endpoint, "pod", "namespace-demo", "-n", "lab").stdout
    assert "DETAILS" not in table
    wide = run_cli("-r", ctrd.endpoint, "pod", "namespace-demo", "-n", "lab", "-o", "wide").stdout
    assert "DETAILS" in wide and "hostname namespace-demo" in wide


def test_agent_details_equal_local(ctrd):
    agent = Agent(ctrd.endpoint)
    try:
        # Pods in the node's network or pid namespace are left out: other processes of this machine come
        # and go between the two runs.
        for name in sorted(set(ctrd.pods) - {"hostnet", "hostpid-ipc"}):
            for fmt in ("json", "table"):
                args = ("pod", name, "-n", "lab", "--details", "-o", fmt)
                local = run_cli("-r", ctrd.endpoint, *args)
                remote = run_cli("--agent", agent.address, *args)
                assert local.returncode == remote.returncode == 0, (local.stderr, remote.stderr)
                assert remote.stdout == local.stdout, (name, fmt)
        assert "fresh interpreter" not in agent.logs()  # its helpers come from its fork server
    finally:
        assert agent.stop() == 0


def test_cgroup_details_on_a_unified_hierarchy(ctrd_v2):
    """On cgroup v2 (cri_env: the unified hierarchy in containerd's mount namespace) the path is the
    "0::" one, and a limit file that is missing is explained by the cgroup's controllers."""
    r = run_cli("-r", ctrd_v2.endpoint, "pod", "plain", "-n", "lab", "--details", "-o", "json", prefix=ctrd_v2.in_mount_ns())
    assert r.returncode == 0, r.stderr
    for m in running(json.loads(r.stdout)):
        cg = m["details"]["cgroup"]
        with open(f"/proc/{m['pid']}/cgroup") as f:
            assert f"0::{cg['path']}\n" in f.read() and cg["version"] == 2
        d = f"/sys/fs/cgroup{cg['path']}"
        enabled = sh(*ctrd_v2.in_mount_ns(), "cat", f"{d}/cgroup.controllers").split()
        for controller, key, file in (("cpu", "cpu_max", "cpu.max"), ("memory", "memory_max", "memory.max")):
            if controller in enabled:
                assert cg[key] == sh(*ctrd_v2.in_mount_ns(), "cat", f"{d}/{file}").split()[0], cg
            else:
                assert cg[key] == "" and f"the {controller} controller is not enabled on this cgroup" in cg["error"], cg
