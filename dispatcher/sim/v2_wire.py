"""SES API v2's wire forms, shared by its route modules: the JSON body, the answers, the errors.

Errors are written the way botocore's RestJSONParser reads them: the code in the
`x-amzn-ErrorType` header, the text in the body's `message`, the HTTP status from the sesv2
service model (TooManyRequestsException 429, NotFoundException 404, the others 400).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from dispatcher.sim.errors import ACTION_THROTTLED_V2, v2_error
from dispatcher.sim.ids import request_id
from dispatcher.sim.keys import STATE_KEY
from dispatcher.sim.state import Refusal, SendError, SimState

Handler = Callable[[SimState, web.Request], Awaitable[web.Response]]
Route = Callable[[web.Request], Awaitable[web.Response]]


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"message": message}).encode(),
        content_type="application/json",
        headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": request_id()},
    )


def refusal_response(refusal: Refusal, region: str = "us-east-1") -> web.Response:
    return error_response(*v2_error(refusal, region))


def ok(body: Mapping[str, Any] | None = None) -> web.Response:
    return web.json_response(body or {}, headers={"x-amzn-RequestId": request_id()})


class BadRequest(Exception):
    """The body is not a valid request; its text is the answer."""


class BadNextToken(Exception):
    """A NextToken this simulator never handed out."""


async def read_body(request: web.Request) -> dict[str, Any]:
    return parse_body(await request.read())


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request's JSON object; BadRequest if the bytes are not one."""
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise BadRequest(str(exc) or "Malformed request.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


# What a handler raises on input it cannot read: answered BadRequestException (or
# InvalidNextTokenException), never a traceback.
MALFORMED = (BadRequest, BadNextToken, KeyError, TypeError, AttributeError, ValueError)


def malformed_answer(state: SimState, exc: Exception, malformed: str) -> web.Response:
    """The answer to one of MALFORMED raised by a handler (`malformed`: its generic text)."""
    if isinstance(exc, BadRequest):
        state.refuse(SendError.INVALID_PARAMETER, str(exc))
        return error_response(400, "BadRequestException", str(exc))
    if isinstance(exc, BadNextToken):
        # The error the sesv2 model lists for ListSuppressedDestinations (text not confirmed).
        return error_response(400, "InvalidNextTokenException", str(exc))
    state.refuse(SendError.INVALID_PARAMETER)
    return error_response(400, "BadRequestException", malformed)


def json_handler(
    func: Handler, malformed: str = "Malformed request.", *, limited: bool = True
) -> Route:
    """Malformed input of any kind answers BadRequestException, never a traceback.

    `limited`: the action is under SES's 1 request/s on API actions (all but SendEmail).
    """
    action = func.__name__

    async def handler(request: web.Request) -> web.Response:
        state = request.app[STATE_KEY]
        if limited and not state.allow_action(action):
            return error_response(*ACTION_THROTTLED_V2)
        try:
            return await func(state, request)
        except MALFORMED as exc:
            return malformed_answer(state, exc, malformed)

    handler.__doc__ = func.__doc__
    return handler
