"""SES API v2 list management: CreateContactList, GetContactList, and the check of a send's
ListManagementOptions (the list must exist, the topic must be one of its topics). Routed by
`v2.add_routes`, with v2's error forms.

SES allows one contact list per account (a second CreateContactList: LimitExceededException).
Contacts and their preferences are not simulated: every recipient counts as subscribed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from dispatcher.sim.state import SimState
from dispatcher.sim.v2_wire import BadRequest, error_response, json_handler, ok, read_body

MAX_CONTACT_LISTS = 1  # SES's quota: one contact list per account


async def _create_contact_list(state: SimState, request: web.Request) -> web.Response:
    """POST /v2/email/contact-lists: a list with its topics (names only are kept)."""
    body = await read_body(request)
    name = body.get("ContactListName")
    if not isinstance(name, str) or not name:
        raise BadRequest("Missing required parameter ContactListName.")
    lists = state.account.contact_lists
    if name in lists:
        # Not confirmed: the text.
        return error_response(400, "AlreadyExistsException", f"List {name} already exists.")
    if len(lists) >= MAX_CONTACT_LISTS:
        # Not confirmed: the text (the one-list quota is AWS's).
        return error_response(
            400, "LimitExceededException", "Maximum number of contact lists reached."
        )
    topics = body.get("Topics") or []
    lists[name] = frozenset(str(t["TopicName"]) for t in topics)
    return ok()


async def _get_contact_list(state: SimState, request: web.Request) -> web.Response:
    """GET /v2/email/contact-lists/{ContactListName}."""
    name = request.match_info["name"]
    topics = state.account.contact_lists.get(name)
    if topics is None:
        return _no_list(name)
    return ok(
        {
            "ContactListName": name,
            "Topics": [
                {"TopicName": t, "DisplayName": t, "DefaultSubscriptionStatus": "OPT_IN"}
                for t in sorted(topics)
            ],
        }
    )


def _no_list(name: str) -> web.Response:
    # The code as another SES emulator found it (floci #1875); not confirmed: the text.
    return error_response(404, "NotFoundException", f"List {name} does not exist.")


def list_options(state: SimState, body: Mapping[str, Any]) -> dict[str, str] | web.Response:
    """A SendEmail's ListManagementOptions as recorded ({} without), or SES's refusal."""
    options = body.get("ListManagementOptions")
    if options is None:
        return {}
    if not isinstance(options, dict) or not isinstance(options.get("ContactListName"), str):
        raise BadRequest("ListManagementOptions needs a ContactListName.")
    name = options["ContactListName"]
    topics = state.account.contact_lists.get(name)
    if topics is None:
        state.counters.refused_account += 1
        return _no_list(name)
    topic = options.get("TopicName")
    if topic is not None and topic not in topics:
        state.counters.refused_account += 1
        # Not confirmed: the text (the code: floci #1875, as for the list).
        return error_response(400, "BadRequestException", f"Topic {topic} does not exist.")
    return {k: str(v) for k, v in options.items() if k in ("ContactListName", "TopicName")}


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_post("/v2/email/contact-lists", json_handler(_create_contact_list))
    r.add_get("/v2/email/contact-lists/{name}", json_handler(_get_contact_list))
