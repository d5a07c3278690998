"""The stub API server's ``pods/portforward`` over websockets, as the real path serves it.

A real API server (1.30+ too) proxies a websocket port-forward asking for ``v4.channel.k8s.io``
byte for byte to the kubelet, which proxies it to the runtime's CRI streaming server (containerd
carries a copy of the kubelet's ``cri/streaming/portforward``); only ``SPDY/3.1+portforward.k8s.io``
is handled by the API server itself.  So what a client sees is what that streaming server writes
through ``wsstream.Conn`` on ``golang.org/x/net/websocket``.  docs/portforward.md lists the upstream
files this follows; in short:

- subprotocol: the first of the client's list among ``v4.channel.k8s.io`` (binary),
  ``v4.base64.channel.k8s.io`` (text: channel as a digit, payload in base64) and "" (no header
  sent by the client: binary); echoed in ``Sec-WebSocket-Protocol`` (empty when "" was chosen);
- per forwarded port k, channel 2k carries data and 2k+1 errors; before anything else each
  gets a message of its own holding the port, 2 bytes little endian (data first, then error);
- every write is one unfragmented message: the channel byte, then the bytes (io.Copy's 32 KiB
  at most per message);
- a failure is one message of text on the error channel (``error forwarding port P to pod ID,
  uid : CAUSE``), then the close;
- the end, whatever caused it: a close frame with status 1000 and no reason, then the TCP close
  (x/net does not wait for the client's close frame); a client's close frame is answered so;
- from the client each frame is taken as one message (x/net does not join continuation frames);
  empty messages and unknown channels are skipped, pings answered with pongs, an unmasked frame
  answered with close 1002.

``Wire`` switches on what an API server, proxy or load balancer in between, or a future server,
may do differently; clients must accept all of it.  The defaults are the real thing.
"""

from __future__ import annotations

import base64
import hashlib
import random
import select
import socket
import ssl
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
BINARY_PROTOCOL, BASE64_PROTOCOL = "v4.channel.k8s.io", "v4.base64.channel.k8s.io"
SUPPORTED = {BINARY_PROTOCOL: False, BASE64_PROTOCOL: True, "": False}  # protocol -> base64?
COPY_BUFFER = 32 * 1024  # io.Copy's buffer: the most one data message carries
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


@dataclass
class Wire:
    """How the stub puts a port-forward on the wire.  Defaults: as the kubelet does."""

    protocol: str | None = None  # answer this Sec-WebSocket-Protocol instead ("": leave the header out)
    split_prefix: bool = False  # each port prefix in two messages, one byte each
    prefix_with_data: bool = False  # the data channel's prefix in front of the first data message
    late_error_prefix: bool = False  # the error channel's prefix only after the first data message
    chunk: int = COPY_BUFFER  # the most data bytes per message
    fragment: int = 0  # > 0: every message in frames of this many bytes (continuation frames)
    ping: bool = False  # a ping and an unsolicited pong before every message
    empty: bool = False  # an empty message and a bare channel byte before every message
    foreign_channels: bool = False  # messages on channels 2 and 3 (another port's) between ours
    segments: int = 0  # > 0: write in TCP segments of 1..segments bytes, ``dribble`` s apart
    dribble: float = 0.0
    error_after: int = -1  # >= 0: after this many data bytes from the pod, fail (error text, then close)
    error_parts: int = 1  # the error text in this many messages
    error_text: str = ""  # instead of the kubelet's
    hold_after_error: bool = False  # after the error text, no close: wait for the client's
    announce: int | None = None  # the port number the prefixes carry, if not the one asked for
    close_status: int | None = 1000  # None: a close frame without a status
    close_reason: bytes = b""
    close_frame: bool = True  # False: the TCP connection just ends (an idle timeout, a dead proxy)
    seed: int = 0
    log: list[str] = field(default_factory=list)  # what happened, for the tests: "pong", "ping", "close:1000", ...


def sandbox_id(pod_uid: str) -> str:
    """A stand-in for the pod's sandbox id (CRI streaming names the pod by it, never by name)."""
    return hashlib.sha256(pod_uid.encode()).hexdigest()


def refused_text(port: int, sandbox: str, netns: str) -> str:
    """The error channel's text when nothing listens on the port: the kubelet's prefix
    (websocket.go portForward) around containerd 1.7's cause (sandbox_portforward_linux.go)."""
    cause = (f'failed to execute portforward in network namespace "{netns}": failed to connect to localhost:{port} '
             f'inside namespace "{sandbox}", IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused '
             f"IPv6 dial tcp6 [::1]:{port}: connect: connection refused ")
    return f"error forwarding port {port} to pod {sandbox}, uid : {cause}"


def frame(payload: bytes, opcode: int = OP_BINARY, fin: bool = True, mask: bytes | None = None) -> bytes:
    """One websocket frame (RFC 6455 5.2); servers send unmasked, clients masked."""
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    maskbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", first, maskbit | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, maskbit | 126, n)
    else:
        head = struct.pack("!BBQ", first, maskbit | 127, n)
    if mask:
        return head + mask + xor(payload, mask)
    return head + payload


def xor(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    repeated = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


class FrameReader:
    """Frames from a socket, one at a time: (fin, opcode, payload, masked)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def _exact(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def read(self) -> tuple[bool, int, bytes, bool] | None:
        head = self._exact(2)
        if head is None:
            return None
        fin, op, masked, n = bool(head[0] & 0x80), head[0] & 0x0F, bool(head[1] & 0x80), head[1] & 0x7F
        if n == 126:
            ext = self._exact(2)
            n = struct.unpack("!H", ext)[0] if ext else 0
        elif n == 127:
            ext = self._exact(8)
            n = struct.unpack("!Q", ext)[0] if ext else 0
        mask = self._exact(4) if masked else b""
        data = self._exact(n) if n else b""
        if mask is None or data is None:
            return None
        return fin, op, xor(data, mask) if masked else data, masked


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def choose(offered_header: str | None) -> str | None:
    """wsstream's handshake: the first protocol the client lists that the server supports; no
    header at all counts as ""; None if nothing fits (the upgrade is refused)."""
    offered = [p.strip() for p in (offered_header or "").split(",")] if offered_header else [""]
    return next((p for p in offered if p in SUPPORTED), None)


class Session:
    """One port-forward stream: the server side of the websocket, and the pod's port behind it."""

    def __init__(self, client: socket.socket, port: int, wire: Wire, protocol: str):
        self.client = client
        self.port = port
        self.wire = wire
        self.base64 = SUPPORTED.get(protocol, False)
        self.rng = random.Random(wire.seed)
        self.prefix_sent = {0: False, 1: False}
        self.close_status, self.close_reason = wire.close_status, wire.close_reason

    # -- writing ---------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        w = self.wire
        if w.segments <= 0:
            self.client.sendall(data)
            return
        i = 0
        while i < len(data):
            n = self.rng.randint(1, w.segments)
            self.client.sendall(data[i:i + n])
            i += n
            if w.dribble:
                time.sleep(w.dribble)

    def _encode(self, channel: int, payload: bytes) -> tuple[int, bytes]:
        if self.base64:
            return OP_TEXT, bytes((ord("0") + channel,)) + base64.b64encode(payload)
        return OP_BINARY, bytes((channel,)) + payload

    def _frames(self, channel: int, payload: bytes) -> bytes:
        """One message as frames, with whatever the wire puts around it."""
        w = self.wire
        out = b""
        if w.ping:
            out += frame(b"are you there", OP_PING) + frame(b"unsolicited", OP_PONG)
        if w.empty:
            out += frame(b"", OP_TEXT if self.base64 else OP_BINARY) + frame(self._encode(channel, b"")[1][:1],
                                                                            OP_TEXT if self.base64 else OP_BINARY)
        if w.foreign_channels:
            out += frame(self._encode(2, struct.pack("<H", self.port + 1))[1], self._encode(2, b"")[0])
        op, message = self._encode(channel, payload)
        if w.fragment > 0 and len(message) > w.fragment:
            parts = [message[i:i + w.fragment] for i in range(0, len(message), w.fragment)]
            for i, part in enumerate(parts):
                out += frame(part, op if i == 0 else OP_CONT, fin=i == len(parts) - 1)
                if w.ping and i == 0:
                    out += frame(b"between fragments", OP_PING)  # control frames may sit between fragments
        else:
            out += frame(message, op)
        return out

    def send(self, channel: int, payload: bytes) -> None:
        self._write(self._frames(channel, payload))

    def send_prefix(self, channel: int, with_data: bytes = b"") -> None:
        port = struct.pack("<H", self.port if self.wire.announce is None else self.wire.announce)
        self.prefix_sent[channel] = True
        if self.wire.split_prefix:
            self._write(self._frames(channel, port[:1]) + self._frames(channel, port[1:] + with_data))
        elif with_data:
            self.send(channel, port + with_data)
        else:
            self.send(channel, port)

    def send_data(self, data: bytes) -> None:
        for i in range(0, len(data), self.wire.chunk):
            piece = data[i:i + self.wire.chunk]
            if not self.prefix_sent[0]:
                self.send_prefix(0, piece)
            else:
                self.send(0, piece)
            if not self.prefix_sent[1]:
                self.send_prefix(1)

    def send_error(self, text: str) -> None:
        if not self.prefix_sent[1]:
            self.send_prefix(1)
        data = text.encode()
        parts = max(1, self.wire.error_parts)
        step = -(-len(data) // parts)
        for i in range(0, len(data), step):
            self.send(1, data[i:i + step])

    def open(self) -> None:
        """The port prefixes, before anything else (unless the wire says otherwise)."""
        if not self.wire.prefix_with_data:
            self.send_prefix(0)
        if not self.wire.late_error_prefix and not self.wire.prefix_with_data:
            self.send_prefix(1)

    def close(self) -> None:
        w = self.wire
        if w.close_frame:
            payload = b"" if self.close_status is None else struct.pack("!H", self.close_status) + self.close_reason
            try:
                self.client.sendall(frame(payload, OP_CLOSE))
            except OSError:
                pass
            w.log.append(f"close:{self.close_status}")

    # -- reading ---------------------------------------------------------------------------------
    def pump(self, backend: socket.socket, on_first_data: Callable[[], None] | None) -> None:
        """Until either side ends: the client's data-channel messages to the pod, the pod's bytes back."""
        reader = FrameReader(self.client)
        sent = 0
        message_type = OP_BINARY
        while True:
            if isinstance(self.client, ssl.SSLSocket) and self.client.pending():
                ready = [self.client]  # decrypted bytes wait in the TLS layer: select cannot see them
            else:
                ready, _, _ = select.select([self.client, backend], [], [])
            if self.client in ready:
                got = reader.read()
                if got is None:
                    return
                _fin, op, payload, masked = got
                if not masked:
                    self.wire.log.append("unmasked")
                    self.close_status, self.close_reason = 1002, b""  # x/net: closeStatusProtocolError
                    return
                if op == OP_CLOSE:
                    self.wire.log.append("client-close")
                    return
                if op == OP_PING:
                    self._write(frame(payload, OP_PONG))
                    continue
                if op == OP_PONG:
                    self.wire.log.append("pong")
                    continue
                if op == OP_CONT:
                    op = message_type  # taken as a message of its own, of the last type
                message_type = op
                if not payload:
                    continue
                channel, data = payload[0], payload[1:]
                if self.base64:
                    channel, data = channel - ord("0"), base64.b64decode(data)
                if channel != 0:
                    continue  # the error channel is write-only; others do not exist
                if on_first_data is not None:
                    on_first_data()
                    on_first_data = None
                backend.sendall(data)
            if backend in ready:
                data = backend.recv(COPY_BUFFER)
                if not data:
                    return  # the pod's end closed
                w = self.wire
                if w.error_after >= 0 and sent + len(data) > w.error_after:
                    self.send_data(data[:w.error_after - sent])
                    self.send_error(w.error_text or f"error forwarding port {self.port} to pod {sandbox_id('x')}, uid : "
                                    f"failed to execute portforward for \"{sandbox_id('x')}\" port {self.port}: "
                                    "readfrom tcp4 127.0.0.1:43210->127.0.0.1:9870: connection reset by peer")
                    while w.hold_after_error and (got := reader.read()) is not None and got[1] != OP_CLOSE:
                        pass
                    return
                sent += len(data)
                self.send_data(data)


def handshake_response(key: str, protocol: str, wire: Wire) -> bytes:
    """The 101 answer, as x/net's AcceptHandshake writes it."""
    lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Accept: {accept_key(key)}"]
    answer = protocol if wire.protocol is None else wire.protocol
    if wire.protocol is None or wire.protocol:
        lines.append(f"Sec-WebSocket-Protocol: {answer}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def netns_path(pod_uid: str) -> str:
    return f"/var/run/netns/cni-{uuid.UUID(hashlib.md5(pod_uid.encode()).hexdigest())}"
