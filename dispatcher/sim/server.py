"""The simulator's HTTP server: one aiohttp application serving v1, v2 and /_sim/ routes, behind
the front (front.py) that answers the two send routes itself."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from types import TracebackType

from aiohttp import web

from dispatcher.runtime import settle_heap
from dispatcher.sim import admin, admin_events, v1, v2
from dispatcher.sim.faults import Faults
from dispatcher.sim.front import CLIENT_MAX_SIZE, Front
from dispatcher.sim.inject import inject, no_tracebacks
from dispatcher.sim.keys import CLOSING_KEY, FAULTS_KEY, PUBLISHER_KEY, STATE_KEY
from dispatcher.sim.publisher import Publisher
from dispatcher.sim.settings import SimSettings
from dispatcher.sim.state import SimState

LISTEN_BACKLOG = 16384  # connections waiting to be accepted (the kernel caps it at somaxconn)
# The line `serve` prints once it listens; whoever started it reads the address from it.
READY_PREFIX = "dispatcher-sim listening on "
STOP_TIMEOUT = 60.0  # seconds a request in hand may take to finish when the server stops


def build_app(
    state: SimState, *, publisher: Publisher | None = None, faults: Faults | None = None
) -> web.Application:
    app = web.Application(client_max_size=CLIENT_MAX_SIZE, middlewares=[no_tracebacks, inject])
    app[STATE_KEY] = state
    app[FAULTS_KEY] = faults or Faults()
    publisher = publisher or Publisher(state)
    app[PUBLISHER_KEY] = publisher
    app[CLOSING_KEY] = asyncio.Event()

    async def close_publisher(app: web.Application) -> None:
        await publisher.close()

    app.on_cleanup.append(close_publisher)
    v2.add_routes(app)
    v1.add_routes(app)
    admin.add_routes(app)
    admin_events.add_routes(app)
    admin.add_fallback(app)
    return app


class SimServer:
    """The simulator on a loopback port, in this event loop: `async with SimServer() as sim:`."""

    def __init__(
        self,
        settings: SimSettings | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state: SimState | None = None,
    ) -> None:
        self.state = state or SimState(settings)
        self.faults = Faults()
        self.publisher = Publisher(self.state)
        self.host = host
        self.port = port  # 0 until started when asked for any free port
        self._runner: web.AppRunner | None = None
        self._app: web.Application | None = None
        self._front: Front | None = None
        self._listener: asyncio.Server | None = None

    @property
    def endpoint_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("SimServer is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def open_connections(self) -> int:
        """Connections accepted and not yet closed."""
        return 0 if self._front is None else self._front.open_connections()

    async def start(self) -> None:
        app = self._app = build_app(self.state, publisher=self.publisher, faults=self.faults)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            assert runner.server is not None
            front = Front(runner.server, self.state, self.faults, app[CLOSING_KEY])
            # The front takes every connection and hands aiohttp those it does not serve.
            # A sender opens its pool's connections in bursts (hundreds at once at 3,000/s):
            # a short accept queue overflows, and the kernel then drops the opening ACK with
            # the request riding on it, so those requests stall for seconds of retransmission.
            # SES has no such limit; Linux caps this at net.core.somaxconn.
            listener = await asyncio.get_running_loop().create_server(
                front, self.host, self.port, backlog=LISTEN_BACKLOG
            )
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._front, self._listener = runner, front, listener
        self.port = int(listener.sockets[0].getsockname()[1])
        self.publisher.base_url = self.endpoint_url

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        front, self._front = self._front, None
        listener, self._listener = self._listener, None
        if self._app is not None:
            self._app[CLOSING_KEY].set()  # let requests held by a timeout fault go
        if listener is not None:
            listener.close()
        if front is not None:
            await front.close(STOP_TIMEOUT)
        if runner is not None:
            await runner.cleanup()  # the connections handed to aiohttp, then the app
        if listener is not None:
            await listener.wait_closed()

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def serve(
    settings: SimSettings,
    host: str,
    port: int,
    stop: asyncio.Event,
    *,
    setup: list[tuple[str, dict[str, object]]] | None = None,
    cert_file: str = "",
) -> None:
    """Serve until `stop` is set; prints one ready line (with the real port) once listening.

    `setup`: admin calls to make before the ready line, e.g. ("subscribe", {...}),
    ("verify", {"identity": ...}); `cert_file`: where to write the SNS signing certificate.
    """
    async with SimServer(settings, host=host, port=port) as server:
        for action, args in setup or ():
            admin.apply(server.state, server.publisher, action, args)
        if cert_file:
            Path(cert_file).write_bytes(server.publisher.signer.certificate_pem)  # noqa: ASYNC240
        # The process is the simulator's alone: keep the collector off what start-up built, and
        # let each request's short-lived objects die before a collection looks at them (it took
        # about a tenth of the CPU per send at 1,000/s, py-spy --native).
        settle_heap()
        sys.stdout.write(f"{READY_PREFIX}{server.endpoint_url}\n")
        sys.stdout.flush()
        await stop.wait()
