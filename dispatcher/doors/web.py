"""The HTTP listener for applications (`[api]`): one aiohttp app, the routes of each door, and
what they share: the key a request authenticates with, and errors as JSON."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import asyncpg  # type: ignore[import-untyped]
from aiohttp import web

from dispatcher.config import Config
from dispatcher.doors import ses_api
from dispatcher.doors.keys import ApiKey, KeyStore
from dispatcher.feedback.store import FeedbackStore
from dispatcher.obs import http as obs_http
from dispatcher.obs import ui as obs_ui
from dispatcher.obs.live import Live
from dispatcher.queue.repository import Queue
from dispatcher.worker.quota_store import SharedQuotaStore

__all__ = ["CONTEXT", "DoorContext", "DoorError", "basic_key", "build_app", "fail"]


@dataclass(frozen=True, slots=True)
class DoorContext:
    """What the doors' handlers use: the configuration and the stores of the daemon."""

    cfg: Config
    pool: asyncpg.Pool
    keys: KeyStore
    queue: Queue
    feedback: FeedbackStore
    quota: SharedQuotaStore
    live: Live | None = None  # the running daemon, for /metrics and the probes (obs.http)


CONTEXT = web.AppKey("door_context", DoorContext)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class DoorError(Exception):
    """An answer other than success: status, JSON body, extra headers (see `json_errors`)."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        super().__init__(body.get("error", ""))
        self.status = status
        self.body = body
        self.headers = headers


def fail(status: int, error: str, field: str | None = None, **headers: str) -> NoReturn:
    """Answer `status` with ``{"error": ..., "field": ...}`` (field left out when None)."""
    body: dict[str, Any] = {"error": error}
    if field is not None:
        body["field"] = field
    raise DoorError(status, body, headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal as JSON: a door's DoorError, and aiohttp's own 404/405/413."""
    try:
        return await handler(request)
    except DoorError as exc:
        return web.json_response(exc.body, status=exc.status, headers=exc.headers)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CONTEXT].cfg.api.max_body_bytes
        return web.json_response(
            {"error": f"the request body is over {limit} bytes (api.max_body_bytes)"},
            status=413,
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() != "content-type"}
        return web.json_response({"error": exc.reason}, status=exc.status, headers=headers)


async def basic_key(request: web.Request) -> ApiKey:
    """The active key of the request's HTTP Basic credentials (key id : secret), or 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Basic realm="dispatcher", charset="UTF-8"'}
    if scheme.lower() != "basic" or not value:
        fail(
            401,
            "authenticate with a key: HTTP Basic, the key id as user, its secret as password",
            **challenge,
        )
    try:
        user, sep, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8
        user, sep, secret = "", "", ""
    if not sep:
        fail(401, "malformed Basic credentials: give key-id:secret, base64-encoded", **challenge)
    key = await request.app[CONTEXT].keys.authenticate(user, secret)
    if key is None:
        fail(401, "unknown or revoked key, or wrong secret", **challenge)
    return key


def build_app(ctx: DoorContext) -> web.Application:
    """The listener's app: every door's routes, JSON errors, the body limit of `[api]`."""
    app = web.Application(client_max_size=ctx.cfg.api.max_body_bytes, middlewares=[json_errors])
    app[CONTEXT] = ctx
    from dispatcher.doors import http_api  # imports this module: imported once it is complete

    app.add_routes(http_api.routes())
    ses_api.install(app, ctx)
    obs_http.install(app, ctx)
    obs_ui.install(app, ctx)
    return app
