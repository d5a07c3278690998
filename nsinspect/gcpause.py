"""The cyclic garbage collector paused around a burst of allocations that make no cycles.

A node view is some 100,000 small objects (rows, ids, processes), none in a cycle: reference counting frees
them.  The collections their allocation would set off walk every object the process holds (the agent's kept
records, a client's whole heap), and took a third of a warm node call and up to half of decoding one.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
