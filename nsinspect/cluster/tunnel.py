"""A bridge between grpcio and the API server's port-forward.

grpcio dials addresses; it cannot speak through a websocket.  A ``Tunnel`` is a unix socket in
a fresh private directory (mode 0700, so no other local user can ride our credentials, which
a loopback TCP port would allow); every connection grpcio makes to it becomes one port-forward
stream (``v4.channel.k8s.io``) to the agent's port, pumped by one thread.

The protocol (docs/portforward.md has the upstream sources): per forwarded port, channel 0
carries data and channel 1 errors, each message being the channel byte and then bytes (with
``v4.base64.channel.k8s.io``: the channel as a digit and the bytes in base64).  The first two
bytes of each channel are the port number, little endian.  kubelet reports a failure inside
the pod as text on channel 1 and then closes; the text is kept in ``error``.

Accepted as well, since proxies in between and other servers may do so: the port prefix split
over messages or sharing one with data, the error prefix late, fragmented messages, pings,
empty messages, other ports' channels (ignored), a close with any status, the connection ending
without one, and a server that names no subprotocol (the binary framing, as kubelet's "").
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import select
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from nsinspect.errors import NsinspectError, Unavailable

PROTOCOL = "v4.channel.k8s.io"  # what we ask for
BINARY = {"v4.channel.k8s.io", "channel.k8s.io", ""}  # "": the server named none (kubelet's default framing)
BASE64 = {"v4.base64.channel.k8s.io", "base64.channel.k8s.io"}
DATA, ERROR = 0, 1
CLOSE_WAIT = 1.0  # seconds to wait for the API server to answer a stream's close (or to close after an error)
ERROR_MAX = 4096  # characters of error-channel text kept
NORMAL_CLOSE = (1000, 1001)  # normal closure, going away


class StreamError(ValueError):
    """The server broke the port-forward protocol."""


def framing(ws: Any) -> bool:
    """How the server frames channels, from the subprotocol it chose: False binary, True base64.

    Raises Unavailable for a protocol we do not speak."""
    headers = ws.getheaders() or {}
    chosen = str(headers.get("sec-websocket-protocol", "")).strip()
    if chosen in BINARY:
        return False
    if chosen in BASE64:
        return True
    raise Unavailable(f"the API server answered the port-forward with the websocket protocol {chosen[:80]!r}, which nsinspect "
                      f"does not speak (it asked for {PROTOCOL}); a proxy in between may be rewriting the upgrade")


class Channels:
    """A port-forward's messages split into (channel, bytes), each channel's port prefix checked and removed.

    A channel is a byte stream: its first two bytes are the port wherever the messages divide them."""

    def __init__(self, port: int, base64_framing: bool = False):
        self.port = port
        self.base64 = base64_framing
        self._prefix: dict[int, bytes | None] = {DATA: b"", ERROR: b""}  # None once read

    def feed(self, message: bytes) -> tuple[int, bytes]:
        """(channel, payload); the payload is empty while a prefix is incomplete.  Channels of
        other ports come back as they are (callers ignore them, as kubelet's reader does)."""
        if not message:
            return DATA, b""
        channel, payload = message[0], bytes(message[1:])
        if self.base64:
            channel = (channel - ord("0")) & 0xFF
            try:
                payload = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                raise StreamError("a base64 port-forward message is not base64") from None
        if channel not in self._prefix:
            return channel, payload
        seen = self._prefix[channel]
        if seen is None:
            return channel, payload
        seen += payload
        if len(seen) < 2:
            self._prefix[channel] = seen
            return channel, b""
        self._prefix[channel] = None
        got = int.from_bytes(seen[:2], "little")
        if got != self.port:
            raise StreamError(f"the API server's port-forward opened port {got}, not {self.port}")
        return channel, seen[2:]

    def encode(self, data: bytes) -> tuple[bytes, int]:
        """A message carrying ``data`` on the data channel, and its websocket opcode."""
        if self.base64:
            return b"0" + base64.b64encode(data), 0x1  # text
        return bytes((DATA,)) + data, 0x2  # binary


def summary(text: str, limit: int = 240) -> str:
    """Error-channel text on one line: kubelet's "error forwarding port P to pod ID, uid U: "
    dropped (the caller names the pod), and if still long, the start and the end kept (Go
    wraps causes in front, so the root cause is last)."""
    said = " ".join(text.split())
    said = re.sub(r"^error forwarding port \d+ to pod \S+, uid \S*\s*: ", "", said)
    if len(said) > limit:
        keep = (limit - 3) // 3
        said = said[:keep] + " … " + said[-(limit - 3 - keep):]
    return said


class Tunnel:
    """``address`` (``unix:PATH``) for grpcio; each connection is a fresh port-forward from ``open_ws``.

    ``first``: an already open port-forward for the first connection (opening it before grpcio
    dials turns RBAC refusals and missing pods into clear errors instead of a closed socket)."""

    def __init__(self, open_ws: Callable[[], Any], port: int, first: Any = None):
        self._open = open_ws
        self.port = port
        self._first = first
        self.error = ""  # what the far end reported (kubelet's error channel), or why a stream could not open
        self.failure: NsinspectError | None = None
        self._dir = tempfile.mkdtemp(prefix="nsinspect-pf-")
        self.path = os.path.join(self._dir, "agent.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(16)
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._pumps: set[threading.Thread] = set()
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept, name="nsinspect-tunnel", daemon=True)
        self._acceptor.start()

    @property
    def address(self) -> str:
        return "unix:" + self.path

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            pump = threading.Thread(target=self._serve, args=(conn,), name="nsinspect-pump", daemon=True)
            with self._lock:
                self._pumps.add(pump)
            pump.start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            ws, self._first = self._first, None
            if self._closed:
                conn.close()
                return
            self._conns.add(conn)
        try:
            if ws is None:
                ws = self._open()
            self._pump(conn, ws)
        except NsinspectError as e:
            self.failure, self.error = e, str(e)
        except StreamError as e:
            self.error = self.error or f"the port-forward stream broke: {e}"
        except Exception as e:  # the stream broke: grpcio sees the socket close and reports UNAVAILABLE
            self.error = self.error or f"the port-forward stream broke ({type(e).__name__}: {e})"
        finally:
            _close(conn)
            if ws is not None:
                _close_ws(ws)
            with self._lock:
                self._conns.discard(conn)
                self._pumps.discard(threading.current_thread())

    def _pump(self, conn: socket.socket, ws: Any) -> None:
        from websocket import ABNF, WebSocketConnectionClosedException

        sock = ws.sock
        channels = Channels(self.port, framing(ws))
        ended_at: float | None = None  # when the error channel spoke or the server stopped taking data
        partial = b""  # a fragmented message so far
        while True:
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                ready: list[Any] = [sock]  # decrypted bytes wait in the TLS layer: select cannot see them
            elif ended_at is None:
                ready, _, _ = select.select([conn, sock], [], [])
            else:  # nothing more goes to a failed stream; what still comes is read, for a while
                ready, _, _ = select.select([sock], [], [], max(0.0, ended_at + CLOSE_WAIT - time.monotonic()))
                if not ready:
                    return
            if conn in ready:
                data = conn.recv(1 << 16)
                if not data:
                    return  # grpcio closed its end
                message, opcode = channels.encode(data)
                try:
                    ws.send(message, opcode)
                except (OSError, WebSocketConnectionClosedException):
                    # The server has gone; what it said before (kubelet's error text) may still be
                    # waiting to be read.
                    ended_at = time.monotonic()
            if sock in ready:
                try:
                    frame = ws.recv_frame()
                except (OSError, WebSocketConnectionClosedException):
                    return  # the connection ended without a close frame
                op = frame.opcode
                if op == ABNF.OPCODE_CLOSE:
                    self._closed_with(frame.data)
                    _quietly(ws.send_close)
                    return
                if op == ABNF.OPCODE_PING:  # answered, unless the server has gone meanwhile
                    _quietly(ws.pong, frame.data)
                    continue
                if op not in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT, ABNF.OPCODE_CONT):
                    continue  # pong
                # A message may come in fragments (continuation frames, control frames between).
                partial = frame.data if op != ABNF.OPCODE_CONT else partial + frame.data
                if not frame.fin:
                    continue
                channel, payload = channels.feed(partial)
                partial = b""
                if not payload:
                    continue
                if channel == DATA:
                    conn.sendall(payload)
                elif channel == ERROR:
                    self._said(payload.decode("utf-8", "replace"))
                    ended_at = ended_at or time.monotonic()

    def _said(self, text: str) -> None:
        with self._lock:
            self.error = (self.error + text)[:ERROR_MAX]

    def _closed_with(self, data: bytes) -> None:
        """A close frame's status, kept when it is not a normal end and nothing else was said."""
        if len(data) < 2:
            return
        code = int.from_bytes(data[:2], "big")
        reason = " ".join(data[2:].decode("utf-8", "replace").split())[:200]
        if code not in NORMAL_CLOSE and not self.error:
            self._said(f"the API server closed the port-forward with status {code}" + (f": {reason}" if reason else ""))

    def close(self) -> None:
        """Close every stream and wait (at most CLOSE_WAIT s) until the API server has let go of
        them: a caller that then opens the next tunnel never holds more streams than it meant to."""
        with self._lock:
            self._closed = True
            conns, first, self._first = list(self._conns), self._first, None
            pumps = list(self._pumps)
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        except OSError:
            pass
        _close(self._listener)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes its pump, which closes the stream
            except OSError:
                pass
        if first is not None:
            _close_ws(first)
        deadline = time.monotonic() + CLOSE_WAIT
        for thread in [self._acceptor, *pumps]:
            thread.join(max(0.0, deadline - time.monotonic()))
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Tunnel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _quietly(send: Callable[..., Any], *args: Any) -> None:
    """A control frame that may find the server gone: what it said is read all the same."""
    from websocket import WebSocketConnectionClosedException

    try:
        send(*args)
    except (OSError, WebSocketConnectionClosedException):
        pass


def _close(s: socket.socket) -> None:
    try:
        s.close()
    except OSError:
        pass


def _close_ws(ws: Any) -> None:
    """The websocket closing handshake: send a close frame, wait for the server's (or its end of
    the connection), then drop the socket."""
    try:
        ws.close(timeout=CLOSE_WAIT)
    except Exception:
        pass
    try:
        ws.shutdown()
    except Exception:
        pass
