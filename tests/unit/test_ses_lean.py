"""The lean sesv2 client's requests: byte for byte the body botocore's serialiser writes for the
same parameters, signed so that botocore's verifier accepts them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiobotocore.credentials import AioCredentials
from botocore.serialize import create_serializer
from botocore.session import get_session

from dispatcher.domain.message import OutgoingMessage
from dispatcher.doors.sigv4 import parse_authorization, signature_matches
from dispatcher.ses import SesAdapter
from dispatcher.ses.lean import PATHS, LeanSes, body_of

MODEL = get_session().get_service_model("sesv2")
RAW = b"From: s@example.com\r\nTo: x@example.net\r\nSubject: r\r\n\r\n\xe2\x82\xac body\r\n"
TEXT = 'Grüße "quoted" \\ back\nslash\t\u2028 line sep \U0001f600 <b>&amp;</b>'

MESSAGES = {
    "simple": OutgoingMessage(id=1, from_addr="s@example.com", to=("a@example.net",), text="t"),
    "simple, every field": OutgoingMessage(
        id=2,
        from_addr='"Shop, Inc." <s@example.com>',
        to=("a@example.net", "b@example.net"),
        cc=("c@example.net",),
        bcc=("d@example.net",),
        reply_to=("r@example.com",),
        subject=TEXT,
        text=TEXT,
        html=f"<p>{TEXT}</p>",
        tags={"campaign": "c1", "dispatcher_id": "spoofed"},
        headers=(("List-Unsubscribe", "<https://u.example/x>"),),
        configuration_set="own-set",
    ),
    "raw": OutgoingMessage(id=3, from_addr="s@example.com", raw=RAW),
    "raw with destinations": OutgoingMessage(
        id=4, from_addr="s@example.com", raw=RAW, to=("x@example.net",), bcc=("y@example.net",)
    ),
    "SES template": OutgoingMessage(
        id=5,
        from_addr="s@example.com",
        to=("a@example.net",),
        template_name="welcome",
        template_data='{"name": "Zoë"}',
    ),
    "list management": OutgoingMessage(
        id=6,
        from_addr="s@example.com",
        to=("a@example.net",),
        text="t",
        list_management=("newsletter", "weekly"),
    ),
    "list management, no topic": OutgoingMessage(
        id=7,
        from_addr="s@example.com",
        to=("a@example.net",),
        html="<p>h</p>",
        list_management=("newsletter", None),
    ),
}


def adapter() -> SesAdapter:
    """An adapter for its request builders only (no clients)."""
    none: Any = None
    return SesAdapter(none, none, "default-set")


def botocore_body(operation: str, params: dict[str, Any]) -> bytes:
    request = create_serializer("rest-json").serialize_to_request(
        params, MODEL.operation_model(operation)
    )
    assert request["url_path"] == PATHS[operation]
    assert request["headers"]["Content-Type"] == "application/json"
    body: bytes = request["body"]
    return body


@pytest.mark.parametrize("name", list(MESSAGES))
def test_send_email_body_is_botocores(name: str) -> None:
    params = adapter().build_request(MESSAGES[name])
    assert body_of(params) == botocore_body("SendEmail", params)


def test_templated_send_email_body_is_botocores() -> None:
    msg = MESSAGES["simple, every field"]
    params = adapter().build_request(msg, ("campaign-7", {"name": TEXT, "email": "a@example.net"}))
    assert body_of(params) == botocore_body("SendEmail", params)


def test_send_bulk_email_body_is_botocores() -> None:
    entries = [
        (MESSAGES["simple"], {"name": "Ann"}),
        (MESSAGES["simple, every field"], {"name": TEXT, "email": "a@example.net"}),
        (MESSAGES["list management"], {}),
    ]
    params = adapter().build_bulk_request("campaign-7", entries)
    assert body_of(params) == botocore_body("SendBulkEmail", params)
    sent = json.loads(body_of(params))
    assert sent["BulkEmailEntries"][1]["ReplacementHeaders"] == [
        {"Name": "List-Unsubscribe", "Value": "<https://u.example/x>"}
    ]


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEJr//////////wEaDOPq+token="])
@pytest.mark.parametrize(
    "endpoint", ["https://email.eu-west-1.amazonaws.com", "http://127.0.0.1:4579/"]
)
async def test_botocore_accepts_the_signature(token: str | None, endpoint: str) -> None:
    credentials = AioCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token)
    body = body_of(adapter().build_request(MESSAGES["raw"]))
    async with LeanSes.open(
        endpoint,
        credentials,
        "eu-west-1",
        user_agent="dispatcher/test",
        model=MODEL,
        error_class=lambda code: None,
        connect_timeout=1.0,
        read_timeout=1.0,
        max_connections=1,
    ) as lean:
        url = endpoint.rstrip("/") + PATHS["SendEmail"]
        headers = await lean.signed_headers(url, body)

    assert headers["Content-Type"] == "application/json"
    assert headers.get("X-Amz-Security-Token") == token
    host = url.split("/")[2]
    sent = {"host": host, **{k.lower(): v for k, v in headers.items()}}
    signed = parse_authorization(headers["Authorization"])
    assert (signed.key_id, signed.region, signed.service) == ("AKIDEXAMPLE", "eu-west-1", "ses")
    for secret, payload, ok in (
        ("wJalrXUtnFEMI/K7MDENG", body, True),
        ("another secret", body, False),
        ("wJalrXUtnFEMI/K7MDENG", body + b" ", False),
    ):
        matches = signature_matches(
            signed,
            secret,
            method="POST",
            raw_path=PATHS["SendEmail"],
            raw_query="",
            headers=lambda name: [sent[name]] if name in sent else [],
            body=payload,
            amz_date=headers["X-Amz-Date"],
        )
        assert matches is ok, (secret, payload[-3:])
