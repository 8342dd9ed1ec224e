"""The simulator's HTTP server: one aiohttp application serving v1, v2 and /_sim/ routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import sys
from pathlib import Path
from types import TracebackType

from aiohttp import web
from aiohttp.typedefs import Handler

from dispatcher.clock import wait_event
from dispatcher.sim import admin, admin_events, v1, v2
from dispatcher.sim.errors import v1_error, v2_error
from dispatcher.sim.faults import FAULT_500, FAULT_503, FAULT_RESET, Faults
from dispatcher.sim.keys import CLOSING_KEY, FAULTS_KEY, PUBLISHER_KEY, STATE_KEY
from dispatcher.sim.publisher import Publisher
from dispatcher.sim.settings import SimSettings
from dispatcher.sim.state import Refusal, SendError, SimState

log = logging.getLogger("dispatcher.sim")

# A v2 raw message may be 40 MB, and arrives base64-encoded inside JSON (x 4/3).
CLIENT_MAX_SIZE = 64 * 1024 * 1024
_THROTTLED = Refusal(SendError.THROTTLED)
_INTERNAL_TEXT = (
    "The request processing has failed because of an unknown error, exception or failure."
)
_UNAVAILABLE_TEXT = "Service is unable to handle request."
LISTEN_BACKLOG = 16384  # connections waiting to be accepted (the kernel caps it at somaxconn)
# The line `serve` prints once it listens; whoever started it reads the address from it.
READY_PREFIX = "dispatcher-sim listening on "


@web.middleware
async def _no_tracebacks(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A bug answers 500 with a short JSON error; the traceback goes to the log only."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except ConnectionError:
        # The client went away mid-request (a killed sender): nothing of ours failed.
        log.info("sim.client_gone path=%s", request.path)
        raise
    except Exception:
        log.exception("sim.handler_failed path=%s", request.path)
        text = "Internal failure in the SES simulator."
        # In each API's own error form: a JSON body on the Query API is not an error botocore's
        # ses client can read (it raises ResponseParserError instead of InternalFailure).
        if request.path.startswith("/v2/"):
            return v2.error_response(500, "InternalFailure", text)
        if not request.path.startswith("/_sim/"):
            return v1.error_response("InternalFailure", text, status=500, type_="Receiver")
        return web.json_response(
            {"message": text}, status=500, headers={"x-amzn-ErrorType": "InternalFailure"}
        )


@web.middleware
async def _inject(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Latency, faults and throttling storms on the AWS API routes (never on /_sim/)."""
    app = request.app
    state = app[STATE_KEY]
    settings = state.settings
    faults = app[FAULTS_KEY]
    path = request.path
    if faults.quiet(settings) or path.startswith("/_sim/"):
        return await handler(request)
    is_v2 = path.startswith("/v2/")
    if is_v2:
        is_send = request.method == "POST" and path in v2.SEND_PATHS
    else:
        is_send = (await v1.params_of(request)).get("Action") in v1.SEND_ACTIONS
    if is_send:
        delay = faults.latency(settings)
        if delay > 0:
            await asyncio.sleep(delay)
    fault = faults.fault(settings)
    if fault is not None:
        state.counters.faults += 1
        return await _fail(request, fault, is_v2, settings)
    if is_send and faults.throttle(settings):
        state.counters.throttled += 1
        region = settings.region
        if is_v2:
            return v2.error_response(*v2_error(_THROTTLED, region))
        return v1.error_response(*v1_error(_THROTTLED, region))
    return await handler(request)


async def _fail(
    request: web.Request, fault: str, is_v2: bool, settings: SimSettings
) -> web.StreamResponse:
    if fault in (FAULT_500, FAULT_503):
        status = 500 if fault == FAULT_500 else 503
        code = "InternalFailure" if fault == FAULT_500 else "ServiceUnavailable"
        text = _INTERNAL_TEXT if fault == FAULT_500 else _UNAVAILABLE_TEXT
        if is_v2:
            return v2.error_response(status, code, text)
        return v1.error_response(code, text, status=status, type_="Receiver")
    if fault != FAULT_RESET:  # FAULT_TIMEOUT: hold the request, never answer
        closing = request.app[CLOSING_KEY]
        await wait_event(closing, settings.fault_timeout_seconds)
    _reset(request)
    # Never reaches the client: aiohttp's write fails on the aborted transport, which it
    # treats as a client gone away (no error logged).
    return web.Response(status=500)


def _reset(request: web.Request) -> None:
    """Close the connection with an RST (SO_LINGER 0), not a clean FIN."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def build_app(
    state: SimState, *, publisher: Publisher | None = None, faults: Faults | None = None
) -> web.Application:
    app = web.Application(client_max_size=CLIENT_MAX_SIZE, middlewares=[_no_tracebacks, _inject])
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

    @property
    def endpoint_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("SimServer is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def open_connections(self) -> int:
        """Connections accepted and not yet closed."""
        if self._runner is None or self._runner.server is None:
            return 0
        return len(self._runner.server.connections)

    async def start(self) -> None:
        self._app = build_app(self.state, publisher=self.publisher, faults=self.faults)
        runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            # A sender opens its pool's connections in bursts (hundreds at once at 3,000/s):
            # a short accept queue overflows, and the kernel then drops the opening ACK with
            # the request riding on it, so those requests stall for seconds of retransmission.
            # SES has no such limit; Linux caps this at net.core.somaxconn.
            site = web.TCPSite(runner, self.host, self.port, backlog=LISTEN_BACKLOG)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        sockname = runner.addresses[0]
        self.port = int(sockname[1])
        self.publisher.base_url = self.endpoint_url

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if self._app is not None:
            self._app[CLOSING_KEY].set()  # let requests held by a timeout fault go
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
        sys.stdout.write(f"{READY_PREFIX}{server.endpoint_url}\n")
        sys.stdout.flush()
        await stop.wait()
