"""Where the CRI socket is: flag, env, /etc/crictl.yaml, or probing.  No gRPC here (cheap to import)."""

from __future__ import annotations

import os
import re

from nsinspect.errors import InvalidArgument

# What crictl probes, in its order, plus k3s's embedded containerd.
DEFAULT_ENDPOINTS = (
    "unix:///run/containerd/containerd.sock",
    "unix:///run/crio/crio.sock",
    "unix:///var/run/cri-dockerd.sock",
    "unix:///run/k3s/containerd/containerd.sock",
)


def _socket_path(endpoint: str) -> str | None:
    if endpoint.startswith("unix://"):
        return endpoint[len("unix://") :]
    if endpoint.startswith("/"):
        return endpoint
    return None


def _under(host_root: str | None, path: str) -> str:
    return os.path.join(host_root, path.lstrip("/")) if host_root else path


def crictl_endpoint(host_root: str | None) -> str | None:
    """``runtime-endpoint`` from /etc/crictl.yaml, if there is one (a one-line read; no YAML parser needed)."""
    try:
        with open(_under(host_root, "/etc/crictl.yaml"), encoding="utf-8") as f:
            text = f.read(65536)
    except OSError:
        return None
    m = re.search(r"^runtime-endpoint:\s*[\"']?([^\"'\s#]+)", text, re.M)
    return m.group(1) if m else None


def _rebase(endpoint: str, host_root: str | None) -> str:
    path = _socket_path(endpoint)
    if path is None:
        raise InvalidArgument(f"unsupported runtime endpoint {endpoint!r}; use unix:///path/to/socket")
    return "unix://" + _under(host_root, path)


def candidates(explicit: str | None, host_root: str | None) -> tuple[list[str], bool]:
    """Endpoints to try, and whether they were asked for (explicit or configured) or merely probed."""
    if explicit:
        return [_rebase(explicit, host_root) if explicit.startswith("unix://") or explicit.startswith("/") else explicit], True
    configured = crictl_endpoint(host_root)
    if configured:
        return [_rebase(configured, host_root)], True
    return [_rebase(e, host_root) for e in DEFAULT_ENDPOINTS], False


def existing(explicit: str | None, host_root: str | None) -> bool:
    """Is there a runtime to ask?  True when one was named, or a probed socket exists."""
    endpoints, asked = candidates(explicit, host_root)
    return asked or any(os.path.exists(p) for p in (_socket_path(e) for e in endpoints) if p)
