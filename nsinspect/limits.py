"""What the kernel can produce, and the one strict reader of the numbers it writes and people type.

Python's ``int()`` is lenient: it takes ``" 1"``, ``"+1"``, ``"1_000"`` and other scripts' digits
(``"٣"`` is 3).  Pids, inodes and ports are plain ASCII decimal here, within the kernel's range;
anything else is not one (fuzzing found each of these: docs/fuzzing.md).
"""

from __future__ import annotations

PID_MAX_LIMIT = 4 * 1024 * 1024  # the kernel's ceiling for /proc/sys/kernel/pid_max (PID_MAX_LIMIT, 64-bit)
INODE_MAX = (1 << 64) - 1  # ino_t
PORT_MAX = 65535


def decimal(text: str | bytes, maximum: int) -> int | None:
    """``text`` as a number when it is ASCII decimal digits only (no sign, space or ``_``), without a
    leading zero (but ``0`` itself), and at most ``maximum``; else None."""
    if isinstance(text, bytes):
        if not text.isdigit():  # bytes.isdigit is ASCII only
            return None
    elif not (text.isascii() and text.isdigit()):
        return None
    if len(text) > len(str(maximum)) or (len(text) > 1 and text[:1] in ("0", b"0")):
        return None
    value = int(text)
    return value if value <= maximum else None


def pid_max(proc_root: str = "/proc") -> int:
    """This machine's pid_max (``sys/kernel/pid_max`` under the procfs root); the kernel's ceiling when unreadable."""
    try:
        with open(f"{proc_root}/sys/kernel/pid_max", "rb") as f:
            value = decimal(f.read(32).strip(), PID_MAX_LIMIT)
    except OSError:
        value = None
    return value or PID_MAX_LIMIT
