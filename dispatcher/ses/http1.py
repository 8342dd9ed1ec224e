"""A minimal HTTP/1.1 client for the sends: POST on keep-alive connections, one request at a time
on each, and the answer read whole (Content-Length, chunked, or until close).

Why not aiohttp: with botocore gone from the sends, aiohttp's client was the largest cost left
on a send (about 0.1 ms of CPU per request here: a request and a response object, header
multidicts, cookie, trace and middleware hooks, a task to write the body). The sends need none of
it: one host, two paths, small JSON bodies both ways. What they do need is kept: a pool bounded
at `limit` connections, connect and read timeouts, TLS with the system's or a given CA bundle,
and a clear line between a failure before the request was written (`ConnectFailed`: never sent)
and one after it (`Disconnected`, `TimeoutError`: SES may have it). A connection is reused only
after a complete answer that does not ask to close it; any failure closes it.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import cast

__all__ = [
    "ConnectFailed",
    "ConnectTimedOut",
    "Disconnected",
    "Http1Pool",
    "ProtocolError",
    "Response",
]

_MAX_HEAD = 65536  # bytes of status line and headers before the answer is refused as garbage
IDLE_SECONDS = 10.0  # reuse an idle connection only this long (AWS closes idle ones later)

Response = tuple[int, dict[str, str], bytes]  # status, headers (lower-case names), body


class ConnectFailed(OSError):
    """The connection could not be opened (refused, unreachable, DNS, TLS): the request was
    never written."""


class ConnectTimedOut(ConnectFailed):
    """No connection within the connect timeout: the request was never written."""


class Disconnected(OSError):
    """The connection closed (or was reset) after the request was written, before a whole answer
    was read: the server may have acted on it."""


class ProtocolError(ValueError):
    """The answer is not HTTP/1.1 as we read it (after the request was written)."""


class _Conn(asyncio.Protocol):
    """One connection: feeds the answer to the current request's future."""

    __slots__ = (
        "_body",
        "_buf",
        "_chunked",
        "_headers",
        "_length",
        "_read_timeout",
        "_status",
        "_timer",
        "_waiter",
        "closed",
        "keep",
        "transport",
        "used_at",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.keep = True  # the last answer allows another request
        self.used_at = 0.0
        self._waiter: asyncio.Future[Response] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._read_timeout = 0.0
        self._buf = bytearray()
        self._status = 0
        self._headers: dict[str, str] | None = None
        self._length: int | None = None
        self._chunked = False
        self._body = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport instances, but have its methods.
        self.transport = cast("asyncio.Transport", transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            if self._headers is not None and self._length is None and not self._chunked:
                self._finish(bytes(self._buf))  # an answer delimited by the close
            else:
                self._fail(Disconnected(f"connection closed before the answer was read: {exc}"))

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # nothing asked (e.g. a 408 on an idle connection): drop it
            self.close()
            return
        self._buf += data
        try:
            self._parse()
        except ProtocolError as exc:
            self._fail(exc)
            self.close()
            return
        if self._timer is not None and self._waiter is not None:  # silence counts from here
            self._timer.cancel()
            self._arm()

    def request(self, data: bytes, read_timeout: float) -> asyncio.Future[Response]:
        """Write a whole request; the future gets its answer."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._read_timeout = read_timeout
        self._status, self._headers, self._length, self._chunked = 0, None, None, False
        self._buf.clear()
        self._body.clear()
        self.transport.write(data)
        self._arm()
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._read_timeout, self._timed_out)

    def _timed_out(self) -> None:
        if self.transport is not None and self.transport.get_write_buffer_size():
            self._arm()  # still uploading a large request: the silence has not begun
            return
        self._fail(TimeoutError(f"no answer within {self._read_timeout} s of silence"))
        self.close()

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _finish(self, body: bytes) -> None:
        waiter, self._waiter = self._waiter, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        assert self._headers is not None
        if waiter is not None and not waiter.done():
            waiter.set_result((self._status, self._headers, body))

    def _parse(self) -> None:
        buf = self._buf
        while self._headers is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    raise ProtocolError("answer head too long")
                return
            self._head(bytes(buf[:end]))
            del buf[: end + 4]
        if self._chunked:
            self._chunks()
        elif self._length is not None and len(buf) >= self._length:
            if len(buf) > self._length:  # bytes after the answer: the connection is unusable
                self.keep = False
            self._finish(bytes(buf[: self._length]))

    def _head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        status = int(code)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ProtocolError(f"malformed header line: {line[:80]!r}")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            return
        connection = headers.get("connection", "").lower()
        self.keep = self.keep and (
            "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
        )
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunked = True
        elif "content-length" in headers:
            length = headers["content-length"]
            if not length.isdigit():
                raise ProtocolError(f"bad Content-Length {length[:40]!r}")
            self._length = int(length)
        elif status in (204, 304):
            self._length = 0
        else:
            self.keep = False  # delimited by the close
        self._status, self._headers = status, headers

    def _chunks(self) -> None:
        buf = self._buf
        while True:
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                return
            size_text = bytes(buf[:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                trailer_end = buf.find(b"\r\n\r\n", line_end)  # after trailers, if any
                if trailer_end < 0:
                    return
                del buf[: trailer_end + 4]
                if buf:
                    self.keep = False
                self._finish(bytes(self._body))
                return
            if len(buf) < line_end + 2 + size + 2:
                return
            start = line_end + 2
            self._body += buf[start : start + size]
            del buf[: start + size + 2]


class Http1Pool:
    """Keep-alive connections to one host, at most `limit` open; `post` waits for a free one."""

    __slots__ = (
        "_busy",
        "_connect_timeout",
        "_host",
        "_host_header",
        "_idle",
        "_idle_seconds",
        "_limit",
        "_port",
        "_read_timeout",
        "_ssl",
        "_waiters",
    )

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None,
        limit: int,
        connect_timeout: float,
        read_timeout: float,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self._host = host
        self._port = port
        default_port = 443 if tls is not None else 80
        bracketed = f"[{host}]" if ":" in host else host
        # As SendSigner signs it: the port only when it is not the scheme's.
        self._host_header = bracketed if port == default_port else f"{bracketed}:{port}"
        self._ssl = tls
        self._limit = max(1, limit)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle_seconds = idle_seconds
        self._idle: deque[_Conn] = deque()  # oldest first
        self._busy = 0  # connections open and in use, or being opened
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def post(self, path: str, headers: dict[str, str], body: bytes) -> Response:
        """POST `body`; ConnectFailed if no connection could be opened (nothing was sent),
        Disconnected, TimeoutError or ProtocolError once the request was written."""
        head = [f"POST {path} HTTP/1.1\r\nHost: {self._host_header}\r\n"]
        head += [f"{k}: {v}\r\n" for k, v in headers.items()]
        head.append(f"Content-Length: {len(body)}\r\n\r\n")
        data = "".join(head).encode("latin-1") + body
        conn = await self._acquire()
        try:
            answer = await conn.request(data, self._read_timeout)
        except BaseException:
            conn.close()  # whatever it holds now (a late answer) must not meet the next request
            self._release(None)
            raise
        if conn.keep and not conn.closed:
            self._release(conn)
        else:  # the answer said close (or the server did): not reused
            conn.close()
            self._release(None)
        return answer

    async def close(self) -> None:
        """Close every idle connection (those in use close when their request ends)."""
        while self._idle:
            self._idle.popleft().close()
        # A transport closes its socket on the loop's next turn: let it, before the loop ends.
        await asyncio.sleep(0)

    async def _acquire(self) -> _Conn:
        while True:
            now = time.monotonic()
            while self._idle:
                conn = self._idle.pop()  # the most recently used: the least likely to be stale
                if conn.closed or now - conn.used_at > self._idle_seconds:
                    conn.close()
                    continue
                self._busy += 1
                return conn
            if self._busy < self._limit:
                self._busy += 1
                try:
                    return await self._connect()
                except BaseException:
                    self._release(None)
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._wake()  # woken just as we were cancelled: pass the turn on
                raise

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    _Conn,
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl is not None else None,
                )
        except TimeoutError:
            raise ConnectTimedOut(
                f"Connection timeout to host {self._host_header} after {self._connect_timeout} s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"Cannot connect to host {self._host_header}: {exc}") from exc
        return conn

    def _release(self, conn: _Conn | None) -> None:
        self._busy -= 1
        if conn is not None:
            conn.used_at = now = time.monotonic()
            self._idle.append(conn)
            idle = self._idle
            # After a burst, close what has not been needed since (its socket, its fd).
            while now - idle[0].used_at > self._idle_seconds:
                idle.popleft().close()
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
