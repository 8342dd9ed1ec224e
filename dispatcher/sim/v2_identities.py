"""SES API v2 set-up writes and reads: email identities (and their MAIL FROM domain), email
templates, configuration sets. The reads `dispatcher doctor` asks beyond these are in
v2_setup.py."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dispatcher.sim.account import ConfigurationSet, Identity, Template
from dispatcher.sim.state import SimState, address_problem
from dispatcher.sim.v2_wire import BadRequest, error_response, json_handler, ok, read_body

# -- identities ----------------------------------------------------------------------------


async def _create_email_identity(state: SimState, request: web.Request) -> web.Response:
    """POST /v2/email/identities: PENDING until the link is clicked or the DKIM records are
    found (POST /_sim/identities/NAME/verify), or verified at once with auto_verify."""
    body = await read_body(request)
    name = body.get("EmailIdentity")
    if not name or not isinstance(name, str):
        raise BadRequest("Missing required parameter EmailIdentity.")
    if "@" in name and address_problem(name):
        raise BadRequest(f"Invalid email address {name}.")
    if "@" not in name and ("." not in name or name.endswith(".")):
        raise BadRequest(f"Invalid domain name {name}.")  # not confirmed: the text
    if name.lower() in state.account.identities:
        return error_response(
            400, "AlreadyExistsException", f"Email identity {name} already exist."
        )
    identity = state.account.create(name, verified=state.settings.auto_verify)
    if body.get("ConfigurationSetName"):
        identity.configuration_set = body["ConfigurationSetName"]
    return ok(
        {
            "IdentityType": identity.kind,
            "VerifiedForSendingStatus": identity.verified,
            "DkimAttributes": _dkim(identity),
        }
    )


def _dkim(identity: Identity) -> dict[str, Any]:
    if identity.kind == "DOMAIN":
        return {
            "SigningEnabled": True,
            "Status": identity.dkim_status,
            "Tokens": identity.dkim_tokens,
            "SigningAttributesOrigin": "AWS_SES",
        }
    return {"SigningEnabled": False, "Status": identity.dkim_status}


def _no_identity(name: str) -> web.Response:
    return error_response(404, "NotFoundException", f"Email identity {name} does not exist.")


async def _get_email_identity(state: SimState, request: web.Request) -> web.Response:
    """GET /v2/email/identities/{EmailIdentity}: each state as SES reports it."""
    name = request.match_info["identity"]
    identity = state.account.identities.get(name.lower())
    if identity is None:
        return _no_identity(name)
    out: dict[str, Any] = {
        "IdentityType": identity.kind,
        "FeedbackForwardingStatus": True,
        "VerifiedForSendingStatus": identity.verified,
        "VerificationStatus": identity.verification_status,
        "DkimAttributes": _dkim(identity),
        "Policies": {},
        "Tags": [],
    }
    if identity.mail_from_domain:
        out["MailFromAttributes"] = {
            "MailFromDomain": identity.mail_from_domain,
            "MailFromDomainStatus": identity.mail_from_status,
            "BehaviorOnMxFailure": identity.mail_from_behavior,
        }
    if identity.configuration_set:
        out["ConfigurationSetName"] = identity.configuration_set
    return ok(out)


async def _delete_email_identity(state: SimState, request: web.Request) -> web.Response:
    name = request.match_info["identity"]
    if state.account.identities.pop(name.lower(), None) is None:
        return _no_identity(name)
    return ok()


async def _put_mail_from(state: SimState, request: web.Request) -> web.Response:
    """PUT /v2/email/identities/{EmailIdentity}/mail-from (PutEmailIdentityMailFromAttributes).

    A new MAIL FROM domain is PENDING until the identity's admin verify step finds its MX
    record (at once with auto_verify); a name starting `fail.` / `unverified.` then FAILS (a
    way to rehearse MailFromDomainNotVerifiedException). The admin API sets any status.
    """
    name = request.match_info["identity"]
    identity = state.account.identities.get(name.lower())
    if identity is None:
        return _no_identity(name)
    body = await read_body(request)
    domain = body.get("MailFromDomain")
    if domain is not None and not isinstance(domain, str):
        raise BadRequest("MailFromDomain must be a string.")
    identity.set_mail_from(
        domain,
        body.get("BehaviorOnMxFailure") or "USE_DEFAULT_VALUE",
        verified=state.settings.auto_verify,
    )
    return ok()


# -- templates -----------------------------------------------------------------------------


def _template(name: str, content: dict[str, Any]) -> Template:
    """A request's TemplateContent as the template `name`."""
    return Template(
        name,
        subject=content.get("Subject") or "",
        text=content.get("Text"),
        html=content.get("Html"),
    )


async def _create_email_template(state: SimState, request: web.Request) -> web.Response:
    """POST /v2/email/templates."""
    body = await read_body(request)
    name = body.get("TemplateName")
    content = body.get("TemplateContent")
    if not name or not isinstance(content, dict):
        raise BadRequest("Missing required parameter TemplateName or TemplateContent.")
    if name in state.account.templates:
        return error_response(400, "AlreadyExistsException", f"Template {name} already exists.")
    state.account.templates[name] = _template(name, content)
    return ok()


async def _update_email_template(state: SimState, request: web.Request) -> web.Response:
    """PUT /v2/email/templates/{TemplateName}: replace an existing template's content."""
    name = request.match_info["name"]
    body = await read_body(request)
    content = body.get("TemplateContent")
    if not isinstance(content, dict):
        raise BadRequest("Missing required parameter TemplateContent.")
    if name not in state.account.templates:
        return error_response(404, "NotFoundException", f"Template {name} does not exist.")
    state.account.templates[name] = _template(name, content)
    return ok()


async def _get_email_template(state: SimState, request: web.Request) -> web.Response:
    """GET /v2/email/templates/{TemplateName}."""
    name = request.match_info["name"]
    template = state.account.templates.get(name)
    if template is None:
        return error_response(404, "NotFoundException", f"Template {name} does not exist.")
    content: dict[str, str] = {"Subject": template.subject}
    if template.text is not None:
        content["Text"] = template.text
    if template.html is not None:
        content["Html"] = template.html
    return ok({"TemplateName": name, "TemplateContent": content})


# -- configuration sets --------------------------------------------------------------------


async def _create_configuration_set(state: SimState, request: web.Request) -> web.Response:
    """POST /v2/email/configuration-sets."""
    body = await read_body(request)
    name = body.get("ConfigurationSetName")
    if not name or not isinstance(name, str):
        raise BadRequest("Missing required parameter ConfigurationSetName.")
    if name in state.account.configuration_sets:
        return error_response(
            400, "AlreadyExistsException", f"Configuration set <{name}> already exists."
        )
    enabled = (body.get("SendingOptions") or {}).get("SendingEnabled", True)
    state.account.configuration_sets[name] = ConfigurationSet(name, bool(enabled))
    return ok()


async def _put_configuration_set_sending(state: SimState, request: web.Request) -> web.Response:
    """PUT /v2/email/configuration-sets/{name}/sending (PutConfigurationSetSendingOptions)."""
    name = request.match_info["name"]
    found = state.account.configuration_sets.get(name)
    if found is None:
        return error_response(
            404, "NotFoundException", f"Configuration set <{name}> does not exist."
        )
    body = await read_body(request)
    found.sending_enabled = bool(body.get("SendingEnabled", False))
    return ok()


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_post("/v2/email/identities", json_handler(_create_email_identity))
    r.add_get("/v2/email/identities/{identity}", json_handler(_get_email_identity))
    r.add_delete("/v2/email/identities/{identity}", json_handler(_delete_email_identity))
    r.add_put("/v2/email/identities/{identity}/mail-from", json_handler(_put_mail_from))
    r.add_post("/v2/email/templates", json_handler(_create_email_template))
    r.add_get("/v2/email/templates/{name}", json_handler(_get_email_template))
    r.add_put("/v2/email/templates/{name}", json_handler(_update_email_template))
    r.add_post("/v2/email/configuration-sets", json_handler(_create_configuration_set))
    r.add_put(
        "/v2/email/configuration-sets/{name}/sending", json_handler(_put_configuration_set_sending)
    )
