"""Making untrusted strings (process names, command lines, labels) safe for a terminal."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from nsinspect.model import HOST

if TYPE_CHECKING:
    from nsinspect.model import PodView

# C0 and C1 controls, DEL, zero-width and bidi formatting characters, line/paragraph
# separators, and lone surrogates (undecodable bytes kept by os.fsdecode).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ud800-\udfff]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    if 0xDC80 <= c <= 0xDCFF:  # a raw byte smuggled through surrogateescape
        return f"\\x{c - 0xDC00:02x}"
    if c <= 0xFF:
        return f"\\x{c:02x}"
    return f"\\u{c:04x}"


def safe(s: str) -> str:
    """Escape every character that could move the cursor, recolour or reorder the terminal."""
    return _UNSAFE.sub(_escape, s) if _UNSAFE.search(s) else s


def sentences(v: PodView) -> list[tuple[str, str, bool]]:
    """What a pod's drawings print under it, per type: (type, sentence, is it a disagreement).

    The model's sentences, picked the same way for the table and the picture: why the sources disagree
    (when a member runs), else why a type is the node's; then the kernel's evidence."""
    out = []
    for t, verdict in v.sharing.items():
        if verdict.disagreement and verdict.actual is not None:
            out.append((t, verdict.disagreement, True))
        elif verdict.actual == HOST:
            out.append((t, verdict.reason, False))
        if verdict.evidence:
            out.append((t, verdict.evidence, False))
    return out
