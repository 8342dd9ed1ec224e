"""Latency, faults and throttling storms on the AWS API routes, and the no-traceback rule: the
aiohttp middlewares, and the pieces the front (front.py) shares with them for the send routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from dispatcher.clock import wait_event
from dispatcher.sim import v1, v2
from dispatcher.sim.errors import v1_error, v2_error
from dispatcher.sim.faults import FAULT_500, FAULT_503, FAULT_RESET, Faults
from dispatcher.sim.keys import CLOSING_KEY, FAULTS_KEY, STATE_KEY
from dispatcher.sim.settings import SimSettings
from dispatcher.sim.state import Refusal, SendError, SimState

log = logging.getLogger("dispatcher.sim")

THROTTLED = Refusal(SendError.THROTTLED)
_INTERNAL_TEXT = (
    "The request processing has failed because of an unknown error, exception or failure."
)
_UNAVAILABLE_TEXT = "Service is unable to handle request."
_BUG_TEXT = "Internal failure in the SES simulator."


def bug_answer(path: str) -> web.Response:
    """A handler's bug: 500 with a short error in the API's own form (the traceback is logged).

    A JSON body on the Query API is not an error botocore's ses client can read (it raises
    ResponseParserError instead of InternalFailure).
    """
    if path.startswith("/v2/"):
        return v2.error_response(500, "InternalFailure", _BUG_TEXT)
    if not path.startswith("/_sim/"):
        return v1.error_response("InternalFailure", _BUG_TEXT, status=500, type_="Receiver")
    return web.json_response(
        {"message": _BUG_TEXT}, status=500, headers={"x-amzn-ErrorType": "InternalFailure"}
    )


def fault_answer(fault: str, is_v2: bool) -> web.Response | None:
    """The answer to an HTTP 500 or 503 fault; None for a reset or a timeout (no answer)."""
    if fault not in (FAULT_500, FAULT_503):
        return None
    status = 500 if fault == FAULT_500 else 503
    code = "InternalFailure" if fault == FAULT_500 else "ServiceUnavailable"
    text = _INTERNAL_TEXT if fault == FAULT_500 else _UNAVAILABLE_TEXT
    if is_v2:
        return v2.error_response(status, code, text)
    return v1.error_response(code, text, status=status, type_="Receiver")


@dataclass(frozen=True, slots=True)
class Injected:
    """What a fault or a throttling storm does to a request once its latency has passed: an
    answer, or none (`answer` None: a reset or timeout fault, `fault` says which)."""

    answer: web.Response | None
    fault: str | None = None


def injected(
    state: SimState, faults: Faults, settings: SimSettings, *, is_v2: bool, is_send: bool
) -> Injected | None:
    """A fault, then (on a send) a throttling storm, counted; None: the request goes on. The
    `inject` middleware and the front (front.py) both ask this, so both count and answer alike.
    """
    fault = faults.fault(settings)
    if fault is not None:
        state.counters.faults += 1
        return Injected(fault_answer(fault, is_v2), fault)
    if is_send and faults.throttle(settings):
        state.counters.throttled += 1
        region = settings.region
        if is_v2:
            return Injected(v2.error_response(*v2_error(THROTTLED, region)))
        return Injected(v1.error_response(*v1_error(THROTTLED, region)))
    return None


async def hold_then_reset(
    fault: str,
    transport: asyncio.BaseTransport | None,
    closing: asyncio.Event,
    settings: SimSettings,
) -> None:
    """A reset fault now, a timeout fault after holding the request (until the server stops)."""
    if fault != FAULT_RESET:  # FAULT_TIMEOUT: hold the request, never answer
        await wait_event(closing, settings.fault_timeout_seconds)
    reset(transport)


def reset(transport: asyncio.BaseTransport | None) -> None:
    """Close the connection with an RST (SO_LINGER 0), not a clean FIN."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


@web.middleware
async def no_tracebacks(request: web.Request, handler: Handler) -> web.StreamResponse:
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
        return bug_answer(request.path)


@web.middleware
async def inject(request: web.Request, handler: Handler) -> web.StreamResponse:
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
    step = injected(state, faults, settings, is_v2=is_v2, is_send=is_send)
    if step is None:
        return await handler(request)
    if step.answer is not None:
        return step.answer
    assert step.fault is not None
    await hold_then_reset(step.fault, request.transport, app[CLOSING_KEY], settings)
    # Never reaches the client: aiohttp's write fails on the aborted transport, which it
    # treats as a client gone away (no error logged).
    return web.Response(status=500)
