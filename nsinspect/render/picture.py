"""The pod picture (``nsinspect pod NAME -o tree``): the course's diagram, drawn from what the kernel says.

The node's box holds the node's namespaces that members are in, and the pod's box.  The pod's box holds
one box per namespace that two or more members are in (its members, and the evidence they give), then one
box per member with the namespaces that are its own.  So every namespace is drawn once, and every running
member's namespace of every type is in exactly one place: the node's box, a shared box, or its own box.
Under the drawing: each type's state and the sentences the model holds (as the table prints them).

Plain box-drawing characters, or ASCII when the output cannot carry them; colour only when asked for.
Every string goes through ``safe()``; text wraps inside its box and nothing is cut: a name longer than
a line is broken across lines.  Layout only: states, reasons and evidence come from the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from rich.cells import cell_len, get_character_cell_size

from nsinspect.model import EPHEMERAL, SANDBOX, Member, NamespaceId, PodView
from nsinspect.render.text import safe, sentences

# The order the course teaches them in: what a pod shares, then what each container keeps.
ORDER: tuple[str, ...] = ("net", "ipc", "uts", "pid", "user", "mnt", "cgroup", "time")
MIN_WIDTH, MAX_WIDTH = 30, 100  # narrower is drawn at 30 (the terminal wraps); wider stays at 100
_LABEL = max(len(t) for t in ORDER)  # "cgroup": rows align their inodes after it

Seg = tuple[str, str]  # (text, style); styles: "", bold, dim, node, ok, bad
Line = list[Seg]

_ANSI = {"bold": "\x1b[1m", "dim": "\x1b[2m", "node": "\x1b[33m", "ok": "\x1b[32m", "bad": "\x1b[1;31m"}
_RESET = "\x1b[0m"


class Glyphs(NamedTuple):
    tl: str
    tr: str
    bl: str
    br: str
    h: str
    v: str
    ml: str  # a rule across a box: under a title that did not fit on the border
    mr: str
    dot: str  # between the parts of a title
    ok: str
    bad: str


UNICODE = Glyphs("┌", "┐", "└", "┘", "─", "│", "├", "┤", " · ", "✓", "✗")
ASCII = Glyphs("+", "+", "+", "+", "-", "|", "|", "|", ", ", "ok", "X")


class Place(NamedTuple):
    """One namespace of one type, and the members in it."""

    type: str
    ns: NamespaceId
    members: tuple[Member, ...]
    node: bool  # the node's own namespace of this type


def places(v: PodView) -> list[Place]:
    """Every namespace the members are in (those whose namespaces are known: the running ones), by type
    (``ORDER``), then by first member."""
    running = [m for m in v.members if m.namespaces]
    out: list[Place] = []
    for t in ORDER:
        groups: dict[NamespaceId, list[Member]] = {}
        for m in running:
            ns = m.namespaces.get(t)
            if ns is not None:
                groups.setdefault(ns, []).append(m)
        out.extend(Place(t, ns, tuple(ms), ns == v.node_namespaces.get(t)) for ns, ms in groups.items())
    return out


def member_evidence(m: Member, t: str) -> tuple[str, ...]:
    """What the kernel shows of member ``m``'s namespace of type ``t`` beyond its inode, one fact a line.

    The id maps of its user namespace, as /proc prints them; with ``--details`` (``Member.details``) the
    rest, in the rules' words (``sharing.PHRASES``): a network namespace's addresses, a UTS namespace's
    hostname, IPC objects, the root and volumes, who root is, cgroup limits, the processes a pid namespace
    holds.  Absent when the model has none."""
    from nsinspect.sharing import PHRASES

    out: list[str] = []
    if t == "user" and (m.uid_map or m.gid_map):
        out += [
            "uid_map " + (", ".join(f"{r.inside} {r.outside} {r.length}" for r in m.uid_map) or "empty"),
            "gid_map " + (", ".join(f"{r.inside} {r.outside} {r.length}" for r in m.gid_map) or "empty"),
        ]
    phrase = PHRASES.get(t)
    if m.details is not None and phrase is not None:
        out.append(phrase(m.details))
    return tuple(out)


def place_evidence(p: Place) -> list[str]:
    """The members' evidence of one namespace: once when they all give the same, else member by member."""
    each = [(m, member_evidence(m, p.type)) for m in p.members]
    if len({ev for _, ev in each}) == 1:
        return list(each[0][1])
    return [f"{m.name}: {line}" for m, ev in each for line in ev]


class Pen:
    """Turns untrusted text into segments, and segments into lines of a given width."""

    def __init__(self, g: Glyphs, ascii_only: bool) -> None:
        self.g = g
        self.ascii_only = ascii_only

    def t(self, s: object, style: str = "") -> Seg:
        text = safe(str(s))
        if self.ascii_only and not text.isascii():
            text = text.encode("ascii", "backslashreplace").decode("ascii")
        return (text, style)

    def words(self, s: str, style: str = "") -> list[Line]:
        return [[self.t(w, style)] for w in s.split(" ") if w]


def _len(line: Sequence[Seg]) -> int:
    return sum(len(t) if t.isascii() else cell_len(t) for t, _ in line)


def _regroup(chars: list[tuple[str, str]]) -> Line:
    line: Line = []
    for ch, style in chars:
        if line and line[-1][1] == style:
            line[-1] = (line[-1][0] + ch, style)
        else:
            line.append((ch, style))
    return line


def _split(item: Line, room: int) -> tuple[Line, Line]:
    """The head of ``item`` that fits in ``room`` cells, and the rest: cut at its last space that fits
    (the space dropped), else between characters (at least one character goes in the head)."""
    chars = [(ch, style) for text, style in item for ch in text]
    used, cut = 0, len(chars)
    for i, (ch, _) in enumerate(chars):
        used += get_character_cell_size(ch)
        if used > room and i:
            cut = i
            break
    if cut == len(chars):
        return item, []
    space = next((j for j in range(cut, 0, -1) if chars[j][0] == " "), None)
    if space is not None:
        return _regroup(chars[:space]), _regroup(chars[space + 1:])
    return _regroup(chars[:cut]), _regroup(chars[cut:])


def wrap(items: Iterable[Line], width: int, sep: str = " ", indent: int = 0, first: Line | None = None) -> list[Line]:
    """``items`` joined by ``sep`` on lines of at most ``width`` cells (after ``first``, when given), broken
    between items, and inside an item only when it is wider than a line; lines after the first start with
    ``indent`` spaces."""
    indent = indent if indent <= width // 3 else 2  # a hanging indent that would eat the line: a small one
    pad: Line = [(" " * indent, "")] if indent else []
    lines: list[Line] = []
    cur: Line = list(first or [])
    used = _len(cur)
    bare = not cur  # nothing on the line yet but its indent
    joined = False  # an item is on this line: the next one needs sep
    for item in items:
        gap = len(sep) if joined else 0
        if not bare and used + gap + _len(item) > width:
            if joined and sep == ", " and used < width:
                cur.append((",", ""))  # a list broken across lines keeps its commas
            lines.append(cur)
            cur, used, bare, joined, gap = list(pad), indent, True, False, 0
        if gap:
            cur.append((sep, ""))
            used += gap
        rest = item
        while rest:
            head, rest = _split(rest, width - used)
            cur.extend(head)
            used += _len(head)
            if rest:
                lines.append(cur)
                cur, used = list(pad), indent
        bare, joined = False, True
    if not bare or not lines:
        lines.append(cur)
    return lines


def box(pen: Pen, title: list[Line], body: list[Line], width: int) -> list[Line]:
    """A box ``width`` cells wide: the title's parts on its top border (or, when they do not fit, as its
    first lines), then the body lines, each already at most ``width - 4`` cells."""
    g = pen.g
    inner = width - 4
    joined: Line = []
    for part in title:
        joined.extend([(g.dot, ""), *part] if joined else part)
    if _len(joined) <= width - 6:
        top: Line = [(g.tl + g.h + " ", ""), *joined, (" " + g.h * (width - 5 - _len(joined)) + g.tr, "")]
    else:
        top = [(g.tl + g.h * (width - 2) + g.tr, "")]
    out = [top]
    if len(top) == 1:
        for line in wrap(title, inner, sep=g.dot):
            out.append(_side(g, line, inner))
        out.append([(g.ml + g.h * (width - 2) + g.mr, "")])
    for line in body:
        out.append(_side(g, line, inner))
    out.append([(g.bl + g.h * (width - 2) + g.br, "")])
    return out


def _side(g: Glyphs, line: Line, inner: int) -> Line:
    return [(g.v + " ", ""), *line, (" " * (inner - _len(line)) + " " + g.v, "")]


def _row(pen: Pen, p: Place, width: int, holders: list[Line] | None = None) -> list[Line]:
    """``TYPE  INODE`` (and who is in it), then its evidence, indented."""
    label: Line = [pen.t(p.type.ljust(_LABEL) + " ", "bold"), pen.t(p.ns.ino, "node" if p.node else "")]
    lines = wrap(holders or [], width, sep=", ", indent=_LABEL + 13, first=[*label, ("  ", "")] if holders else label)
    for fact in place_evidence(p):
        lines.extend(wrap(pen.words(fact, "dim"), width, indent=4, first=[("  ", "")]))  # under its row
    return lines


def _names(pen: Pen, members: Sequence[Member]) -> list[Line]:
    return [[pen.t(m.name), *([pen.t(" (sandbox)", "dim")] if m.role == SANDBOX else [])] for m in members]


def _member_title(pen: Pen, m: Member, members: Sequence[Member]) -> list[Line]:
    title = [[pen.t(m.name, "bold")], [pen.t(m.role + ("/sidecar" if m.sidecar else ""))]]
    if m.role == EPHEMERAL and m.target_id:
        target = next((o.name for o in members if o.id == m.target_id), m.target_id[:13])
        title.append([pen.t(f"targets {target}")])
    title.append([pen.t(f"pid {m.pid}")] if m.pid is not None else [pen.t(m.state, "dim")])
    return title


def _member_box(pen: Pen, v: PodView, m: Member, all_places: list[Place], width: int) -> list[Line]:
    inner = width - 4
    if not m.namespaces:
        body = wrap(pen.words(f"{m.state}, no process: no namespaces to read", "dim"), inner)
        return box(pen, _member_title(pen, m, v.members), body, width)
    body = []
    shared, node = [], []
    for p in all_places:
        if m not in p.members:
            continue
        if p.node:
            node.append(p.type)
        elif len(p.members) > 1:
            shared.append(p.type)
        else:
            body.extend(_row(pen, p, inner))
    also: list[Line] = []
    if shared:
        also.append([pen.t("shared: ", "dim"), pen.t(" ".join(shared))])
    if node:
        also.append([pen.t("node's: ", "dim"), pen.t(" ".join(node), "node")])
    if not body:
        body.append([pen.t("no namespace of its own", "dim")])
    body.extend(wrap(also, inner, sep=pen.g.dot))
    return box(pen, _member_title(pen, m, v.members), body, width)


def _pod_box(pen: Pen, v: PodView, all_places: list[Place], width: int) -> list[Line]:
    inner = width - 4
    body: list[Line] = []
    for p in all_places:
        if p.node or len(p.members) < 2:
            continue
        title = [[pen.t(p.type, "bold"), pen.t(" "), pen.t(p.ns.ino)]]
        lines = wrap(_names(pen, p.members), inner - 4, sep=", ")
        for fact in place_evidence(p):
            lines.extend(wrap(pen.words(fact, "dim"), inner - 4, indent=4, first=[("  ", "")]))
        body.extend(box(pen, title, lines, inner))
    for m in v.members:
        body.extend(_member_box(pen, v, m, all_places, inner))
    if not v.members:
        body.append([pen.t("no members", "dim")])
    title = [[pen.t("POD ", "bold"), pen.t(f"{v.pod.namespace}/{v.pod.name}")]]
    return box(pen, title, body, width)


def _node_box(pen: Pen, v: PodView, all_places: list[Place], width: int) -> list[Line]:
    inner = width - 4
    placed = [m for m in v.members if m.namespaces]
    body: list[Line] = []
    mine = [p for p in all_places if p.node]
    if mine:
        body.extend(wrap(pen.words("the node's own namespaces, with the members in them:", "dim"), inner))
    elif placed:
        body.extend(wrap(pen.words("no member is in a namespace of the node", "dim"), inner))
    for p in mine:
        every = "all running members" if all(m.running for m in placed) else "all members with namespaces"
        holders = [[pen.t(every, "dim")]] if len(p.members) == len(placed) else _names(pen, p.members)
        body.extend(_row(pen, p, inner, holders))
    body.extend(_pod_box(pen, v, all_places, inner))
    title = [[pen.t("NODE ", "bold"), pen.t(v.pod.node or "?")]]
    if v.runtime:
        title.append([pen.t(v.runtime)])
    return box(pen, title, body, width)


def _under(pen: Pen, v: PodView, width: int) -> list[Line]:
    """Each type's state (with its mark), the model's sentences, and the notes."""
    g = pen.g
    items: list[Line] = []
    for t in ORDER:
        s = v.sharing.get(t)
        if s is None:
            continue
        item: Line = [pen.t(f"{t} ", "bold"), pen.t(s.actual or "-")]
        if s.actual is not None:
            item.append(pen.t(" " + (g.ok if s.ok else g.bad), "ok" if s.ok else "bad"))
        items.append(item)
    lines = wrap(items, width, sep="   ")
    for t, text, bad in sentences(v):
        lines.extend(wrap(pen.words(text, "bad" if bad else ""), width, indent=2, first=[pen.t(f"{t}: ", "bold")]))
    for note in v.notes:
        lines.extend(wrap(pen.words(note, "dim"), width, indent=2, first=[pen.t("note: ", "dim")]))
    return lines


def picture(v: PodView, width: int | None = None, ascii_only: bool = False, color: bool = False) -> str:
    """The pod's picture, ``width`` cells wide (80 when not given; kept within 30..100)."""
    width = max(MIN_WIDTH, min(MAX_WIDTH, width or 80))
    pen = Pen(ASCII if ascii_only else UNICODE, ascii_only)
    all_places = places(v)
    lines = _node_box(pen, v, all_places, width) + _under(pen, v, width)
    out = []
    for line in lines:
        if color:
            text = "".join(_ANSI[style] + s + _RESET if style and s.strip() else s for s, style in line)
        else:
            text = "".join(s for s, _ in line)
        out.append(text.rstrip())
    return "\n".join(out) + "\n"
