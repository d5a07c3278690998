"""``node --tree``: the rows in the order and with the branches ``lsns -T`` draws.

lsns (util-linux 2.38+) walks the namespaces by inode; before a row it shows the row's
tree parent if not shown yet (recursively), then adds the row under it:

- owner:   under its owning user namespace;
- parent:  pid and user namespaces under their parent; other rows (and the top pid
           namespace) are roots, shown after their owner;
- process: under the last row shown whose process is the parent of the row's process
           (the tree is drawn in COMMAND).

libsmartcols then prints each root and, depth first, the children in the order they were added,
with ``├─``/``└─`` before a row and ``│ `` (or two spaces) for each ancestor level.
"""

from __future__ import annotations

from collections.abc import Sequence

from nsinspect.model import Namespace

TREES = ("owner", "parent", "process")

BRANCH, LAST, VERT, SPACE = "├─", "└─", "│ ", "  "


def tree_rows(rows: Sequence[Namespace], how: str) -> list[tuple[Namespace, str]]:
    """Every row with its tree prefix, in the order lsns -T prints them."""
    if how not in TREES:
        raise ValueError(f"unknown tree {how!r}")
    ordered = sorted(rows, key=lambda n: (n.id.ino, n.type))
    by_id = {n.id: i for i, n in enumerate(ordered)}
    children: dict[int, list[int]] = {}
    roots: list[int] = []
    placed: set[int] = set()
    last_line_of_pid: dict[int, int] = {}

    def add(i: int, parent: int | None) -> None:
        placed.add(i)
        (children.setdefault(parent, []) if parent is not None else roots).append(i)
        n = ordered[i]
        if n.nprocs:
            last_line_of_pid[n.pid] = i

    def related(i: int, which: str) -> int | None:
        ns = getattr(ordered[i], which)
        return by_id.get(ns) if ns is not None else None

    def show(i: int, depth: int = 0) -> None:
        if how == "process":
            p = ordered[i].process
            add(i, last_line_of_pid.get(p.ppid) if p is not None and ordered[i].nprocs else None)
            return
        owner, parent = related(i, "owner"), related(i, "parent")
        if depth < len(ordered):  # relations come from the kernel: a cycle must not recurse forever
            if how == "owner" and owner is not None and owner not in placed:
                show(owner, depth + 1)
            elif how == "parent":
                if parent is not None:
                    if parent not in placed:
                        show(parent, depth + 1)
                elif owner is not None and owner not in placed:
                    show(owner, depth + 1)
        above = owner if how == "owner" else parent
        add(i, above if above is not None and above in placed else None)

    for i in range(len(ordered)):
        if i not in placed:
            show(i)

    out: list[tuple[Namespace, str]] = []

    def emit(i: int, lead: str, mark: str) -> None:
        out.append((ordered[i], lead + mark))
        kids = children.get(i, [])
        below = lead + (SPACE if mark == LAST else VERT) if mark else ""
        for k, c in enumerate(kids):
            emit(c, below, LAST if k == len(kids) - 1 else BRANCH)

    for r in roots:
        emit(r, "", "")
    return out
