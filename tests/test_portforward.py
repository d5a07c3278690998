"""The port-forward, byte level: the stub speaks as the kubelet does (checked with a raw websocket
client against the upstream wire format, docs/portforward.md), and nsinspect's Tunnel carries
data through everything a real server or a proxy in between may send.  No containerd needed: the
pod's port is a plain TCP echo server on loopback."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import ssl
import struct
import threading
import time

import pytest
import stub_portforward as pf
from kube_stub import AGENT_NS, StubAPI

PORT = 9870
POD = "nsinspect-agent-n1"


class Echo:
    """The pod's port: echoes what it gets; ``close_after`` bytes echoed, it closes."""

    def __init__(self, close_after: int = -1):
        self.close_after = close_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        done = 0
        with conn, contextlib.suppress(OSError):
            while self.close_after < 0 or done < self.close_after:
                data = conn.recv(65536)
                if not data:
                    return
                if self.close_after >= 0:
                    data = data[:self.close_after - done]
                conn.sendall(data)
                done += len(data)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def api(tmp_path):
    stub = StubAPI(tls=True)  # kubectl (and nsinspect) send credentials only over TLS
    stub.kc = stub.kubeconfig(tmp_path / "kubeconfig")
    yield stub
    stub.close()


def open_tunnel(api, backend: Echo | None):
    from nsinspect.cluster.api import Kube
    from nsinspect.cluster.tunnel import Tunnel

    api.add_agent("n1", backend.address if backend else None, port=PORT)
    kube = Kube(kubeconfig=str(api.kc))

    def open_ws():
        return kube.portforward(AGENT_NS, POD, PORT)

    return kube, Tunnel(open_ws, PORT, first=open_ws())


def through(tunnel, payload: bytes, expect: int | None = None, timeout: float = 20) -> bytes:
    """Send ``payload`` into the tunnel and read until ``expect`` bytes came back (or it closed)."""
    expect = len(payload) if expect is None else expect
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(timeout)
    c.connect(tunnel.path)
    got = bytearray()
    with c:
        sender = threading.Thread(target=lambda: _send_quietly(c, payload), daemon=True)
        sender.start()
        while len(got) < expect:
            try:
                chunk = c.recv(65536)
            except ConnectionResetError:
                # The tunnel closed its end while our bytes were still unread there: the kernel resets
                # instead of a plain end of stream.  Either way the stream is over.
                break
            if not chunk:
                break
            got += chunk
        sender.join(timeout)
    return bytes(got)


def _send_quietly(c: socket.socket, payload: bytes) -> None:
    try:
        c.sendall(payload)
    except OSError:
        pass


def settled(tunnel, api) -> None:
    """The robustness the engine relies on: closed, the server holds no stream, no thread is left."""
    tunnel.close()
    deadline = time.monotonic() + 5
    while api.streams and time.monotonic() < deadline:
        time.sleep(0.01)
    assert api.streams == 0
    assert not [t.name for t in threading.enumerate() if t.name.startswith("nsinspect-")]


# -- the stub, as the kubelet speaks (a raw client, checked against the upstream format) -------------------------


class Raw:
    """A bare websocket client: the handshake, then frames as bytes."""

    def __init__(self, api, protocols: str | None, pod: str = POD, port: int = PORT):
        self.sock = socket.create_connection(api.server.server_address, timeout=10)
        if api.ca is not None:  # a TLS stub: nsinspect, like kubectl, sends credentials only over TLS
            self.sock = ssl.create_default_context(cafile=str(api.ca)).wrap_socket(self.sock, server_hostname="127.0.0.1")
        lines = [f"GET /api/v1/namespaces/{AGENT_NS}/pods/{pod}/portforward?ports={port} HTTP/1.1",
                 "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Authorization: Bearer admin-token"]
        if protocols is not None:
            lines.append(f"Sec-WebSocket-Protocol: {protocols}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        status, *headers = head.decode().split("\r\n")[:-2]
        self.status = int(status.split()[1])
        self.headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in headers)}
        self.reader = pf.FrameReader(self.sock)

    def frame(self):
        return self.reader.read()

    def send(self, payload: bytes, opcode: int = pf.OP_BINARY, masked: bool = True) -> None:
        self.sock.sendall(pf.frame(payload, opcode, mask=os.urandom(4) if masked else None))


@pytest.mark.parametrize("offered, status, chosen", [
    ("v4.channel.k8s.io", 101, "v4.channel.k8s.io"),
    ("v4.base64.channel.k8s.io, v4.channel.k8s.io", 101, "v4.base64.channel.k8s.io"),  # the client's order wins
    ("SPDY/3.1+portforward.k8s.io, v4.channel.k8s.io", 101, "v4.channel.k8s.io"),
    (None, 101, ""),  # no header: "" chosen, echoed empty (x/net AcceptHandshake)
    ("v5.channel.k8s.io", 403, None),  # nothing supported: the upgrade is refused
])
def test_stub_negotiates_as_wsstream(api, offered, status, chosen):
    echo = Echo()
    api.add_agent("n1", echo.address, port=PORT)
    raw = Raw(api, offered)
    assert raw.status == status
    assert raw.headers.get("sec-websocket-protocol") == chosen
    if status == 101:
        opcode = pf.OP_TEXT if chosen == pf.BASE64_PROTOCOL else pf.OP_BINARY
        port = struct.pack("<H", PORT)
        want = [b"0" + base64.b64encode(port), b"1" + base64.b64encode(port)] if opcode == pf.OP_TEXT else \
            [b"\x00" + port, b"\x01" + port]
        assert [raw.frame() for _ in range(2)] == [(True, opcode, w, False) for w in want]
    raw.sock.close()
    echo.close()


def test_stub_wire_bytes_are_the_kubelets(api):
    """Port prefixes as messages of their own, data back as channel 0, ping answered, a client's
    close answered with close 1000; a refused port: the kubelet's text on channel 1, then close 1000."""
    echo = Echo()
    api.add_agent("n1", echo.address, port=PORT)
    raw = Raw(api, "v4.channel.k8s.io")
    assert raw.frame() == (True, pf.OP_BINARY, b"\x00\x8e\x26", False)  # 9870 = 0x268e, little endian
    assert raw.frame() == (True, pf.OP_BINARY, b"\x01\x8e\x26", False)
    raw.send(b"\x00hello")
    assert raw.frame() == (True, pf.OP_BINARY, b"\x00hello", False)
    raw.send(b"\x01ignored: the error channel is write-only")
    raw.send(b"\x07ignored: no such channel")
    raw.send(b"")  # empty: skipped
    raw.send(b"hi", pf.OP_PING)
    assert raw.frame() == (True, pf.OP_PONG, b"hi", False)
    raw.send(b"\x00again")
    assert raw.frame() == (True, pf.OP_BINARY, b"\x00again", False)
    raw.send(struct.pack("!H", 1000), pf.OP_CLOSE)
    assert raw.frame() == (True, pf.OP_CLOSE, struct.pack("!H", 1000), False)
    assert raw.frame() is None  # and the connection ends
    # Unmasked client frames are a protocol error: close 1002.
    raw = Raw(api, "v4.channel.k8s.io")
    raw.frame(), raw.frame()
    raw.send(b"\x00x", masked=False)
    assert raw.frame() == (True, pf.OP_CLOSE, struct.pack("!H", 1002), False)
    # Nothing listens: the prefixes, the error text, close 1000, the end.
    del api.backends[(AGENT_NS, POD)]
    raw = Raw(api, "v4.channel.k8s.io")
    assert [raw.frame()[2] for _ in range(2)] == [b"\x00\x8e\x26", b"\x01\x8e\x26"]
    uid = api.pods[(AGENT_NS, POD)]["metadata"]["uid"]
    text = pf.refused_text(PORT, pf.sandbox_id(uid), pf.netns_path(uid))
    assert text.startswith(f"error forwarding port {PORT} to pod {pf.sandbox_id(uid)}, uid : failed to execute portforward")
    assert raw.frame() == (True, pf.OP_BINARY, b"\x01" + text.encode(), False)
    assert raw.frame() == (True, pf.OP_CLOSE, struct.pack("!H", 1000), False)
    assert raw.frame() is None
    echo.close()


# -- nsinspect's tunnel against everything the wire may do ----------------------------------------------------

EVERYTHING = dict(split_prefix=True, late_error_prefix=True, fragment=333, ping=True, empty=True,
                  foreign_channels=True, segments=4000, chunk=1000)

WIRES = {
    "as-kubelet": (pf.Wire(), 200_000),  # > 32 KiB: several data messages each way
    "prefix-split-over-messages": (pf.Wire(split_prefix=True), 20_000),
    "prefix-sharing-a-message-with-data": (pf.Wire(prefix_with_data=True), 20_000),
    "error-prefix-after-data": (pf.Wire(late_error_prefix=True), 20_000),
    "fragmented-messages": (pf.Wire(fragment=1000), 100_000),
    "tiny-messages": (pf.Wire(chunk=7), 5_000),
    "pings-and-pongs": (pf.Wire(ping=True, fragment=500), 20_000),
    "empty-messages": (pf.Wire(empty=True), 20_000),
    "other-ports-channels": (pf.Wire(foreign_channels=True), 20_000),
    "frames-split-over-tcp-segments": (pf.Wire(segments=700, dribble=0.0002, split_prefix=True), 20_000),
    "no-subprotocol-header": (pf.Wire(protocol=""), 20_000),
    "unversioned-channel-protocol": (pf.Wire(protocol="channel.k8s.io"), 20_000),
    "base64-framing": (pf.Wire(protocol="v4.base64.channel.k8s.io"), 100_000),
    "everything-at-once": (pf.Wire(**EVERYTHING), 50_000),
    "everything-base64": (pf.Wire(protocol="v4.base64.channel.k8s.io", **EVERYTHING), 50_000),
}


@pytest.mark.parametrize("name", list(WIRES))
def test_tunnel_carries_data_through(api, name):
    wire, size = WIRES[name]
    api.wire = wire
    echo = Echo()
    kube, tunnel = open_tunnel(api, echo)
    payload = os.urandom(size)
    try:
        assert through(tunnel, payload) == payload
        assert through(tunnel, b"second connection") == b"second connection"  # a fresh stream each time
        assert tunnel.error == "" and tunnel.failure is None
        if wire.ping:
            assert "pong" in wire.log  # websocket-client answered the server's pings
    finally:
        settled(tunnel, api)
        kube.close()
        echo.close()


@pytest.mark.parametrize("wire", [pf.Wire(), pf.Wire(error_parts=3), pf.Wire(ping=True, fragment=50)],
                         ids=["as-kubelet", "text-in-three-messages", "pings-after-the-server-closed"])
def test_refused_port_reports_the_kubelets_text(api, wire):
    from nsinspect.cluster.tunnel import summary

    api.wire = wire
    kube, tunnel = open_tunnel(api, None)
    try:
        assert through(tunnel, b"x", expect=1) == b""
        uid = api.pods[(AGENT_NS, POD)]["metadata"]["uid"]
        assert tunnel.error == pf.refused_text(PORT, pf.sandbox_id(uid), pf.netns_path(uid))
        said = summary(tunnel.error)
        assert said.startswith("failed to execute portforward") and said.endswith("connect: connection refused")
        assert len(said) <= 240
    finally:
        settled(tunnel, api)
        kube.close()


@pytest.mark.parametrize("hold", [False, True], ids=["then-close", "server-keeps-it-open"])
def test_error_while_data_flows(api, hold):
    """Data before the failure arrives whole; the error text is kept; the stream ends even if the
    server does not close it (at most CLOSE_WAIT later)."""
    from nsinspect.cluster.tunnel import CLOSE_WAIT

    api.wire = pf.Wire(error_after=5000, hold_after_error=hold, chunk=1000)
    echo = Echo()
    kube, tunnel = open_tunnel(api, echo)
    payload = os.urandom(50_000)
    try:
        started = time.monotonic()
        assert through(tunnel, payload) == payload[:5000]
        assert time.monotonic() - started < CLOSE_WAIT + 3
        assert tunnel.error.startswith(f"error forwarding port {PORT} to pod ")
        assert tunnel.error.endswith("connection reset by peer")
    finally:
        settled(tunnel, api)
        kube.close()
        echo.close()


@pytest.mark.parametrize("wire, got, said", [
    (pf.Wire(close_status=1011, close_reason=b"upstream\nwent away"), b"abc",
     "the API server closed the port-forward with status 1011: upstream went away"),
    (pf.Wire(close_status=1001), b"abc", ""),  # going away: a normal end
    (pf.Wire(close_status=None), b"abc", ""),
    (pf.Wire(close_frame=False), b"abc", ""),  # the connection just ends
    (pf.Wire(announce=PORT + 1), b"",
     f"the port-forward stream broke: the API server's port-forward opened port {PORT + 1}, not {PORT}"),
    (pf.Wire(error_after=0, error_text="e" * 100_000), b"", "e" * 4096),  # bounded
], ids=["close-1011-with-reason", "close-1001", "close-without-status", "no-close-frame", "wrong-port", "huge-error"])
def test_how_a_stream_ends_is_reported(api, wire, got, said):
    """The pod's port answers three bytes and closes; the server ends the stream its way."""
    api.wire = wire
    echo = Echo(close_after=3)
    kube, tunnel = open_tunnel(api, echo)
    try:
        assert through(tunnel, b"abcdef") == got
        assert tunnel.error == said
    finally:
        settled(tunnel, api)
        kube.close()
        echo.close()


@pytest.mark.parametrize("answer", ["v5.channel.k8s.io", "SPDY/3.1+portforward.k8s.io", "x" * 300])
def test_a_subprotocol_we_do_not_speak_is_one_sentence(api, answer):
    from nsinspect.cluster.api import Kube
    from nsinspect.errors import Unavailable

    api.wire = pf.Wire(protocol=answer)
    echo = Echo()
    api.add_agent("n1", echo.address, port=PORT)
    kube = Kube(kubeconfig=str(api.kc))
    try:
        with pytest.raises(Unavailable) as e:
            kube.portforward(AGENT_NS, POD, PORT)
        msg = str(e.value)
        assert "which nsinspect does not speak (it asked for v4.channel.k8s.io)" in msg and "\n" not in msg
        assert len(msg) < 300
    finally:
        kube.close()
        echo.close()
    assert api.offered == ["v4.channel.k8s.io"]
