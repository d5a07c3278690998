"""nsinspect: which Linux namespaces do the containers of a pod really share?

One engine, three front doors (``engine.Engine``): this node (``node/``), a node's agent over gRPC
(``agent/``), and a cluster through the Kubernetes API (``cluster/``).  ``model`` is what they answer,
``sharing`` the rules they judge by, ``render`` how the CLI (``cli``) prints it.
"""

__version__ = "0.1.0"

# The eight namespace types, in the order lsns and /proc/<pid>/ns list them (``nsinspect.model.NS_TYPES``).
# Here so that the CLI can declare its options without importing the model.
NS_TYPES: tuple[str, ...] = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")
