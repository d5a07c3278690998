"""Renderers: each turns a model object into text.  They know nothing of /proc, CRI or gRPC.

``render(view, fmt)`` picks the format; ``data`` gives the plain-data form (the JSON contract),
``table`` the rich tables, ``picture`` a pod's picture (``tree``).  rich and yaml are imported only when
their format is asked for.
"""

from __future__ import annotations

from typing import Any

FORMATS = ("table", "wide", "json", "yaml", "tree")  # tree: a pod only


def render(view: object, fmt: str, width: int | None = None, color: bool = False, tree: str | None = None,
           ascii_only: bool = False) -> str:
    """``view`` as text in ``fmt``.  ``tree`` draws a node view's table as ``lsns -T`` (JSON/YAML stay flat).
    ``width``: the terminal's (None: not a terminal); ``ascii_only``: the output cannot carry box-drawing
    characters (the pod picture, ``fmt`` tree, draws with ASCII)."""
    if fmt == "tree":
        from nsinspect.model import PodView
        from nsinspect.render.picture import picture

        if not isinstance(view, PodView):
            raise TypeError(f"no picture for {type(view).__name__}")
        return picture(view, width, ascii_only=ascii_only, color=color)
    if fmt == "json":
        from nsinspect.render.data import node_json, to_data

        fast = node_json(view)
        if fast is not None:
            return fast
        data = to_data(view)
        if isinstance(data, dict) and isinstance(data.get("pods"), list):
            return dump_json(data)  # pod lists (a cluster's: thousands): one pod per line, with the C encoder
        import json

        # ensure_ascii: untrusted names may reach a terminal through jq; \u escapes are inert.
        return json.dumps(data, indent=2) + "\n"
    if fmt == "yaml":
        import yaml

        from nsinspect.render.data import to_data

        return yaml.safe_dump(to_data(view), sort_keys=False, allow_unicode=False, width=1 << 20)
    from nsinspect.render.table import render_table

    return render_table(view, wide=(fmt == "wide"), width=width, color=color, tree=tree)


def dump_json(data: dict[str, Any]) -> str:
    """JSON with one list item per line.

    ``json.dumps(indent=...)`` falls back to the pure-Python encoder, 4x slower on a node
    with thousands of namespaces; this keeps the C encoder and stays readable.
    ``ensure_ascii``: untrusted names may reach a terminal through ``jq``; \\u escapes are inert.
    """
    import json

    enc = json.JSONEncoder(ensure_ascii=True).encode
    parts = []
    for key, value in data.items():
        if isinstance(value, list) and value:
            items = ",\n    ".join(enc(item) for item in value)
            parts.append(f"  {enc(key)}: [\n    {items}\n  ]")
        else:
            parts.append(f"  {enc(key)}: {enc(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"
