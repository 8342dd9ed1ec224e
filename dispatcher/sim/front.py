"""The simulator's HTTP/1.1 front: the two send routes answered straight off the socket, every
other request handed, with its connection, to the aiohttp application.

At 3,000 sends/s the simulator shares two cores with the daemon and Postgres, and about 60 % of
its CPU went to aiohttp's machinery around a send (the request object, the router, two
middlewares, the response object and its writer), not to the send. So each connection starts
here: a request this front fully understands (`POST` of one of the send paths, HTTP/1.1, a
Content-Length, no Transfer-Encoding, Expect or Upgrade) is parsed with a few bytes
operations, its handler (v2_send's, the one the aiohttp route calls too) runs without a task
when no latency or fault is set, and its answer is written as one buffer. Anything else, from
that request on, goes to aiohttp's protocol on the same transport (asyncio's documented
`set_protocol`), which answers it as it always did; the connection stays there.

Latency, faults and throttling apply to these routes as the `inject` middleware applies them
(inject.py holds what both share), and a handler's bug answers 500 without a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import cast

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE

from dispatcher.sim.faults import Faults
from dispatcher.sim.ids import request_id
from dispatcher.sim.inject import bug_answer, hold_then_reset, injected
from dispatcher.sim.settings import SimSettings
from dispatcher.sim.state import SentMessage, SimState
from dispatcher.sim.v2_send import SEND_ROUTES, SendRoute, accepted_body

log = logging.getLogger("dispatcher.sim")

# A v2 raw message may be 40 MB, and arrives base64-encoded inside JSON (x 4/3); a larger body
# goes to aiohttp, which refuses it (413) with the same limit.
CLIENT_MAX_SIZE = 64 * 1024 * 1024
_MAX_HEAD = 65536  # bytes without the end of a head: aiohttp answers that one (400)
_ROUTES: dict[bytes, tuple[str, SendRoute]] = {
    path.encode(): (path, route) for path, route in SEND_ROUTES.items()
}
_NOT_HERE = frozenset({b"transfer-encoding", b"expect", b"upgrade"})
_SERVER = f"Server: {SERVER_SOFTWARE}\r\n".encode()
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class _Date:
    """The Date header line, formatted once a second (always English, as aiohttp's)."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            t = time.gmtime(second)
            day = f"{_WEEKDAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon]} {t.tm_year:04d}"
            text = f"Date: {day} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT\r\n"
            self._second, self._line = second, text.encode()
        return self._line


_date = _Date()


def accepted_answer(message: SentMessage, close: bool) -> bytes:
    """The bytes aiohttp writes for the send routes' 200 (see v2_send._route)."""
    body = accepted_body(message)
    return b"".join(
        (
            b"HTTP/1.1 200 OK\r\nx-amzn-RequestId: ",
            request_id().encode(),
            b"\r\nContent-Type: application/json\r\nContent-Length: ",
            str(len(body)).encode(),
            b"\r\n",
            _date.line(),
            _SERVER,
            b"Connection: close\r\n\r\n" if close else b"\r\n",
            body,
        )
    )


def response_bytes(response: web.Response, close: bool) -> bytes:
    """A prepared-by-hand web.Response: its headers, then what aiohttp adds when it prepares one
    for an HTTP/1.1 request (Content-Length, Date, Server, Connection: close)."""
    body = response.body
    data = body if isinstance(body, bytes) else b""
    headers = response.headers
    head = [f"HTTP/1.1 {response.status} {response.reason}\r\n"]
    head += [f"{name}: {value}\r\n" for name, value in headers.items()]
    if "Content-Length" not in headers:
        head.append(f"Content-Length: {len(data)}\r\n")
    if data and "Content-Type" not in headers:
        head.append("Content-Type: application/octet-stream\r\n")
    out = "".join(head).encode("utf-8")
    if "Date" not in headers:
        out += _date.line()
    if "Server" not in headers:
        out += _SERVER
    if close and "Connection" not in headers:
        out += b"Connection: close\r\n"
    return out + b"\r\n" + data


class Front:
    """The protocol factory of the simulator's listening socket (see the module's text)."""

    __slots__ = ("_app_server", "_closing", "_faults", "_loop", "_state", "connections", "tasks")

    def __init__(
        self, app_server: web.Server, state: SimState, faults: Faults, closing: asyncio.Event
    ) -> None:
        self._app_server = app_server
        self._state = state
        self._faults = faults
        self._closing = closing
        self._loop = asyncio.get_running_loop()
        self.connections: set[_Connection] = set()  # open and not handed to aiohttp
        self.tasks: set[asyncio.Task[None]] = set()  # requests held by a timeout fault

    def __call__(self) -> _Connection:
        return _Connection(self)

    def open_connections(self) -> int:
        """Connections accepted and not yet closed, here and in aiohttp's server."""
        return len(self.connections) + len(self._app_server.connections)

    async def close(self, grace: float) -> None:
        """Close idle connections now, busy ones once answered (within `grace` seconds)."""
        deadline = self._loop.time() + grace
        while True:
            for conn in list(self.connections):
                if not conn.busy:
                    conn.close()
            if not self.connections and not self.tasks:
                return
            if self._loop.time() >= deadline:
                break
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            conn.abort()


class _Connection(asyncio.Protocol):
    """One client connection while it sends only the send routes."""

    __slots__ = ("_buf", "_front", "_head", "_transport", "busy")

    def __init__(self, front: Front) -> None:
        self._front = front
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        # The parsed head of a request whose body is still arriving: (route, body start,
        # body length, close after it).
        self._head: tuple[tuple[str, SendRoute], int, int, bool] | None = None
        self.busy = False  # a request is being answered (later ones wait in _buf)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast("asyncio.Transport", transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # small answers go out at once, as aiohttp sets it
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._front.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._front.connections.discard(self)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self.busy:
            self._serve()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _serve(self) -> None:
        """Answer the complete requests in the buffer, in order, until one must wait."""
        buf = self._buf
        while buf and not self.busy and self._transport is not None:
            head = self._head
            if head is None:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > _MAX_HEAD:
                        self._hand_over()
                    return
                head = self._parse(end)
                if head is None:
                    self._hand_over()
                    return
                self._head = head
            route, start, length, close = head
            if len(buf) < start + length:
                return  # the rest of the body is still to come
            body = bytes(buf[start : start + length])
            del buf[: start + length]
            self._head = None
            self._dispatch(route, body, close)

    def _parse(self, end: int) -> tuple[tuple[str, SendRoute], int, int, bool] | None:
        """The head ending at `end` if this front answers it, else None (aiohttp will)."""
        lines = bytes(self._buf[:end]).split(b"\r\n")
        method, _, rest = lines[0].partition(b" ")
        target, _, version = rest.partition(b" ")
        route = _ROUTES.get(target)
        if method != b"POST" or version != b"HTTP/1.1" or route is None:
            return None
        length = -1
        close = False
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                return None  # no colon, an obsolete folded line, space before the colon
            name = name.lower()
            if name == b"content-length":
                value = value.strip()
                if length >= 0 or not value.isdigit():
                    return None
                length = int(value)
            elif name == b"connection":
                tokens = {t.strip() for t in value.lower().split(b",")}
                if b"upgrade" in tokens:
                    return None
                close = b"close" in tokens
            elif name in _NOT_HERE:
                return None
        if length < 0 or length > CLIENT_MAX_SIZE:
            return None
        return route, end + 4, length, close

    def _hand_over(self) -> None:
        """From this request on, the connection is aiohttp's (its protocol on our transport)."""
        transport = self._transport
        assert transport is not None
        self._front.connections.discard(self)
        self._transport = None
        protocol = self._front._app_server()
        protocol.connection_made(transport)
        transport.set_protocol(protocol)
        data = bytes(self._buf)
        self._buf.clear()
        protocol.data_received(data)

    def _dispatch(self, route: tuple[str, SendRoute], body: bytes, close: bool) -> None:
        front = self._front
        settings = front._state.settings
        faults = front._faults
        if faults.quiet(settings):
            self._answer(route, body, close)
            return
        self.busy = True
        delay = faults.latency(settings)
        if delay > 0:
            front._loop.call_later(delay, self._after_delay, route, body, close, settings)
        else:
            self._after_delay(route, body, close, settings)

    def _after_delay(
        self, route: tuple[str, SendRoute], body: bytes, close: bool, settings: SimSettings
    ) -> None:
        """The `inject` middleware's steps after the latency, for a v2 send."""
        front = self._front
        step = injected(front._state, front._faults, settings, is_v2=True, is_send=True)
        if step is None:
            self._answer(route, body, close)
        elif step.answer is not None:
            self._write(response_bytes(step.answer, close), close)
        else:  # reset, or held until the server stops and then reset
            assert step.fault is not None
            task = front._loop.create_task(
                hold_then_reset(step.fault, self._transport, front._closing, settings)
            )
            front.tasks.add(task)
            task.add_done_callback(front.tasks.discard)
            return  # stays busy: nothing more is read on this connection
        self.busy = False
        self._serve()

    def _answer(self, route: tuple[str, SendRoute], body: bytes, close: bool) -> None:
        path, send = route
        try:
            result = send(self._front._state, body)
        except Exception:
            log.exception("sim.handler_failed path=%s", path)
            result = bug_answer(path)
        if isinstance(result, SentMessage):
            self._write(accepted_answer(result, close), close)
        else:
            self._write(response_bytes(result, close), close)

    def _write(self, data: bytes, close: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return  # the client went away while we worked: nothing of ours failed
        transport.write(data)
        if close:
            transport.close()
