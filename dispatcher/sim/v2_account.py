"""SES API v2 account actions: GetAccount (the send quota and status), the account's sending
switch, and the account-level suppression list."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from dispatcher.sim.account import SUPPRESSION_REASONS, Suppressed
from dispatcher.sim.state import SimState, address_problem
from dispatcher.sim.v2_wire import (
    BadNextToken,
    BadRequest,
    error_response,
    json_handler,
    ok,
    read_body,
)


async def _get_account(state: SimState, request: web.Request) -> web.Response:
    """GET /v2/email/account: the send quota plus the account's status."""
    state.counters.quota_reads += 1
    max24, rate, sent = state.send_quota()
    account = state.account
    return ok(
        {
            "SendQuota": {"Max24HourSend": max24, "MaxSendRate": rate, "SentLast24Hours": sent},
            "SendingEnabled": account.sending_enabled and account.enforcement_status != "SHUTDOWN",
            "ProductionAccessEnabled": not state.settings.sandbox,
            "EnforcementStatus": account.enforcement_status,
            "DedicatedIpAutoWarmupEnabled": False,
            "SuppressionAttributes": {"SuppressedReasons": list(SUPPRESSION_REASONS)},
        }
    )


async def _put_account_sending(state: SimState, request: web.Request) -> web.Response:
    """PUT /v2/email/account/sending (PutAccountSendingAttributes)."""
    body = await read_body(request)
    state.account.sending_enabled = bool(body.get("SendingEnabled", False))
    return ok()


# -- suppression list ----------------------------------------------------------------------


def _not_suppressed(address: str) -> web.Response:
    return error_response(
        404,
        "NotFoundException",
        f"Email address {address} does not exist on your suppression list.",
    )


async def _put_suppressed(state: SimState, request: web.Request) -> web.Response:
    """PUT /v2/email/suppression/addresses (PutSuppressedDestination)."""
    body = await read_body(request)
    address = body.get("EmailAddress")
    reason = body.get("Reason")
    if not address or not isinstance(address, str) or address_problem(address):
        raise BadRequest(f"Invalid email address {address}.")
    if reason not in SUPPRESSION_REASONS:
        raise BadRequest(f"Reason must be one of {', '.join(SUPPRESSION_REASONS)}.")
    key = address.lower()
    state.account.suppressed[key] = Suppressed(key, reason, state.wall_time())
    return ok()


async def _get_suppressed(state: SimState, request: web.Request) -> web.Response:
    """GET /v2/email/suppression/addresses/{EmailAddress}."""
    address = request.match_info["address"]
    found = state.account.suppressed.get(address.lower())
    if found is None:
        return _not_suppressed(address)
    return ok(
        {
            "SuppressedDestination": {
                "EmailAddress": found.address,
                "Reason": found.reason,
                "LastUpdateTime": found.updated_at,
            }
        }
    )


async def _list_suppressed(state: SimState, request: web.Request) -> web.Response:
    """GET /v2/email/suppression/addresses (ListSuppressedDestinations): by address order,
    filtered by Reason and LastUpdateTime, PageSize (at most 1000) per page with NextToken."""
    query = request.rel_url.query
    reasons = set(query.getall("Reason", [])) or set(SUPPRESSION_REASONS)
    if not reasons <= set(SUPPRESSION_REASONS):
        raise BadRequest(f"Reason must be one of {', '.join(SUPPRESSION_REASONS)}.")
    token = query.get("NextToken", "0")
    if not token.isdigit():
        raise BadNextToken(f"Invalid NextToken {token}.")
    start = int(token)
    try:
        size = int(query.get("PageSize", "1000"))
        since = _timestamp(query.get("StartDate"))
        until = _timestamp(query.get("EndDate"))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if not 1 <= size <= 1000:
        raise BadRequest("PageSize must be between 1 and 1000.")
    matching = [
        found
        for _, found in sorted(state.account.suppressed.items())
        if found.reason in reasons
        and (since is None or found.updated_at >= since)
        and (until is None or found.updated_at <= until)
    ]
    page = matching[start : start + size]
    body: dict[str, Any] = {
        "SuppressedDestinationSummaries": [
            {"EmailAddress": f.address, "Reason": f.reason, "LastUpdateTime": f.updated_at}
            for f in page
        ]
    }
    if start + size < len(matching):
        body["NextToken"] = str(start + size)
    return ok(body)


def _timestamp(text: str | None) -> float | None:
    """A query-string timestamp as botocore sends it (ISO 8601), or epoch seconds."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ValueError(f"Invalid timestamp {text!r}.") from None


async def _delete_suppressed(state: SimState, request: web.Request) -> web.Response:
    address = request.match_info["address"]
    if state.account.suppressed.pop(address.lower(), None) is None:
        return _not_suppressed(address)
    return ok()


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/v2/email/account", json_handler(_get_account))
    r.add_put("/v2/email/account/sending", json_handler(_put_account_sending))
    r.add_put("/v2/email/suppression/addresses", json_handler(_put_suppressed))
    r.add_get("/v2/email/suppression/addresses", json_handler(_list_suppressed))
    r.add_get("/v2/email/suppression/addresses/{address}", json_handler(_get_suppressed))
    r.add_delete("/v2/email/suppression/addresses/{address}", json_handler(_delete_suppressed))
