"""SES API v2 reads of an account's set-up, the questions `dispatcher doctor` asks:
ListEmailIdentities, GetConfigurationSet and a configuration set's event destinations
(CreateConfigurationSetEventDestination records them; nothing is delivered through them, the
/_sim/subscriptions do that). Routed by `v2.add_routes`, with v2's error forms."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dispatcher.sim.state import SimState
from dispatcher.sim.v2_wire import BadRequest, error_response, json_handler, ok, read_body


async def _list_email_identities(state: SimState, request: web.Request) -> web.Response:
    """GET /v2/email/identities (ListEmailIdentities): by name, PageSize (at most 1000) per page
    with NextToken."""
    query = request.rel_url.query
    token = query.get("NextToken", "0")
    if not token.isdigit():
        raise BadRequest(f"Invalid NextToken {token}.")  # not confirmed: the text
    start = int(token)
    try:
        size = int(query.get("PageSize", "1000"))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if not 1 <= size <= 1000:
        raise BadRequest("PageSize must be between 1 and 1000.")
    found = [identity for _, identity in sorted(state.account.identities.items())]
    body: dict[str, Any] = {
        "EmailIdentities": [
            {
                "IdentityType": i.kind,
                "IdentityName": i.name,
                "SendingEnabled": True,
                "VerificationStatus": i.verification_status,
            }
            for i in found[start : start + size]
        ]
    }
    if start + size < len(found):
        body["NextToken"] = str(start + size)
    return ok(body)


def _no_configuration_set(name: str) -> web.Response:
    return error_response(404, "NotFoundException", f"Configuration set <{name}> does not exist.")


async def _get_configuration_set(state: SimState, request: web.Request) -> web.Response:
    """GET /v2/email/configuration-sets/{ConfigurationSetName}."""
    name = request.match_info["name"]
    found = state.account.configuration_sets.get(name)
    if found is None:
        return _no_configuration_set(name)
    return ok(
        {
            "ConfigurationSetName": name,
            "SendingOptions": {"SendingEnabled": found.sending_enabled},
            "ReputationOptions": {"ReputationMetricsEnabled": False},
            "Tags": [],
        }
    )


EVENT_DESTINATION_TYPES = (
    "SEND",
    "REJECT",
    "BOUNCE",
    "COMPLAINT",
    "DELIVERY",
    "OPEN",
    "CLICK",
    "RENDERING_FAILURE",
    "DELIVERY_DELAY",
    "SUBSCRIPTION",
)
_DESTINATION_KINDS = (
    "KinesisFirehoseDestination",
    "CloudWatchDestination",
    "SnsDestination",
    "EventBridgeDestination",
    "PinpointDestination",
)


async def _create_event_destination(state: SimState, request: web.Request) -> web.Response:
    """POST /v2/email/configuration-sets/{name}/event-destinations
    (CreateConfigurationSetEventDestination): recorded, reported by the GET."""
    name = request.match_info["name"]
    found = state.account.configuration_sets.get(name)
    if found is None:
        return _no_configuration_set(name)
    body = await read_body(request)
    dest_name = body.get("EventDestinationName")
    spec = body.get("EventDestination")
    if not dest_name or not isinstance(dest_name, str) or not isinstance(spec, dict):
        raise BadRequest("Missing required parameter EventDestinationName or EventDestination.")
    types = spec.get("MatchingEventTypes")
    if not types or not isinstance(types, list) or not set(types) <= set(EVENT_DESTINATION_TYPES):
        raise BadRequest(
            f"MatchingEventTypes must be a list of {', '.join(EVENT_DESTINATION_TYPES)}."
        )
    if sum(kind in spec for kind in _DESTINATION_KINDS) != 1:
        raise BadRequest(f"Give exactly one of {', '.join(_DESTINATION_KINDS)}.")
    if dest_name in found.event_destinations:
        return error_response(
            400, "AlreadyExistsException", f"Event destination {dest_name} already exists."
        )
    kept: dict[str, Any] = {
        "Enabled": bool(spec.get("Enabled", False)),
        "MatchingEventTypes": types,
    }
    for kind in _DESTINATION_KINDS:
        if kind in spec:
            kept[kind] = spec[kind]
    found.event_destinations[dest_name] = kept
    return ok()


async def _get_event_destinations(state: SimState, request: web.Request) -> web.Response:
    """GET /v2/email/configuration-sets/{name}/event-destinations
    (GetConfigurationSetEventDestinations)."""
    name = request.match_info["name"]
    found = state.account.configuration_sets.get(name)
    if found is None:
        return _no_configuration_set(name)
    return ok(
        {
            "EventDestinations": [
                {"Name": dest_name, **spec}
                for dest_name, spec in sorted(found.event_destinations.items())
            ]
        }
    )


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/v2/email/identities", json_handler(_list_email_identities))
    r.add_get("/v2/email/configuration-sets/{name}", json_handler(_get_configuration_set))
    r.add_get(
        "/v2/email/configuration-sets/{name}/event-destinations",
        json_handler(_get_event_destinations),
    )
    r.add_post(
        "/v2/email/configuration-sets/{name}/event-destinations",
        json_handler(_create_event_destination),
    )
