"""The engine: one object that answers every question about this node.

The CLI in local mode and the agent both call it; the agent client (``nsinspect.client``)
offers the same methods over gRPC, so the CLI never knows which one it has.
"""

from __future__ import annotations

from nsinspect import discover
from nsinspect.model import NS_TYPES, NodeView, ProcessView
from nsinspect.procfs import ProcFS


class LocalEngine:
    def __init__(self, proc_root: str = "/proc", runtime_endpoint: str | None = None, parallel: bool = True):
        self.proc = ProcFS(proc_root)
        self.runtime_endpoint = runtime_endpoint
        self.parallel = parallel

    def node(self, types: tuple[str, ...] = NS_TYPES) -> NodeView:
        return discover.node_view(self.proc, types, parallel=self.parallel)

    def process(self, pid: int) -> ProcessView:
        return discover.process_view(self.proc, pid)

    def close(self) -> None:
        self.proc.close()
