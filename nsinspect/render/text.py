"""Making untrusted strings (process names, command lines, labels) safe for a terminal."""

from __future__ import annotations

import re

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
