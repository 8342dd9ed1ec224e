"""Inspection and control of the simulator (`/_sim/...`): what was accepted, counters, settings."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from dispatcher.sim.keys import STATE_KEY


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"error": message, "message": message},
        status=status,
        headers={"x-amzn-ErrorType": "NotFound" if status == 404 else "BadRequest"},
    )


def _int_query(request: web.Request, name: str, default: int | None) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"{name} must be an integer, got {value!r}"}),
            content_type="application/json",
        ) from None
    if number < 0:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"{name} must be >= 0, got {number}"}),
            content_type="application/json",
        )
    return number


async def messages(request: web.Request) -> web.Response:
    """GET /_sim/messages[?offset=N][&limit=N][&body=1]: accepted messages, oldest first."""
    state = request.app[STATE_KEY]
    offset = _int_query(request, "offset", 0) or 0
    limit = _int_query(request, "limit", None)
    body = request.query.get("body", "") in ("1", "true", "yes")
    end = None if limit is None else offset + limit
    return web.json_response([m.to_json(body=body) for m in state.messages[offset:end]])


async def stats(request: web.Request) -> web.Response:
    """GET /_sim/stats: counters and the limits' current levels."""
    return web.json_response(request.app[STATE_KEY].stats())


async def reset(request: web.Request) -> web.Response:
    """POST /_sim/reset: forget messages and counters, refill the limits."""
    state = request.app[STATE_KEY]
    state.reset()
    return web.json_response(state.stats())


async def get_config(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].settings.to_dict())


async def set_config(request: web.Request) -> web.Response:
    """POST /_sim/config with a JSON object of SimSettings fields: change them now."""
    state = request.app[STATE_KEY]
    try:
        changes: Any = json.loads(await request.read() or b"{}")
    except ValueError as exc:
        return _error(400, f"body is not JSON: {exc}")
    if not isinstance(changes, dict):
        return _error(400, "body must be a JSON object of settings")
    try:
        new = state.configure(changes)
    except ValueError as exc:
        return _error(400, str(exc))
    return web.json_response(new.to_dict())


async def not_found(request: web.Request) -> web.Response:
    """Every route nobody serves: a clean JSON error, never a traceback or an HTML page."""
    return _error(404, f"no route {request.method} {request.path}")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/_sim/messages", messages)
    app.router.add_get("/_sim/stats", stats)
    app.router.add_post("/_sim/reset", reset)
    app.router.add_get("/_sim/config", get_config)
    app.router.add_post("/_sim/config", set_config)


def add_fallback(app: web.Application) -> None:
    """Must be added last: it matches every path."""
    app.router.add_route("*", "/{tail:.*}", not_found)
