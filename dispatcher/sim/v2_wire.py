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
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise BadRequest(str(exc) or "Malformed request.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


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
        except BadRequest as exc:
            state.refuse(SendError.INVALID_PARAMETER, str(exc))
            return error_response(400, "BadRequestException", str(exc))
        except BadNextToken as exc:
            # The error the sesv2 model lists for ListSuppressedDestinations (text not confirmed).
            return error_response(400, "InvalidNextTokenException", str(exc))
        except (KeyError, TypeError, AttributeError, ValueError):
            state.refuse(SendError.INVALID_PARAMETER)
            return error_response(400, "BadRequestException", malformed)

    handler.__doc__ = func.__doc__
    return handler
