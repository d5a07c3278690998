"""nsinspect: which Linux namespaces do the containers of a pod really share?"""

__version__ = "0.1.0"

# The agent listens here by default, on loopback inside its pod (``nsinspect agent``).
AGENT_PORT = 9870
AGENT_LISTEN = f"127.0.0.1:{AGENT_PORT}"
