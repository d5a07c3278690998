"""The node agent: a read-only gRPC service over this node's engine, and its client.

``server`` serves it, ``client`` is the Engine that asks it, ``convert`` maps the model to and from
``v1/`` (generated from ``proto/nsinspect/agent/v1/agent.proto``).  The wire facts both sides share live
here, so neither end imports the other.
"""

AGENT_PORT = 9870
AGENT_LISTEN = f"127.0.0.1:{AGENT_PORT}"  # loopback inside the agent's pod (``nsinspect agent``)
SERVICE = "nsinspect.v1.Inspector"  # the proto's package and service: the wire name, never renamed
ERROR_MARK = "nsinspect-error"  # trailing metadata the agent sets: this status carries its own sentence
MAX_REQUEST = 64 << 10  # requests are a few names; anything bigger is refused by gRPC itself
MAX_RESPONSE = 64 << 20  # GetNode on a very busy node
