"""Terminal tables (rich).

Untrusted text (process names, command lines, pod names, labels) goes in as ``Text``
after ``safe()``: never parsed as markup, never able to move the cursor.
On a terminal, long cells are cut with an ellipsis to fit; elsewhere nothing is cut.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from nsinspect.model import NS_TYPES, CheckView, ClusterPodsView, Member, Namespace, NodeView, PodsView, PodView, ProcessView, ScanStats
from nsinspect.render.columns import DIM, RESET, format_columns
from nsinspect.render.text import safe, sentences

_UNLIMITED = 1 << 16


def T(s: object, style: str = "") -> Text:
    """Untrusted (or any) value as inert text."""
    return Text(safe("" if s is None else str(s)), style=style)


def plain_table(*columns: str, wide_last: bool = True) -> Table:
    """An lsns-like table: bold header, no borders, last column free to take the rest."""
    t = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", expand=False)
    for i, name in enumerate(columns):
        numeric = name in ("NS", "NPROCS", "PID", "PPID", "UID")
        last = wide_last and i == len(columns) - 1
        t.add_column(name, justify="right" if numeric else "left", no_wrap=True, overflow="ellipsis", ratio=1 if last else None)
    return t


def stats_footer(s: ScanStats) -> Text | None:
    parts = []
    if s.vanished:
        parts.append(f"{s.vanished} exited during the scan")
    if s.denied:
        shown = ", ".join(map(str, s.denied[:5])) + (", ..." if len(s.denied) > 5 else "")
        advice = ("hidden even with CAP_SYS_PTRACE by a sandbox or security module" if s.as_root
                  else "run as root, with CAP_SYS_PTRACE, to see them")
        parts.append(f"{len(s.denied)} could not be read (permission denied: pid {shown}; {advice})")
    if s.fds_denied:
        parts.append(f"the open fds of {s.fds_denied} could not be read (namespaces they hold may be missing)")
    if s.fds_untyped:
        shown = ", ".join(f"inode {ino} by fd {fd} of pid {pid}" for ino, pid, fd in s.fds_untyped[:3])
        more = ", ..." if len(s.fds_untyped) > 3 else ""
        parts.append(f"{len(s.fds_untyped)} namespaces held by open fds are of a type that could not be read ({shown}{more}; "
                     "another user's fd table, and its pid is not in our pid namespace)")
    if not parts:
        return None
    return Text(f"{s.processes} processes scanned; " + "; ".join(parts) + ".", style="dim")


def held_text(n: Namespace) -> str:
    """What a row no process is in shows in COMMAND: what holds it."""
    parts = []
    if n.mounts:
        parts.append("bind mount " + ", ".join(m.path for m in n.mounts))
    if n.fds:
        shown = ", ".join(f"fd {f.fd} of pid {f.pid}" for f in n.fds[:3])
        parts.append(shown + (f" and {len(n.fds) - 3} more fds" if len(n.fds) > 3 else ""))
    return "(" + ("; ".join(parts) or "no process: only a parent or owner of others") + ")"


def node_lines(v: NodeView, wide: bool, width: int | None, color: bool, tree: str | None = None) -> str:
    with_pods = any(n.pods for n in v.namespaces)
    cols = ["NS", "TYPE", "NPROCS", "PID"] + (["PPID"] if wide else []) + ["USER"]
    cols += ["NODE"] if wide else []
    cols += ["POD", "CONTAINER"] if with_pods or wide else []
    cols += ["PNS", "ONS", "NSFS"] if wide else []
    cols += ["COMMAND"]
    if tree:
        from nsinspect.render.tree import tree_rows

        ordered = tree_rows(v.namespaces, tree)
    else:
        ordered = [(n, "") for n in v.namespaces]
    rows = []
    for n, prefix in ordered:
        p = n.process
        ns = str(n.id.ino)
        if tree != "process":
            ns = prefix + ns
        row = [ns, n.type, str(n.nprocs), str(n.pid) if n.nprocs else ""]
        if wide:
            row.append(str(p.ppid) if p else "")
        row.append(p.user if p else "")
        if wide:
            row.append("node" if n.node else "")
        if with_pods or wide:
            row.append(",".join(f"{r.namespace}/{r.name}" for r in n.pods))
            row.append(",".join(c.name for c in n.containers))
        if wide:
            row.append(str(n.parent.ino) if n.parent else "0")
            row.append(str(n.owner.ino) if n.owner else "0")
            row.append(",".join(m.path for m in n.mounts))
        command = p.command if p else held_text(n) if not n.nprocs else "(exited)"
        row.append(prefix + command if tree == "process" else command)
        rows.append(row)
    right = [c in ("NPROCS", "PID", "PPID", "PNS", "ONS") or (c == "NS" and tree in (None, "process")) for c in cols]
    lines = format_columns(cols, rows, right, width=None if wide else width, color=color)
    footer = stats_footer(v.stats)
    if footer is not None:
        lines.append((DIM + footer.plain + RESET) if color else footer.plain)
    if v.runtime_error:
        note = "POD and CONTAINER are empty: " + safe(v.runtime_error)
        lines.append((DIM + note + RESET) if color else note)
    return "\n".join(lines) + "\n"


def process_table(v: ProcessView, wide: bool) -> RenderableType:
    p = v.process
    head = Text()
    head.append("PID ", style="bold").append(str(p.pid))
    head.append("  USER ", style="bold").append(safe(p.user))
    if wide:
        head.append("  PPID ", style="bold").append(str(p.ppid))
        head.append("  START ", style="bold").append(str(p.id.start_time))
    head.append("  COMMAND ", style="bold").append(safe(p.command))
    where = Text()
    if v.pod is not None:
        where.append("POD ", style="bold").append(safe(f"{v.pod.namespace}/{v.pod.name}"))
        if v.container is not None:
            where.append("  CONTAINER ", style="bold").append(safe(v.container.name))
            where.append(f" ({v.container.id[:13]})", style="dim")
    elif v.runtime_error:
        where.append("pod unknown: " + safe(v.runtime_error), style="dim")
    else:
        where.append("not in a pod", style="dim")
    t = plain_table("TYPE", "NS", "SCOPE", wide_last=False)
    for nstype, ns in v.namespaces.items():
        if ns is None:
            t.add_row(nstype, "-", Text("gone (zombie)", style="dim"))
            continue
        node = v.node_namespaces.get(nstype) == ns
        t.add_row(nstype, str(ns.ino), Text("node", style="yellow") if node else Text("own"))
    return Group(head, where, Text(""), t)


_TABLES: dict[type, Callable[[object, bool], RenderableType]] = {
    ProcessView: process_table,  # type: ignore[dict-item]
}


def register(view_type: type, fn: Callable[..., RenderableType]) -> None:
    _TABLES[view_type] = fn


def to_renderable(view: object, wide: bool) -> RenderableType:
    fn = _TABLES.get(type(view))
    if fn is None:
        raise TypeError(f"no table for {type(view).__name__}")
    return fn(view, wide)


def render_table(view: object, wide: bool = False, width: int | None = None, color: bool = False, tree: str | None = None) -> str:
    """Render to a string.  ``width`` is the terminal's, or None when not writing to one.

    ``tree`` (owner, parent or process): the node view drawn as ``lsns -T`` draws it."""
    if isinstance(view, NodeView):
        return node_lines(view, wide, width, color, tree)
    buf = io.StringIO()
    console = Console(
        file=buf,
        width=width or _UNLIMITED,
        force_terminal=color,
        color_system="standard" if color else None,
        markup=False,
        emoji=False,
        highlight=False,
        soft_wrap=False,
    )
    console.print(to_renderable(view, wide))
    text = buf.getvalue()
    if not width:  # not a terminal: drop the padding rich adds up to the (unlimited) width
        text = "\n".join(line.rstrip() for line in text.split("\n"))
    return text


_GROUP_STYLES = ("cyan", "magenta", "green", "blue", "bright_red", "bright_cyan")
_VERDICT_STYLE = {True: "green", False: "bold red"}


def _mark(ok: bool) -> Text:
    return Text("✓" if ok else "✗", style=_VERDICT_STYLE[ok])


def _member_header(m: Member) -> Text:
    head = Text(safe(m.name), style="bold")
    head.append(f"\n{m.role}" + ("/sidecar" if m.sidecar else ""), style="dim")
    return head


def pod_table(v: PodView, wide: bool) -> RenderableType:
    p = v.pod
    head = Text()
    head.append("POD ", style="bold").append(safe(f"{p.namespace}/{p.name}"))
    head.append("  NODE ", style="bold").append(safe(p.node))
    if v.runtime:
        head.append("  RUNTIME ", style="bold").append(safe(v.runtime))
    if wide:
        head.append("\nUID ", style="bold").append(safe(p.uid)).append("  SANDBOX ", style="bold").append(p.sandbox_id[:13])
        head.append("\nCRI ", style="bold").append(" ".join(f"{k}={val}" for k, val in sorted(p.options.items())))
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, header_style="bold")
    t.add_column("TYPE", no_wrap=True)
    for m in v.members:
        t.add_column(_member_header(m), justify="right", no_wrap=True)
    t.add_column("ACTUAL", no_wrap=True)
    t.add_column("EXPECTED", no_wrap=True)
    spec = v.spec is not None
    if spec:
        t.add_column("SPEC", no_wrap=True)
    t.add_column("", no_wrap=True)
    # A second header row: pids (or the state of members that do not run).
    cells: list[RenderableType] = [Text("pid", style="dim")]
    for m in v.members:
        cells.append(Text(str(m.pid) if m.pid else m.state, style="dim"))
    t.add_row(*cells, "", "", *([""] if spec else []), "")
    for nstype, verdict in v.sharing.items():
        node = v.node_namespaces.get(nstype)
        counts: dict[int, int] = {}
        for m in v.members:
            if nstype in m.namespaces:
                counts[m.namespaces[nstype].ino] = counts.get(m.namespaces[nstype].ino, 0) + 1
        tags = {ino: chr(ord("a") + i) for i, ino in enumerate(i for i, c in counts.items() if c > 1 and (node is None or i != node.ino))}
        row: list[RenderableType] = [nstype]
        for m in v.members:
            ns = m.namespaces.get(nstype)
            if ns is None:
                row.append(Text("-", style="dim"))
            elif node is not None and ns == node:
                row.append(Text(f"node {ns.ino}" if wide else "node", style="yellow"))
            elif ns.ino in tags:
                tag = tags[ns.ino]
                row.append(Text(f"{ns.ino} ={tag}", style=_GROUP_STYLES[(ord(tag) - 97) % len(_GROUP_STYLES)]))
            else:
                row.append(Text(str(ns.ino)))
        row.append(Text(verdict.actual or "-"))
        row.append(Text(verdict.expected or "-"))
        if spec:
            off = verdict.declared is not None and verdict.declared != verdict.expected
            row.append(Text(verdict.declared or "·", style="bold red" if off else ("" if verdict.declared else "dim")))
        row.append(_mark(verdict.ok) if verdict.actual is not None else Text(""))
        t.add_row(*row)
    legend = "=a, =b: the same namespace in several members; node: the node's own namespace."
    if spec:
        legend += "\nACTUAL: the kernel; EXPECTED: what the runtime was asked for; SPEC: the pod's spec (· says nothing)."
    parts: list[RenderableType] = [head, t, Text(legend, style="dim")]
    for nstype, sentence, bad in sentences(v):
        parts.append(Text(f"{nstype}: ", style="bold").append(safe(sentence), style="bold red" if bad else ""))
    if v.stray_count:
        parts.append(stray_lines(v))
    parts.extend(Text(f"note: {safe(n)}", style="dim") for n in v.notes)
    parts.extend(details_lines(v))
    if wide and v.lsns:
        rows = [
            [str(n.id.ino), n.type, str(n.nprocs), str(n.pid), n.process.user if n.process else "", n.process.command if n.process else "(exited)"]
            for n in v.lsns
        ]
        lines = format_columns(["NS", "TYPE", "NPROCS", "PID", "USER", "COMMAND"], rows, [True, False, True, True, False, False])
        parts.append(Text(""))
        parts.append(Text("\n".join(lines)))
    return Group(*parts)


def stray_lines(v: PodView) -> Text:
    """The members' stray processes: which types differ from their member's, and the namespace each is in."""
    rows = [
        [m.name, str(st.pid), ", ".join(f"{t} {ns.ino}" for t, ns in sorted(st.differs.items())), st.process.command]
        for m in v.members for st in m.strays
    ]
    lines = format_columns(["MEMBER", "PID", "OUTSIDE (TYPE INODE)", "COMMAND"], rows, [False, True, False, False])
    n = len(rows)
    head = Text(f"\n{n} stray process{'es' if n != 1 else ''}: in a member's cgroup, not in all of its namespaces "
                "(unshare, setns)\n", style="bold")
    return head.append("\n".join(lines))
def details_lines(v: PodView) -> list[RenderableType]:
    """Each running member's evidence, one line per type (``pod --details``), in the rules' words."""
    from nsinspect.sharing import PHRASES

    out: list[RenderableType] = []
    for m in v.members:
        if m.details is None:
            continue
        if not out:
            out.append(Text("\nDETAILS", style="bold"))
        out.append(Text(safe(m.name), style="bold").append(f" ({m.role}, pid {m.pid})", style="dim"))
        for t in NS_TYPES:
            phrase = PHRASES.get(t)
            if phrase is not None:
                out.append(Text(f"  {t:<7}", style="dim").append(safe(phrase(m.details))))
    return out


def _pod_cells(pv: PodView) -> list[RenderableType]:
    """MEMBERS, one cell per type (actual, and what it should be when it differs), OK."""
    running = sum(1 for m in pv.members if m.running)
    row: list[RenderableType] = [f"{running}/{len(pv.members)}"]
    for nstype in NS_TYPES:
        s = pv.sharing[nstype]
        want = s.declared if s.declared is not None and s.declared != s.expected else s.expected
        row.append(Text((s.actual or "-") + ("" if s.ok or s.actual is None else f"≠{want}"), style="" if s.ok else "bold red"))
    if not pv.members:
        row.append(Text("?", style="yellow"))
    else:
        row.append(_mark(pv.ok))
    return row


def _stray_column(pods: list[PodView]) -> tuple[list[str], Callable[[PodView], list[RenderableType]]]:
    """A STRAYS column (processes that left their member's namespaces) when any pod has one."""
    if not any(pv.stray_count for pv in pods):
        return [], lambda pv: []
    return ["STRAYS"], lambda pv: [Text(str(pv.stray_count), style="bold yellow" if pv.stray_count else "")]


def _stray_footer(pods: list[PodView]) -> list[RenderableType]:
    n = sum(pv.stray_count for pv in pods)
    if not n:
        return []
    return [Text(f"STRAYS: {n} process{'es' if n != 1 else ''} in a member's cgroup but not in all of its namespaces; "
                 "nsinspect pod NAME lists them", style="dim")]


def pods_table(v: PodsView, wide: bool) -> RenderableType:
    if not v.pods:
        return Text("no pods on this node", style="dim")
    head, cell = _stray_column(v.pods)
    t = plain_table("NAMESPACE", "NAME", "MEMBERS", *NS_TYPES, "OK", *head, wide_last=False)
    for pv in v.pods:
        t.add_row(T(pv.pod.namespace), T(pv.pod.name), *_pod_cells(pv), *cell(pv))
    footer = _stray_footer(v.pods)
    return Group(t, *footer) if footer else t


def cluster_pods_table(v: ClusterPodsView, wide: bool) -> RenderableType:
    where = f"namespace {safe(v.namespace)}" if v.namespace else "any namespace"
    if not v.pods:
        return Text(f"no pods in {where}", style="dim")
    head, cell = _stray_column(v.pods)
    t = plain_table("NAMESPACE", "NAME", "NODE", "MEMBERS", *NS_TYPES, "OK", *head, *(["NOTE"] if wide else []), wide_last=wide)
    for pv in v.pods:
        note = [T("; ".join(pv.notes), "dim")] if wide else []
        t.add_row(T(pv.pod.namespace), T(pv.pod.name), T(pv.pod.node or "-"), *_pod_cells(pv), *cell(pv), *note)
    bad = sum(1 for pv in v.pods if pv.members and not pv.ok)
    asked = len(v.nodes) - len(v.failed)
    summary = Text(f"{len(v.pods)} pods in {where} on {len(v.nodes)} nodes; {asked} answered; "
                   f"{bad} pod{'s' if bad != 1 else ''} where kernel, runtime and spec disagree", style="bold")
    lines: list[RenderableType] = [t, summary, *_stray_footer(v.pods)]
    for n in v.failed:
        lines.append(Text(f"node {safe(n.node)}: ", style="bold red").append(safe(n.error)))
    unknown = sum(1 for pv in v.pods if not pv.members)
    if unknown:
        lines.append(Text(f"?: {unknown} pods without members (not scheduled, finished, starting, or on a node that did not answer; "
                          "-o wide says which)", style="dim"))
    return Group(*lines)


def check_table(v: CheckView, wide: bool) -> RenderableType:
    p = v.pod.pod
    lines: list[RenderableType] = [Text("POD ", style="bold").append(safe(f"{p.namespace}/{p.name}"))]
    for r in v.results:
        line = Text()
        line.append_text(_mark(r.ok)).append(f" {r.type}={r.expected}")
        line.append(f"  (actual: {r.actual or 'no running member'})", style="" if r.ok else "bold red")
        lines.append(line)
        ev = ", ".join(f"{safe(m)} {ino}" for m, _role, ino in r.evidence)
        lines.append(Text(f"    {ev}", style="dim"))
        if r.apart:
            ev = ", ".join(f"{safe(m)} {ino}" for m, _role, ino in r.apart)
            lines.append(Text(f"    not judged: {ev} ({r.apart_reason})", style="dim"))
        if r.hint:
            lines.append(Text(f"    hint: {r.hint}", style="yellow"))
    n_ok = sum(r.ok for r in v.results)
    lines.append(Text(f"{n_ok}/{len(v.results)} expectations met", style="bold"))
    return Group(*lines)


register(PodView, pod_table)
register(PodsView, pods_table)
register(ClusterPodsView, cluster_pods_table)
register(CheckView, check_table)
