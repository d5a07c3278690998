"""A bridge between grpcio and the API server's port-forward.

grpcio dials addresses; it cannot speak through a websocket.  A ``Tunnel`` is a unix socket in
a fresh private directory (mode 0700, so no other local user can ride our credentials, which
a loopback TCP port would allow); every connection grpcio makes to it becomes one port-forward
stream (``v4.channel.k8s.io``) to the agent's port, pumped by one thread.

The protocol, per forwarded port: channel 0 carries data and channel 1 errors; the server
opens each with a frame holding the port number (2 bytes, little endian); after that, every
binary frame is the channel byte followed by payload.  kubelet reports a failure to connect
inside the pod on channel 1 and closes the stream; the text is kept in ``error``.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from nsinspect.errors import NsinspectError

DATA, ERROR = 0, 1
CLOSE_WAIT = 1.0  # seconds to wait for the API server to answer a stream's close


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
        opened = [False, False]
        while True:
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                ready: list[Any] = [sock]
            else:
                ready, _, _ = select.select([conn, sock], [], [])
            if conn in ready:
                data = conn.recv(1 << 16)
                if not data:
                    return  # grpcio closed its end
                ws.send(bytes((DATA,)) + data, ABNF.OPCODE_BINARY)
            if sock in ready:
                try:
                    op, frame = ws.recv_data_frame(True)
                except WebSocketConnectionClosedException:
                    return
                if op == ABNF.OPCODE_CLOSE:
                    return
                if op != ABNF.OPCODE_BINARY or not frame.data:
                    continue
                channel, payload = frame.data[0], frame.data[1:]
                if channel not in (DATA, ERROR):
                    raise ValueError(f"unexpected port-forward channel {channel}")
                if not opened[channel]:
                    opened[channel] = True
                    if len(payload) != 2 or int.from_bytes(payload, "little") != self.port:
                        raise ValueError("the port-forward stream opened for another port")
                    continue
                if channel == DATA:
                    conn.sendall(payload)
                else:
                    self.error += payload.decode("utf-8", "replace")

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
