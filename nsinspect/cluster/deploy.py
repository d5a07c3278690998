"""``nsinspect deploy``: the agent's manifests (``daemonset/``, shipped in the package), printed or applied.

Applying uses server-side apply (``PATCH`` with ``application/apply-patch+yaml``, field manager
``nsinspect``), so running it again updates in place, as ``kubectl apply --server-side`` does.
"""

from __future__ import annotations

from importlib import resources
from typing import Any
from urllib.parse import quote

from nsinspect.errors import InvalidArgument


def manifests(image: str | None = None) -> list[dict[str, Any]]:
    """The objects, in the kustomization's order; ``image`` replaces the agent's image."""
    import yaml

    root = resources.files("nsinspect") / "manifests"
    order = yaml.safe_load((root / "kustomization.yaml").read_text())["resources"]
    objects: list[dict[str, Any]] = []
    for name in order:
        objects.extend(o for o in yaml.safe_load_all((root / name).read_text()) if o)
    if image:
        if not image.strip() or any(c.isspace() for c in image):
            raise InvalidArgument(f"bad image {image[:80]!r}; write REGISTRY/NAME:TAG")
        for o in objects:
            if o.get("kind") == "DaemonSet":
                for c in o["spec"]["template"]["spec"]["containers"]:
                    c["image"] = image
    return objects


def to_yaml(objects: list[dict[str, Any]]) -> str:
    import yaml

    return "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objects)


def object_path(obj: dict[str, Any]) -> str:
    """The REST path of an object: /api/v1/... for the core group, /apis/GROUP/VERSION/... otherwise."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    meta = obj["metadata"]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    plural = {"NetworkPolicy": "networkpolicies"}.get(kind, kind.lower() + "s")
    name = quote(meta["name"], safe="")
    if kind == "Namespace":
        return f"{base}/namespaces/{name}"
    return f"{base}/namespaces/{quote(meta['namespace'], safe='')}/{plural}/{name}"


def apply(kube: Any, objects: list[dict[str, Any]]) -> list[str]:
    """Apply each object; ``kind/name`` of each, in order."""
    done = []
    for o in objects:
        kube.apply(o, object_path(o), o["metadata"].get("namespace", ""))
        done.append(f"{o['kind'].lower()}/{o['metadata']['name']}")
    return done
