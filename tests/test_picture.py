"""The pod picture (``-o tree``) on hand-built PodViews: every namespace drawn once and every running
member's namespace in one place, widths from 100 down to 30 (boxes closed and aligned, nothing cut),
long and wide names, escaping, ASCII and colour, exited members and members without a process, the
evidence slot, and the refusal of ``-o tree`` for the other commands."""

from __future__ import annotations

import re

import pytest
from helpers import NS_TYPES, assert_one_sentence_error, run_cli
from rich.cells import cell_len

from nsinspect.model import IdRange, Member, NamespaceId, PodInfo, PodView, Process, ProcessId, Verdict
from nsinspect.render import render
from nsinspect.render.picture import ORDER, picture

NODE = {t: NamespaceId(4, 4026531830 + i) for i, t in enumerate(NS_TYPES)}
POD_MAP = (IdRange(0, 65536, 65536),)


def ns(ino: int) -> NamespaceId:
    return NamespaceId(4, ino)


def running(name: str, role: str, pid: int, namespaces: dict[str, NamespaceId], **kw) -> Member:
    proc = Process(ProcessId(pid, 100), 1, 0, "root", "sleep", "sleep 3600")
    return Member(name, role, f"id-{name}", "running", proc, namespaces, **kw)


def view(members: list[Member], sharing: dict[str, Verdict] | None = None, **pod) -> PodView:
    info = PodInfo(pod.pop("namespace", "lab"), pod.pop("name", "demo"), "uid-1", "id-demo", pod.pop("node", "vm"))
    sharing = sharing or {t: Verdict("shared", "shared") for t in NS_TYPES}
    return PodView(info, members, sharing, NODE, runtime=pod.pop("runtime", "containerd 2.1.9"), **pod)


def namespace_demo() -> PodView:
    """A pause and two containers: net/ipc/uts shared, mnt and pid each its own, the rest the node's."""
    pod = {"net": ns(4026532001), "ipc": ns(4026532002), "uts": ns(4026532003)}
    node = {t: NODE[t] for t in ("cgroup", "time", "user")}
    members = [
        running("demo", "sandbox", 10, {**node, **pod, "mnt": ns(4026532010), "pid": ns(4026532011)}),
        running("web", "app", 20, {**node, **pod, "mnt": ns(4026532020), "pid": ns(4026532021)}),
        running("sidecar", "app", 30, {**node, **pod, "mnt": ns(4026532030), "pid": ns(4026532031)}),
    ]
    sharing = {t: Verdict("shared", "shared") for t in ("net", "ipc", "uts")}
    sharing |= {t: Verdict("private", "private") for t in ("mnt", "pid")}
    sharing |= {t: Verdict("host", "host", reason=f"{t} is the node's") for t in ("cgroup", "time", "user")}
    return view(members, sharing)


def inner_text(drawing: str) -> str:
    """The drawing's words without its borders, runs of spaces made one."""
    text = re.sub(r"[┌┐└┘─│├┤]", " ", drawing)
    return re.sub(r"\s+", " ", text)


def check_shape(drawing: str, width: int) -> None:
    """Every line fits; every boxed line is exactly ``width`` cells and each box's right borders line up."""
    lines = drawing.rstrip("\n").split("\n")
    boxed = [line for line in lines if line and line[0] in "┌│└+|"]
    assert boxed, drawing
    for line in lines:
        assert cell_len(line) <= width, (width, line)
    for line in boxed:
        assert cell_len(line) == width, (width, line)
    assert boxed[0][0] in "┌+" and boxed[-1][0] in "└+", drawing
    # Every box that opens closes, and boxes nest: count openings and closings per depth.
    opened = sum(line.count("┐") + line.count("┤") for line in boxed)
    closed = sum(line.count("┘") for line in boxed)
    rules = sum(line.count("┤") for line in boxed)
    assert opened - rules == closed, drawing


def test_every_namespace_is_drawn_once_and_every_member_type_is_placed():
    v = namespace_demo()
    drawing = picture(v, 80)
    for m in v.members:
        for t, n in m.namespaces.items():
            assert str(n.ino) in drawing, (m.name, t)
    inos = re.findall(r"\b40265\d{5}\b", drawing)
    assert len(inos) == len(set(inos)) == len({n for m in v.members for n in m.namespaces.values()})
    # The node's box holds the node's namespaces; each shared box names its members; each member box its own.
    node_part, pod_part = drawing.split("POD lab/demo")
    for t in ("cgroup", "time", "user"):
        assert re.search(rf"│ {t}\s+{NODE[t].ino}  all running members", node_part), t
    for t in ("net", "ipc", "uts"):
        assert re.search(rf"┌─ {t} {v.members[0].namespaces[t].ino} ─+┐ │ │\n│ │ │ demo \(sandbox\), web, sidecar ", pod_part), t
    web = pod_part[pod_part.index("web · app · pid 20"):pod_part.index("sidecar · app · pid 30")]
    assert "mnt    4026532020" in web and "pid    4026532021" in web
    assert "shared: net ipc uts · node's: user cgroup time" in web
    assert "net shared ✓   ipc shared ✓   uts shared ✓   pid private ✓" in drawing
    assert "cgroup: cgroup is the node's" in drawing


@pytest.mark.parametrize("width", [200, 100, 80, 60, 40, 30, 12])
def test_widths_keep_boxes_closed_and_aligned(width):
    v = namespace_demo()
    drawing = picture(v, width)
    drawn = max(30, min(100, width))
    check_shape(drawing, drawn)
    words = inner_text(drawing)
    for m in v.members:  # nothing cut: every name and inode is there, whole (a line break may split a word)
        assert m.name in words.replace(" ", "") or m.name in words
        for n in m.namespaces.values():
            assert str(n.ino) in words


def test_long_names_wrap_and_nothing_is_lost():
    long = "a-very-long-container-name-" * 5 + "end"
    v = namespace_demo()
    v = v._replace(members=[v.members[0], v.members[1]._replace(name=long), v.members[2]],
                   pod=v.pod._replace(name="pod-" + "x" * 90))
    for width in (80, 40):
        drawing = picture(v, width)
        check_shape(drawing, width)
        joined = re.sub(r"[┌┐└┘─│├┤ \n]", "", drawing)
        assert long in joined and "pod-" + "x" * 90 in joined
        assert drawing.count("a-very-long") == 4 * 5 or width < 80  # in the member's box and three shared boxes


def test_wide_characters_are_measured_in_cells():
    v = namespace_demo()
    v = v._replace(members=[v.members[0], v.members[1]._replace(name="ウェブ" * 12), v.members[2]])
    for width in (80, 41, 30):
        check_shape(picture(v, width), max(30, width))


def test_untrusted_strings_are_escaped():
    v = namespace_demo()
    evil = "web\x1b[31mred\x07\u202egnp.exe\r"
    v = v._replace(members=[v.members[0], v.members[1]._replace(name=evil), v.members[2]],
                   pod=v.pod._replace(name="p\x1b]0;title\x07", node="n\x1b[2J"), runtime="rt\x1b[5m",
                   notes=("note\x1b[1m",))
    for color in (False, True):
        drawing = picture(v, 80, color=color)
        assert "\x07" not in drawing and "\r" not in drawing and "\u202e" not in drawing
        assert "web\\x1b[31mred\\x07\\u202egnp.exe\\x0d" in drawing
        assert "p\\x1b]0;title\\x07" in drawing and "n\\x1b[2J" in drawing and "rt\\x1b[5m" in drawing
        assert "note\\x1b[1m" in drawing
        if not color:
            assert "\x1b" not in drawing


def test_ascii_when_the_output_cannot_carry_box_drawing():
    v = namespace_demo()
    v = v._replace(members=[v.members[0], v.members[1]._replace(name="wéb"), v.members[2]])
    drawing = picture(v, 80, ascii_only=True)
    assert drawing.isascii()
    assert "+- NODE vm, containerd 2.1.9 ---" in drawing and "| | +- w\\xe9b, app, pid 20 ---" in drawing
    assert "net shared ok" in drawing
    lines = drawing.split("\n")
    assert all(len(line) == 80 for line in lines if line and line[0] in "+|")


def test_colour_only_when_asked_and_nothing_else_changes():
    v = namespace_demo()
    plain, coloured = picture(v, 80), picture(v, 80, color=True)
    assert "\x1b[" not in plain and "\x1b[" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain
    assert f"\x1b[33m{NODE['user'].ino}\x1b[0m" in coloured  # the node's inodes stand out


def test_exited_members_and_members_without_a_process():
    v = namespace_demo()
    exited = Member("setup", "init", "id-setup", "exited")
    lost = Member("app2", "app", "id-app2", "running")  # the runtime says running, no process was found
    created = Member("late", "app", "id-late", "created")
    v = v._replace(members=[*v.members, exited, lost, created])
    drawing = picture(v, 80)
    check_shape(drawing, 80)
    for name, state in (("setup", "init · exited"), ("app2", "app · running"), ("late", "app · created")):
        block = drawing[drawing.index(f"┌─ {name} · "):]
        block = block[:block.index("└")]
        assert state in block and f"{state.split(' · ')[1]}, no process: no namespaces to read" in block
    assert "all running members" in drawing  # counted over the running ones


def test_a_pod_with_one_member_and_none():
    v = namespace_demo()
    one = v._replace(members=v.members[:1])
    drawing = picture(one, 80)
    assert "┌─ net" not in drawing  # one member shares nothing: its namespaces are in its own box
    assert "net    4026532001" in drawing
    none = v._replace(members=[], sharing={t: Verdict(None, "shared") for t in NS_TYPES})
    drawing = picture(none, 80)
    check_shape(drawing, 80)
    assert "no members" in drawing and "net -" in drawing and "✓" not in drawing


def test_mixed_pid_and_a_member_in_the_node_namespace():
    v = namespace_demo()
    web = v.members[1]._replace(namespaces=dict(v.members[1].namespaces, pid=ns(4026532031)))  # joins sidecar's
    sidecar = v.members[2]
    pause = v.members[0]._replace(namespaces=dict(v.members[0].namespaces, net=NODE["net"]))  # the node's network
    sharing = dict(v.sharing, pid=Verdict("mixed", "private", disagreement="the runtime was asked for private, but the kernel says mixed"),
                   net=Verdict("mixed", "shared", disagreement="net: the kernel says mixed"))
    drawing = picture(v._replace(members=[pause, web, sidecar], sharing=sharing), 80)
    assert re.search(r"┌─ pid 4026532031 ─+┐ │ │\n│ │ │ web, sidecar ", drawing)
    assert re.search(rf"│ net    {NODE['net'].ino}  demo \(sandbox\)", drawing)
    assert "pid mixed ✗" in drawing and "pid: the runtime was asked for private, but the kernel says mixed" in drawing
    assert drawing.count(str(ns(4026532031).ino)) == 1


def test_evidence_slots_in_where_present():
    v = namespace_demo()
    own = ns(4026532050)
    members = [m._replace(namespaces=dict(m.namespaces, user=own), uid_map=POD_MAP, gid_map=POD_MAP) for m in v.members]
    sharing = dict(v.sharing, user=Verdict("shared", "shared", evidence="root in the pod is uid 65536 on the node"))
    drawing = picture(v._replace(members=members, sharing=sharing), 80)
    box = drawing[drawing.index("┌─ user 4026532050"):]
    box = box[:box.index("└")]
    assert box.count("uid_map 0 65536 65536") == 1 and box.count("gid_map 0 65536 65536") == 1  # the same: once
    assert "user: root in the pod is uid 65536 on the node" in drawing
    # Maps that differ are given member by member.
    members[2] = members[2]._replace(uid_map=(IdRange(0, 131072, 65536),))
    drawing = picture(v._replace(members=members, sharing=sharing), 80)
    assert "demo: uid_map 0 65536 65536" in drawing and "sidecar: uid_map 0 131072 65536" in drawing
    # No evidence: no line.
    bare = [m._replace(uid_map=(), gid_map=()) for m in members]
    assert "uid_map" not in picture(v._replace(members=bare, sharing=sharing), 80)


def test_types_in_the_course_order():
    assert sorted(ORDER) == sorted(NS_TYPES)
    drawing = picture(namespace_demo(), 80)
    under = drawing[drawing.rindex("┘") + 1:]
    assert [w for w in under.split() if w in NS_TYPES][:8] == list(ORDER)


def test_render_dispatches_tree_to_pods_only():
    v = namespace_demo()
    assert render(v, "tree", width=80) == picture(v, 80)
    assert render(v, "tree", width=None) == picture(v, 80)  # not a terminal: 80 columns
    with pytest.raises(TypeError):
        render(v.pod, "tree")


@pytest.mark.parametrize("args", [("node",), ("pid", "1"), ("pods", "-A"), ("check", "x", "--expect", "net=shared")])
def test_tree_is_refused_elsewhere_in_one_sentence(args):
    r = run_cli("--local", *args, "-o", "tree")
    assert_one_sentence_error(r, 2)
    assert f"-o tree draws one pod's picture: use it with 'nsinspect pod NAME', not with '{args[0]}'" in r.stderr


def test_a_member_with_namespaces_but_no_process():
    """A sandbox whose namespaces are known without a process in them (held by a bind mount) is drawn
    with its namespaces, its state instead of a pid."""
    v = namespace_demo()
    pause = v.members[0]._replace(process=None, state="notready")
    drawing = picture(v._replace(members=[pause, *v.members[1:]]), 80)
    check_shape(drawing, 80)
    assert "┌─ demo · sandbox · notready ─" in drawing and "mnt    4026532010" in drawing
    assert re.search(r"┌─ net 4026532001 ─+┐ │ │\n│ │ │ demo \(sandbox\), web, sidecar ", drawing)
    assert "all members with namespaces" in drawing and "all running members" not in drawing
