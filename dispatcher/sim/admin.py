"""Inspection and control of the simulator (`/_sim/...`): what was accepted, counters, settings,
the account (identities, state, templates, configuration sets, suppression list), event
subscriptions and the SNS signing certificate. Never subject to latency or faults.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from dispatcher.sim import sns
from dispatcher.sim.account import (
    DKIM_STATUSES,
    ENFORCEMENT_STATUSES,
    MAIL_FROM_STATUSES,
    SUPPRESSION_REASONS,
    Account,
    ConfigurationSet,
    Suppressed,
    Template,
)
from dispatcher.sim.keys import FAULTS_KEY, PUBLISHER_KEY, STATE_KEY
from dispatcher.sim.publisher import Publisher
from dispatcher.sim.state import SimState


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


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body: Any = json.loads(await request.read() or b"{}")
    except ValueError as exc:
        raise ValueError(f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


async def messages(request: web.Request) -> web.Response:
    """GET /_sim/messages[?offset=N][&limit=N][&body=1][&all=1]: accepted messages, oldest
    first; those SES did not send because their template failed to render only with all=1."""
    state = request.app[STATE_KEY]
    offset = _int_query(request, "offset", 0) or 0
    limit = _int_query(request, "limit", None)
    body = request.query.get("body", "") in ("1", "true", "yes")
    end = None if limit is None else offset + limit
    everything = request.query.get("all", "") in ("1", "true", "yes")
    listed = state.messages
    if state.counters.rendering_failures and not everything:
        listed = [m for m in listed if m.rendering_failure is None]
    return web.json_response([m.to_json(body=body) for m in listed[offset:end]])


async def stats(request: web.Request) -> web.Response:
    """GET /_sim/stats: counters and the limits' current levels."""
    return web.json_response(request.app[STATE_KEY].stats())


async def reset(request: web.Request) -> web.Response:
    """POST /_sim/reset[?account=1]: forget messages and counters, refill the limits; with
    account=1 also forget identities, templates, configuration sets, suppressions, events."""
    state = request.app[STATE_KEY]
    state.reset()
    if request.query.get("account", "") in ("1", "true", "yes"):
        state.account = Account()
        publisher = request.app[PUBLISHER_KEY]
        publisher.events.clear()
        publisher.deliveries.clear()
    request.app[FAULTS_KEY].stop_storm()
    return web.json_response(state.stats())


async def get_config(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].settings.to_dict())


async def set_config(request: web.Request) -> web.Response:
    """POST /_sim/config with a JSON object of SimSettings fields: change them now."""
    state = request.app[STATE_KEY]
    try:
        new = state.configure(await _json_object(request))
    except ValueError as exc:
        return _error(400, str(exc))
    return web.json_response(new.to_dict())


# -- the account -----------------------------------------------------------------------------


def apply(state: SimState, publisher: Publisher, action: str, args: Mapping[str, Any]) -> Any:
    """One change to the account or the subscriptions; ValueError names what is wrong.

    Shared by the /_sim/ POST routes and the command line's start-up flags.
    """
    account = state.account
    if action == "account":
        _only(args, "sending_enabled", "enforcement_status", "sandbox")
        if "enforcement_status" in args:
            status = args["enforcement_status"]
            if status not in ENFORCEMENT_STATUSES:
                raise ValueError(
                    f"enforcement_status must be one of {', '.join(ENFORCEMENT_STATUSES)}, "
                    f"got {status!r}"
                )
        if "sending_enabled" in args:
            account.sending_enabled = _bool(args, "sending_enabled")
        if "enforcement_status" in args:
            account.enforcement_status = args["enforcement_status"]
        if "sandbox" in args:
            state.configure({"sandbox": _bool(args, "sandbox")})
        return _account_json(state)
    if action == "verify":
        _only(
            args,
            "identity",
            "type",
            "verified",
            "mail_from_domain",
            "mail_from_status",
            "mail_from_behavior",
            "configuration_set",
            "dkim_status",
        )
        name = args.get("identity")
        if not isinstance(name, str) or not name.strip():
            raise ValueError("identity must be an email address or a domain")
        kind = args.get("type")
        if kind not in (None, "EMAIL_ADDRESS", "DOMAIN"):
            raise ValueError(f"type must be EMAIL_ADDRESS or DOMAIN, got {kind!r}")
        identity = account.verify(name, domain=None if kind is None else kind == "DOMAIN")
        if "verified" in args:
            identity.verified = _bool(args, "verified")
        if "mail_from_domain" in args:
            identity.mail_from_domain = args["mail_from_domain"] or None
        if "mail_from_status" in args:
            status = args["mail_from_status"]
            if status not in MAIL_FROM_STATUSES:
                raise ValueError(
                    f"mail_from_status must be one of {', '.join(MAIL_FROM_STATUSES)}, "
                    f"got {status!r}"
                )
            identity.mail_from_status = status
        if "mail_from_behavior" in args:
            behavior = args["mail_from_behavior"]
            if behavior not in ("USE_DEFAULT_VALUE", "REJECT_MESSAGE"):
                raise ValueError(
                    f"mail_from_behavior must be USE_DEFAULT_VALUE or REJECT_MESSAGE, "
                    f"got {behavior!r}"
                )
            identity.mail_from_behavior = behavior
        if "configuration_set" in args:
            identity.configuration_set = args["configuration_set"] or None
        if "dkim_status" in args:
            dkim = args["dkim_status"]
            if dkim is not None and dkim not in DKIM_STATUSES:
                raise ValueError(
                    f"dkim_status must be one of {', '.join(DKIM_STATUSES)} (or null: follow "
                    f"the identity's verification), got {dkim!r}"
                )
            identity.dkim_override = dkim
        return identity.to_json()
    if action == "configuration_set":
        _only(args, "name", "sending_enabled")
        name = _name(args, "name")
        found = account.configuration_sets.setdefault(name, ConfigurationSet(name))
        if "sending_enabled" in args:
            found.sending_enabled = _bool(args, "sending_enabled")
        return found.to_json()
    if action == "template":
        _only(args, "name", "subject", "text", "html")
        name = _name(args, "name")
        template = Template(
            name, subject=args.get("subject") or "", text=args.get("text"), html=args.get("html")
        )
        account.templates[name] = template
        return template.to_json()
    if action == "suppress":
        _only(args, "address", "reason")
        address = _name(args, "address").lower()
        reason = args.get("reason", "BOUNCE")
        if reason not in SUPPRESSION_REASONS:
            raise ValueError(f"reason must be one of {', '.join(SUPPRESSION_REASONS)}")
        account.suppressed[address] = Suppressed(address, reason, state.wall_time())
        return {"address": address, "reason": reason}
    if action == "subscribe":
        _only(
            args,
            "endpoint",
            "kind",
            "configuration_set",
            "topic_arn",
            "auto_confirm",
            "types",
            "headers",
        )
        sub = publisher.subscribe(
            _name(args, "endpoint"),
            kind=args.get("kind") or "identity",
            configuration_set=args.get("configuration_set"),
            topic_arn=args.get("topic_arn"),
            auto_confirm=_bool(args, "auto_confirm") if "auto_confirm" in args else False,
            types=args.get("types"),
            headers=_bool(args, "headers") if "headers" in args else True,
        )
        return sub.to_json()
    raise ValueError(f"unknown action {action!r}")


def _only(args: Mapping[str, Any], *known: str) -> None:
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}")


def _bool(args: Mapping[str, Any], name: str) -> bool:
    value = args[name]
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _name(args: Mapping[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _account_json(state: SimState) -> dict[str, Any]:
    out = state.account.state_json()
    out["sandbox"] = state.settings.sandbox
    out["production_access_enabled"] = not state.settings.sandbox
    return out


def _poster(action: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        try:
            result = apply(
                request.app[STATE_KEY],
                request.app[PUBLISHER_KEY],
                action,
                await _json_object(request),
            )
        except ValueError as exc:
            return _error(400, str(exc))
        return web.json_response(result)

    return handler


async def get_account(request: web.Request) -> web.Response:
    return web.json_response(_account_json(request.app[STATE_KEY]))


async def list_identities(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return web.json_response([i.to_json() for i in state.account.identities.values()])


async def verify_identity(request: web.Request) -> web.Response:
    """POST /_sim/identities/NAME/verify: the link is clicked, the DNS records are found.

    The identity (created PENDING by CreateEmailIdentity or Verify*Identity) becomes verified
    for sending, with its DKIM and its custom MAIL FROM domain (if any).
    """
    state = request.app[STATE_KEY]
    name = request.match_info["name"]
    identity = state.account.identities.get(name.lower())
    if identity is None:
        return _error(404, f"no identity {name}: create it first (CreateEmailIdentity)")
    identity.mark_verified()
    return web.json_response(identity.to_json())


async def delete_identity(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if state.account.identities.pop(request.match_info["name"].lower(), None) is None:
        return _error(404, f"no identity {request.match_info['name']}")
    return web.json_response({})


async def list_configuration_sets(request: web.Request) -> web.Response:
    account = request.app[STATE_KEY].account
    return web.json_response([c.to_json() for c in account.configuration_sets.values()])


async def list_templates(request: web.Request) -> web.Response:
    account = request.app[STATE_KEY].account
    return web.json_response([t.to_json() for t in account.templates.values()])


async def list_suppressed(request: web.Request) -> web.Response:
    account = request.app[STATE_KEY].account
    return web.json_response(
        [{"address": s.address, "reason": s.reason} for s in account.suppressed.values()]
    )


# -- events and SNS ------------------------------------------------------------------------


async def list_subscriptions(request: web.Request) -> web.Response:
    publisher = request.app[PUBLISHER_KEY]
    return web.json_response([s.to_json() for s in publisher.subscriptions.values()])


async def delete_subscription(request: web.Request) -> web.Response:
    if not request.app[PUBLISHER_KEY].unsubscribe(request.match_info["id"]):
        return _error(404, f"no subscription {request.match_info['id']}")
    return web.json_response({})


async def events(request: web.Request) -> web.Response:
    """GET /_sim/events[?record=1|0]: the events generated (newest 10 000); record=1 keeps
    generating them with no subscriber and no file."""
    publisher = request.app[PUBLISHER_KEY]
    if "record" in request.query:
        publisher.record = request.query["record"] in ("1", "true", "yes")
    return web.json_response(list(publisher.events))


async def record_events(request: web.Request) -> web.Response:
    """POST /_sim/events {"record": true}: generate events even with nowhere to send them."""
    try:
        args = await _json_object(request)
        publisher = request.app[PUBLISHER_KEY]
        publisher.record = _bool(args, "record")
    except (ValueError, KeyError) as exc:
        return _error(400, f'expected {{"record": true|false}}: {exc}')
    return web.json_response({"record": publisher.record})


async def deliveries(request: web.Request) -> web.Response:
    """GET /_sim/deliveries: every SNS POST attempt (newest 10 000) and its HTTP status."""
    return web.json_response(list(request.app[PUBLISHER_KEY].deliveries))


async def certificate(request: web.Request) -> web.Response:
    """The PEM certificate whose key signs the SNS messages: what a receiver pins."""
    pem = request.app[PUBLISHER_KEY].signer.certificate_pem
    return web.Response(body=pem, content_type="application/x-pem-file")


async def confirm(request: web.Request) -> web.Response:
    """The SubscribeURL: GET ...?Action=ConfirmSubscription&TopicArn=..&Token=.. (SNS's form)."""
    publisher = request.app[PUBLISHER_KEY]
    sub = publisher.confirm(request.query.get("TopicArn", ""), request.query.get("Token", ""))
    if sub is None:
        body = (
            '<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error>'
            "<Type>Sender</Type><Code>InvalidParameter</Code>"
            "<Message>Invalid token</Message></Error></ErrorResponse>"
        )
        return web.Response(status=400, text=body, content_type="text/xml")
    body = (
        '<ConfirmSubscriptionResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">'
        "<ConfirmSubscriptionResult><SubscriptionArn>"
        f"{escape(sub.arn)}</SubscriptionArn></ConfirmSubscriptionResult>"
        "</ConfirmSubscriptionResponse>"
    )
    return web.Response(text=body, content_type="text/xml")


async def unsubscribe(request: web.Request) -> web.Response:
    request.app[PUBLISHER_KEY].unsubscribe(request.query.get("SubscriptionArn", ""))
    return web.Response(
        text='<UnsubscribeResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"/>',
        content_type="text/xml",
    )


async def storm(request: web.Request) -> web.Response:
    """POST /_sim/storm {"seconds": N}: every send is throttled for N seconds (0 = stop)."""
    try:
        args = await _json_object(request)
        seconds = args.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError(f"seconds must be a number >= 0, got {seconds!r}")
    except ValueError as exc:
        return _error(400, str(exc))
    faults = request.app[FAULTS_KEY]
    if seconds:
        faults.start_storm(float(seconds))
    else:
        faults.stop_storm()
    return web.json_response({"storm_seconds": seconds})


async def not_found(request: web.Request) -> web.Response:
    """Every route nobody serves: a clean JSON error, never a traceback or an HTML page."""
    return _error(404, f"no route {request.method} {request.path}")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/_sim/messages", messages)
    r.add_get("/_sim/stats", stats)
    r.add_post("/_sim/reset", reset)
    r.add_get("/_sim/config", get_config)
    r.add_post("/_sim/config", set_config)
    r.add_get("/_sim/account", get_account)
    r.add_post("/_sim/account", _poster("account"))
    r.add_get("/_sim/identities", list_identities)
    r.add_post("/_sim/identities", _poster("verify"))
    r.add_delete("/_sim/identities/{name}", delete_identity)
    r.add_post("/_sim/identities/{name}/verify", verify_identity)
    r.add_get("/_sim/configuration-sets", list_configuration_sets)
    r.add_post("/_sim/configuration-sets", _poster("configuration_set"))
    r.add_get("/_sim/templates", list_templates)
    r.add_post("/_sim/templates", _poster("template"))
    r.add_get("/_sim/suppressed", list_suppressed)
    r.add_post("/_sim/suppressed", _poster("suppress"))
    r.add_get("/_sim/subscriptions", list_subscriptions)
    r.add_post("/_sim/subscriptions", _poster("subscribe"))
    r.add_delete("/_sim/subscriptions/{id}", delete_subscription)
    r.add_get("/_sim/events", events)
    r.add_post("/_sim/events", record_events)
    r.add_get("/_sim/deliveries", deliveries)
    r.add_post("/_sim/storm", storm)
    r.add_get(sns.CERT_PATH, certificate)
    r.add_get("/_sim/certificate", certificate)
    r.add_get("/_sim/sns/confirm", confirm)
    r.add_get("/_sim/sns/unsubscribe", unsubscribe)


def add_fallback(app: web.Application) -> None:
    """Must be added last: it matches every path."""
    app.router.add_route("*", "/{tail:.*}", not_found)
