"""Forked workers for the node's passes over /proc: the scan (``procfs``) and the passes after it (``hidden``).

``fanout(fn, chunks)`` runs ``fn`` on every chunk: all but the first in forked children, which send
their results back with marshal (plain containers only), the first here.  A child that fails has its
chunk redone here, so a result is never lost, only slower.  fork() is only safe while this process has
a single thread: callers decide how many chunks (``procfs._workers_for``).
"""

from __future__ import annotations

import marshal
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def slices(items: Sequence[T], n: int) -> list[list[T]]:
    """``items`` cut into ``n`` contiguous slices of nearly equal length, in order."""
    return [list(items[k * len(items) // n : (k + 1) * len(items) // n]) for k in range(n)]


def spawn(fn: Callable[[], Any]) -> tuple[int, int]:
    """Fork a child that runs ``fn()`` and writes its result, marshalled, to a pipe; it exits 0 when it
    could, 1 when not.  Returns (child pid, the pipe's read end).  The child imports nothing."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        code = 0
        try:
            os.close(r)
            view = memoryview(marshal.dumps(fn()))
            while view:
                view = view[os.write(w, view) :]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    return child, r


def fanout(fn: Callable[[T], Any], chunks: list[T]) -> list[Any]:
    """``[fn(chunk) for chunk in chunks]``, all but the first chunk read in forked workers."""
    children = []
    for chunk in chunks[1:]:
        child, r = spawn(lambda chunk=chunk: fn(chunk))  # type: ignore[misc]
        children.append((child, r, chunk))
    results = [fn(chunks[0])] if chunks else []
    for child, r, chunk in children:
        with os.fdopen(r, "rb") as f:
            data = f.read()
        _, status = os.waitpid(child, 0)
        try:
            results.append(marshal.loads(data) if status == 0 else fn(chunk))
        except (EOFError, ValueError, TypeError):
            results.append(fn(chunk))
    return results
