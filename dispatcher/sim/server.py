"""The simulator's HTTP server: one aiohttp application serving v1, v2 and /_sim/ routes."""

from __future__ import annotations

import asyncio
import logging
import sys
from types import TracebackType

from aiohttp import web
from aiohttp.typedefs import Handler

from dispatcher.sim import admin, v1, v2
from dispatcher.sim.keys import STATE_KEY
from dispatcher.sim.settings import SimSettings
from dispatcher.sim.state import SimState

log = logging.getLogger("dispatcher.sim")

# A v2 raw message may be 40 MB, and arrives base64-encoded inside JSON (x 4/3).
CLIENT_MAX_SIZE = 64 * 1024 * 1024


@web.middleware
async def _no_tracebacks(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A bug answers 500 with a short JSON error; the traceback goes to the log only."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("sim.handler_failed path=%s", request.path)
        return web.json_response(
            {"message": "Internal failure in the SES simulator."},
            status=500,
            headers={"x-amzn-ErrorType": "InternalFailure"},
        )


def build_app(state: SimState) -> web.Application:
    app = web.Application(client_max_size=CLIENT_MAX_SIZE, middlewares=[_no_tracebacks])
    app[STATE_KEY] = state
    v2.add_routes(app)
    v1.add_routes(app)
    admin.add_routes(app)
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
        self.host = host
        self.port = port  # 0 until started when asked for any free port
        self._runner: web.AppRunner | None = None

    @property
    def endpoint_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("SimServer is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        runner = web.AppRunner(build_app(self.state), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, backlog=1024)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        sockname = runner.addresses[0]
        self.port = int(sockname[1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

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


async def serve(settings: SimSettings, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve until `stop` is set; prints one ready line (with the real port) once listening."""
    async with SimServer(settings, host=host, port=port) as server:
        sys.stdout.write(f"dispatcher-sim listening on {server.endpoint_url}\n")
        sys.stdout.flush()
        await stop.wait()
