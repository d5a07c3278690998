"""A fast lsns-style column formatter for long listings (``nsinspect node``).

rich measures every cell of a table (about 2 s for the 5,000 rows of a busy node); this
computes each column's width once and pads, so a listing costs what its text costs.
Same look as the rich tables: bold header, no borders, numbers right-aligned; on a
terminal the last column is cut with an ellipsis to fit, elsewhere nothing is cut.
All cells pass through ``safe()``.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len, set_cell_size

from nsinspect.render.text import safe

BOLD, DIM, RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"


def format_columns(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: Sequence[bool],
    width: int | None = None,
    color: bool = False,
) -> list[str]:
    rows = [[safe(c) for c in row] for row in rows]
    n = len(header)
    # ASCII cells are one terminal cell per character; only measure the others.
    widths = [max([len(header[i])] + [len(r[i]) if r[i].isascii() else cell_len(r[i]) for r in rows]) for i in range(n)]
    lines = []
    for k, row in enumerate([list(header), *rows]):
        cells = []
        for i, cell in enumerate(row):
            w = widths[i]
            pad = w - (len(cell) if cell.isascii() else cell_len(cell))
            if i == n - 1:
                cells.append(cell)
            elif right[i]:
                cells.append(" " * pad + cell)
            else:
                cells.append(cell + " " * pad)
        line = " ".join(cells)
        if width is not None and cell_len(line) > width:
            line = set_cell_size(line, width - 1) + "…"
        if color and k == 0:
            line = BOLD + line + RESET
        lines.append(line.rstrip())
    return lines
