"""This node: ``procfs`` reads the kernel, ``discover`` scans it into the model, ``pods`` joins the
container runtime's answer (CRI) with it, ``engine.LocalEngine`` is the front door, and ``cached`` the
agent's opt-in snapshot layer over it."""
