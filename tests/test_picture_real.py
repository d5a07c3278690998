"""The pod picture of the course's pods on the real containerd: snapshots with the inodes, pids, node name
and runtime version replaced (so a changed drawing fails with a readable diff), and the drawing checked
against the kernel.  The agent's picture is compared with local mode's in test_agent_real.

A snapshot is tests/snapshots/picture/containerd-<ID>/<POD>[.<variant>].txt; after an intended change of
the drawing, rewrite them with NSINSPECT_UPDATE_SNAPSHOTS=1 and review the diff.
"""

from __future__ import annotations

import difflib
import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from helpers import node_truth, read_pty, run_cli, truth

pytestmark = pytest.mark.runtime

SNAPSHOTS = Path(__file__).parent / "snapshots" / "picture"
COURSE_PODS = ("namespace-demo", "shared-pid-demo", "hostnet", "hostpid-ipc", "with-init", "debugged", "userns-demo")
# Each pod at 80 columns; two of them also narrow, in ASCII (a terminal whose locale is not UTF-8).
VARIANTS = [(pod, 80, False) for pod in COURSE_PODS] + [("namespace-demo", 40, True), ("debugged", 48, True)]


def runtime_id(request) -> str:
    return request.node.callspec.params["ctrd"]


def draw(ctrd, pod: str, width: int, ascii_only: bool) -> tuple[str, dict]:
    """The picture as the CLI prints it, and the pod's JSON taken right after (same pids)."""
    env = {"COLUMNS": str(width), "NO_COLOR": "1", "PYTHONIOENCODING": "ascii" if ascii_only else "utf-8"}
    r = run_cli("-r", ctrd.endpoint, "pod", pod, "-n", "lab", "-o", "tree", env=env)
    assert r.returncode == 0, r.stderr
    data = json.loads(run_cli("-r", ctrd.endpoint, "pod", pod, "-n", "lab", "-o", "json").stdout)
    return r.stdout, data


def _swap(line: str, old: str, new: str) -> str:
    """``old`` -> ``new`` in a drawn line, keeping its width: the run of border or padding just before
    the next right border absorbs the difference."""
    i = line.index(old)
    line = line[:i] + new + line[i + len(old):]
    delta = len(new) - len(old)
    m = re.compile(r"([─ -])\1*(?=[┐│+|])").search(line, i + len(new))
    if delta and m:
        run = m.group()
        assert len(run) > delta, (line, old, new)
        line = line[:m.start()] + run[0] * (len(run) - delta) + line[m.end():]
    return line


def normalize(drawing: str, data: dict, rid: str) -> str:
    """Inodes -> [node] (the node's, by the kernel) or [ns a], [ns b]... by first appearance (same width);
    pids -> P, the node's name -> NODE, the runtime's version -> the build's id."""
    node = set(node_truth().values())
    known = set(node)
    for m in data["members"]:
        if m["pid"] is not None:
            known |= {ino for ino in truth(m["pid"]).values() if ino is not None}
    letters: dict[str, str] = {}

    def inode(match: re.Match[str]) -> str:
        ino = int(match.group())
        if ino not in known:
            return match.group()  # not a namespace the kernel shows for this pod: left as drawn, so it fails
        if ino in node:
            return "[node]".ljust(10)
        return letters.setdefault(match.group(), f"[ns {chr(ord('a') + len(letters))}]".ljust(10))

    out = []
    for line in drawing.split("\n"):
        line = re.sub(r"\b\d{10}\b", inode, line)
        for pid in re.findall(r"pid (\d+)", line):
            line = _swap(line, f"pid {pid}", "pid P")
        if data["pod"]["node"] and f"NODE {data['pod']['node']}" in line:
            line = _swap(line, f"NODE {data['pod']['node']}", "NODE N")
        if data["runtime"] and data["runtime"] in line:
            line = _swap(line, data["runtime"], f"containerd {rid}")
        out.append(line)
    return "\n".join(out)


@pytest.mark.parametrize("pod, width, ascii_only", VARIANTS, ids=[f"{p}-{w}{'-ascii' if a else ''}" for p, w, a in VARIANTS])
def test_course_pod_pictures_match_their_snapshots(ctrd, request, pod, width, ascii_only):
    rid = runtime_id(request)
    drawing, data = draw(ctrd, pod, width, ascii_only)
    lines = drawing.rstrip("\n").split("\n")
    assert all(len(line) <= width for line in lines), drawing
    if ascii_only:
        assert drawing.isascii()
    got = normalize(drawing, data, rid)
    path = SNAPSHOTS / f"containerd-{rid}" / (pod + ("" if width == 80 else f".{width}") + (".ascii" if ascii_only else "") + ".txt")
    if os.environ.get("NSINSPECT_UPDATE_SNAPSHOTS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got)
    if not path.exists():
        pytest.fail(f"no snapshot {path.relative_to(Path(__file__).parent)}; write it with NSINSPECT_UPDATE_SNAPSHOTS=1 and review it")
    want = path.read_text()
    if got != want:
        diff = "\n".join(difflib.unified_diff(want.split("\n"), got.split("\n"), "snapshot", "drawn now", lineterm=""))
        pytest.fail(f"the picture of {pod} changed ({path.name}):\n{diff}", pytrace=False)


def test_the_picture_draws_what_the_kernel_says(ctrd):
    """Each member's box lists its own namespaces as readlink shows them; each shared box the members the
    kernel puts in that namespace; the node's rows the node's namespaces; every namespace drawn once."""
    node = node_truth()
    for pod in COURSE_PODS:
        drawing, data = draw(ctrd, pod, 80, False)
        members = {m["name"]: truth(m["pid"]) for m in data["members"] if m["pid"] is not None}
        holders: dict[tuple[str, int], set[str]] = {}
        for name, links in members.items():
            for t, ino in links.items():
                holders.setdefault((t, ino), set()).add(name)
        drawn = [n for n in re.findall(r"\b\d{10}\b", drawing) if n != "4294967295"]  # not the node's id map's length
        assert len(drawn) == len(set(drawn)) == len(holders), (pod, drawing)
        # The node's rows.
        node_part = drawing[:drawing.index("POD lab/")]
        for t, ino in re.findall(r"│ (\w+) +(\d{10})", node_part):
            assert node[t] == int(ino), (pod, t)
        # Shared boxes: "┌─ TYPE INODE ─┐" then the members' names (the sandbox marked) up to its bottom.
        for t, ino, body in re.findall(r"┌─ (\w+) (\d{10}) ─+┐ │ │\n(.*?)└", drawing, re.S):
            listed = " ".join(line[6:] for line in body.split("\n") if line[6:7].strip())  # evidence lines are indented
            names = {n.split(" │")[0].strip().removesuffix(" (sandbox)") for n in listed.split(",")}
            assert names == holders[(t, int(ino))], (pod, t, names)
        # Member boxes: "┌─ NAME · ROLE ... · pid N ─┐" then "TYPE INODE" rows of its own namespaces.
        for name, pid, body in re.findall(r"┌─ (\S+) · [^\n]*?pid (\d+) ─+┐ │ │\n(.*?)└", drawing, re.S):
            links = truth(int(pid))
            assert links == members[name], (pod, name)
            own = dict(re.findall(r"│ (\w+) +(\d{10})", body))
            assert own and all(links[t] == int(ino) and holders[(t, int(ino))] == {name} for t, ino in own.items()), (pod, name)


@pytest.mark.parametrize("no_color", [False, True])
def test_on_a_terminal_colour_unless_no_color(ctrd, no_color):
    """On a terminal the picture is coloured (the node's inodes, the marks), and NO_COLOR turns that off;
    the terminal's width is the drawing's."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 64, 0, 0))  # 64 columns
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "KUBECONFIG")}
    env |= {"NO_COLOR": "1"} if no_color else {}
    proc = subprocess.Popen([sys.executable, "-m", "nsinspect", "-r", ctrd.endpoint, "pod", "hostnet", "-n", "lab", "-o", "tree"],
                            stdout=secondary, stderr=subprocess.PIPE, env=env)
    os.close(secondary)
    out = read_pty(primary)
    assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    os.close(primary)
    text = out.decode().replace("\r\n", "\n")
    assert ("\x1b[" in text) is not no_color
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert max(len(line) for line in plain.split("\n")) == 64
