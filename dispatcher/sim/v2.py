"""SES API v2 (REST-JSON, `sesv2` client) on top of SimState: its routes, one module a job.

v2_send (SendEmail, SendBulkEmail), v2_identities (identities, templates, configuration sets),
v2_account (the account and its suppression list), v2_setup (the set-up reads doctor asks),
v2_lists (contact lists); v2_wire holds the body, answer and error forms they share.
"""

from __future__ import annotations

from aiohttp import web

from dispatcher.sim import v2_account, v2_identities, v2_lists, v2_send, v2_setup
from dispatcher.sim.v2_send import RAW_MAX_BYTES, SEND_PATHS
from dispatcher.sim.v2_wire import error_response, refusal_response

__all__ = [
    "RAW_MAX_BYTES",
    "SEND_PATHS",
    "add_routes",
    "error_response",
    "refusal_response",
    "unknown_operation",
]


async def unknown_operation(request: web.Request) -> web.Response:
    """Any other /v2/ route: a clean REST-JSON error (AWS's code for an unrouted request)."""
    return error_response(
        404, "UnknownOperationException", f"No operation at {request.method} {request.path}."
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    v2_send.add_routes(r)
    v2_account.add_routes(r)
    v2_identities.add_routes(r)
    v2_setup.add_routes(r)
    v2_lists.add_routes(r)
    r.add_route("*", "/v2/{tail:.*}", unknown_operation)  # last: every route above comes first
