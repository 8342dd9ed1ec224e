"""SesAdapter without a network: exception sorting, request building, settings."""

from __future__ import annotations

import dataclasses
import socket
from typing import Any

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    ProxyConnectionError,
    ReadTimeoutError,
    SSLError,
)
from botocore.parsers import ResponseParserError

from dispatcher.domain.message import OutgoingMessage
from dispatcher.domain.outcome import Outcome, SendResult
from dispatcher.errors import ConfigError, DispatcherError
from dispatcher.ses import SesAdapter, SesError, SesSettings, classify_exception

URL = "https://email.us-east-1.amazonaws.com/v2/email/outbound-emails"
KEY = ConnectionKey("h", 443, True, True, None, None, None)


def client_error(code: str, message: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "SendEmail")


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        # Never connected: the request never left.
        (EndpointConnectionError(endpoint_url=URL, error=aiohttp.ClientConnectorError(
            KEY, ConnectionRefusedError(111, "Connection refused"))), Outcome.TRANSIENT),
        (EndpointConnectionError(endpoint_url=URL, error=socket.gaierror(-2, "unknown")),
         Outcome.TRANSIENT),
        (EndpointConnectionError(endpoint_url=URL), Outcome.TRANSIENT),
        (ConnectTimeoutError(endpoint_url=URL, error=aiohttp.ConnectionTimeoutError()),
         Outcome.TRANSIENT),
        (SSLError(endpoint_url=URL, error=ValueError("bad cert")), Outcome.TRANSIENT),
        (ProxyConnectionError(proxy_url="http://proxy", error=ValueError("x")),
         Outcome.TRANSIENT),
        (CredentialRetrievalError(provider="sso", error_msg="x"), Outcome.TRANSIENT),
        # Connected, then no answer: SES may have the message.
        (EndpointConnectionError(endpoint_url=URL, error=aiohttp.ClientOSError(
            104, "Connection reset by peer")), Outcome.IN_DOUBT),
        (EndpointConnectionError(endpoint_url=URL, error=aiohttp.ClientConnectionResetError(
            "Cannot write to closing transport")), Outcome.IN_DOUBT),
        (ConnectionClosedError(endpoint_url=URL, error=aiohttp.ServerDisconnectedError()),
         Outcome.IN_DOUBT),
        (ReadTimeoutError(endpoint_url=URL, error=aiohttp.SocketTimeoutError()),
         Outcome.IN_DOUBT),
        (ReadTimeoutError(endpoint_url=URL, error=TimeoutError()), Outcome.IN_DOUBT),
        (HTTPClientError(error=RuntimeError("odd")), Outcome.IN_DOUBT),
        (ResponseParserError("unreadable 200"), Outcome.IN_DOUBT),
        (TimeoutError(), Outcome.IN_DOUBT),
        # Refused while building the request: nothing sent, shared cause.
        (NoCredentialsError(), Outcome.CONFIG_ERROR),
        (ParamValidationError(report="Invalid type for parameter"), Outcome.CONFIG_ERROR),
        # aiohttp or OS errors that escaped aiobotocore's wrapping.
        (aiohttp.ClientConnectorError(KEY, ConnectionRefusedError(111, "x")), Outcome.TRANSIENT),
        (ConnectionRefusedError(111, "x"), Outcome.TRANSIENT),
        (aiohttp.ServerDisconnectedError(), Outcome.IN_DOUBT),
        (ConnectionResetError(104, "x"), Outcome.IN_DOUBT),
    ],
)  # fmt: skip
def test_exception_outcome(exc: Exception, outcome: Outcome) -> None:
    result = classify_exception(exc)
    assert result is not None
    assert result.outcome is outcome
    assert result.code is None
    assert result.reason and type(exc).__name__ in result.reason


def test_client_error_keeps_code_and_text() -> None:
    result = classify_exception(client_error("Throttling", "Daily message quota exceeded.", 400))
    assert result == SendResult(
        Outcome.DAILY_QUOTA, code="Throttling", reason="Daily message quota exceeded."
    )


def test_client_error_without_details_is_config_error() -> None:
    result = classify_exception(ClientError({}, "SendEmail"))
    assert result == SendResult(Outcome.CONFIG_ERROR)


def test_other_exceptions_are_not_swallowed() -> None:
    assert classify_exception(KeyError("bug")) is None
    assert classify_exception(ValueError("bug")) is None


def test_ses_error_is_a_dispatcher_error_with_the_outcome() -> None:
    err = SesError("GetSendQuota", Outcome.THROTTLED, "Throttling", "Rate exceeded")
    assert isinstance(err, DispatcherError)
    assert err.outcome is Outcome.THROTTLED
    assert str(err) == "SES GetSendQuota failed (throttled): Throttling: Rate exceeded"


# --- request building ---------------------------------------------------------------------


def adapter(default_config_set: str | None = None) -> SesAdapter:
    none: Any = None  # build_request touches no client
    return SesAdapter(none, none, default_config_set)


def test_simple_request_with_text_only() -> None:
    msg = OutgoingMessage(id=1, from_addr="f@x.com", to=("t@y.com",), subject="S", text="T")
    assert adapter().build_request(msg) == {
        "FromEmailAddress": "f@x.com",
        "Destination": {"ToAddresses": ["t@y.com"]},
        "Content": {
            "Simple": {
                "Subject": {"Data": "S", "Charset": "UTF-8"},
                "Body": {"Text": {"Data": "T", "Charset": "UTF-8"}},
            }
        },
        "EmailTags": [{"Name": "dispatcher_id", "Value": "1"}],
    }


def test_raw_request_passes_destination_only_when_given() -> None:
    bare = adapter().build_request(OutgoingMessage(id=2, from_addr="f@x.com", raw=b"x"))
    assert "Destination" not in bare
    assert bare["Content"] == {"Raw": {"Data": b"x"}}
    with_bcc = adapter().build_request(
        OutgoingMessage(id=2, from_addr="f@x.com", raw=b"x", bcc=("b@y.com",))
    )
    assert with_bcc["Destination"] == {"BccAddresses": ["b@y.com"]}


def test_configuration_set_message_then_default_then_none() -> None:
    own = OutgoingMessage(id=3, from_addr="f@x.com", configuration_set="own")
    plain = OutgoingMessage(id=3, from_addr="f@x.com")
    assert adapter("dflt").build_request(own)["ConfigurationSetName"] == "own"
    assert adapter("dflt").build_request(plain)["ConfigurationSetName"] == "dflt"
    assert "ConfigurationSetName" not in adapter().build_request(plain)


def test_a_campaign_message_sent_alone_names_the_template_and_its_data() -> None:
    # A bulk campaign's message outside a SendBulkEmail call (SES allows one a second): SES
    # renders the stored template with this recipient's data and List-Unsubscribe headers.
    msg = OutgoingMessage(
        id=9,
        from_addr="news@x.com",
        to=("a@y.com",),
        headers=(("List-Unsubscribe", "<https://x.com/u/9>"),),
    )
    request = adapter().build_request(msg, ("autumn", {"email": "a@y.com", "name": "Ann"}))
    assert request["Content"] == {
        "Template": {
            "TemplateName": "autumn",
            "TemplateData": '{"email": "a@y.com", "name": "Ann"}',
            "Headers": [{"Name": "List-Unsubscribe", "Value": "<https://x.com/u/9>"}],
        }
    }
    assert request["Destination"] == {"ToAddresses": ["a@y.com"]}
    assert {"Name": "dispatcher_id", "Value": "9"} in request["EmailTags"]


def test_list_management_options_are_sent_with_a_simple_or_templated_message() -> None:
    plain = OutgoingMessage(id=5, from_addr="f@x.com", to=("t@y.com",), text="T")
    assert "ListManagementOptions" not in adapter().build_request(plain)
    listed = dataclasses.replace(plain, list_management=("news", "weekly"))
    assert adapter().build_request(listed)["ListManagementOptions"] == {
        "ContactListName": "news",
        "TopicName": "weekly",
    }
    no_topic = dataclasses.replace(plain, list_management=("news", None))
    request = adapter().build_request(no_topic, ("autumn", {"email": "t@y.com"}))
    assert request["ListManagementOptions"] == {"ContactListName": "news"}
    assert request["Content"]["Template"]["TemplateName"] == "autumn"


def test_dispatcher_id_tag_cannot_be_overridden() -> None:
    msg = OutgoingMessage(id=4, from_addr="f@x.com", tags={"dispatcher_id": "9", "a": "b"})
    assert adapter().build_request(msg)["EmailTags"] == [
        {"Name": "dispatcher_id", "Value": "4"},
        {"Name": "a", "Value": "b"},
    ]


# --- settings -----------------------------------------------------------------------------


def test_settings_repr_never_shows_the_secret() -> None:
    s = SesSettings(access_key_id="AKIAEXAMPLE", secret_access_key="hunter2-very-secret")
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s)
    assert "AKIAEXAMPLE" in repr(s)


def test_settings_defaults() -> None:
    s = SesSettings()
    assert (s.region, s.endpoint_url, s.access_key_id, s.secret_access_key) == (
        "us-east-1",
        None,
        None,
        None,
    )
    assert (s.connect_timeout, s.read_timeout, s.max_pool_connections) == (5.0, 15.0, 100)
    assert s.configuration_set is None


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"access_key_id": "a"}, "ses.access_key_id and ses.secret_access_key"),
        ({"secret_access_key": "s"}, "ses.access_key_id and ses.secret_access_key"),
        ({"connect_timeout": 0}, "ses.connect_timeout"),
        ({"read_timeout": -1}, "ses.read_timeout"),
        ({"max_pool_connections": 0}, "ses.max_pool_connections"),
        ({"region": ""}, "ses.region"),
    ],
)
def test_settings_errors_name_the_key(kwargs: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigError, match=names.replace(".", r"\.")):
        SesSettings(**kwargs)


class _RefusingV2:
    """A sesv2 client whose SendBulkEmail call is refused whole (the simulator refuses per
    entry only, so this path has no real part to run against)."""

    def __init__(self, text: str) -> None:
        self.text = text

    async def send_bulk_email(self, **_: Any) -> dict[str, Any]:
        raise client_error("MessageRejected", self.text, 400)


@pytest.mark.parametrize(
    ("listed", "expected"),
    [
        # The sender: every entry waits with its sender held; none fails.
        ("news@example.com", [Outcome.CONFIG_ERROR] * 3),
        # One entry's recipient (sandbox): that entry fails, the others go again.
        ("b@y.net", [Outcome.TRANSIENT, Outcome.REJECTED, Outcome.TRANSIENT]),
    ],
)
async def test_a_whole_bulk_call_refused_as_not_verified(
    listed: str, expected: list[Outcome]
) -> None:
    text = (
        "Email address is not verified. The following identities failed the check in region "
        f"US-EAST-1: {listed}"
    )
    none: Any = None
    v2: Any = _RefusingV2(text)
    ses = SesAdapter(v2, none, None)
    msgs: list[tuple[OutgoingMessage, dict[str, str]]] = [
        (OutgoingMessage(id=i, from_addr="News <news@example.com>", to=(to,)), {})
        for i, to in enumerate(["a@x.net", "b@y.net", "c@z.net"])
    ]
    results = await ses.send_bulk("t", msgs)
    assert [r.outcome for r in results] == expected
    assert all(text in (r.reason or "") for r in results)
