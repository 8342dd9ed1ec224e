"""Property: whatever arrives at the SNS endpoint, it answers 2xx/4xx (never 5xx, never a crash)
and records only messages that verify. The store is an in-memory stand-in: no Postgres."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any, cast

from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.feedback.endpoint import create_app, idle
from dispatcher.feedback.sns import SnsVerifier, parse_message
from dispatcher.feedback.store import FeedbackStore
from tests.support.sns import string_to_sign as expected_string_to_sign
from tests.unit.test_feedback_sns import KEY, PEM, TOPIC, notification

PINNED = "http://127.0.0.1:1/cert.pem"


class MemoryStore:
    def __init__(self) -> None:
        self.recorded: dict[str, Any] = {}

    async def record(self, *, sns_message_id: str, topic_arn: str, raw: Any, event: Any) -> Any:
        if sns_message_id in self.recorded:
            return None
        self.recorded[sns_message_id] = raw
        return len(self.recorded)

    async def process(self, event_id: int) -> None:
        return None

    async def process_pending(self, limit: int = 100) -> int:
        return 0


def signed(body: dict[str, Any]) -> dict[str, Any]:
    body = {**body, "SignatureVersion": "2", "SigningCertURL": PINNED}
    data = expected_string_to_sign(body)
    sig = KEY.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return {**body, "Signature": base64.b64encode(sig).decode()}


GENUINE = signed(
    notification(Message=json.dumps({"eventType": "Send", "mail": {"messageId": "m"}}))
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
mutated = st.builds(
    lambda key, value: {**GENUINE, key: value},
    st.sampled_from([*GENUINE.keys(), "Extra"]),
    json_values,
)
bodies = st.one_of(
    st.binary(max_size=300),
    st.dictionaries(st.sampled_from([*GENUINE.keys()]), json_values, max_size=8)
    .map(json.dumps)
    .map(str.encode),
    mutated.map(json.dumps).map(str.encode),
)
headers = st.sampled_from([None, "Notification", "SubscriptionConfirmation", "Other", ""])


async def exchange(items: list[tuple[bytes, str | None]]) -> tuple[list[int], MemoryStore]:
    store = MemoryStore()
    verifier = SnsVerifier(allowed_topics=[TOPIC], trusted_certificates={PINNED: PEM})

    async def confirm(url: str) -> None:
        raise AssertionError("no confirmation may be attempted here")

    app = create_app(verifier, cast(FeedbackStore, store), confirm=confirm, max_body=4096)
    statuses = []
    async with TestClient(TestServer(app)) as client:
        for body, header in items:
            hdrs = {"x-amz-sns-message-type": header} if header is not None else {}
            resp = await client.post("/sns", data=body, headers=hdrs)
            statuses.append(resp.status)
            resp.release()
        await idle(app)
    return statuses, store


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(bodies, headers), min_size=1, max_size=5))
def test_the_endpoint_never_fails_with_a_5xx(items: list[tuple[bytes, str | None]]) -> None:
    statuses, store = asyncio.run(exchange(items))
    assert all(s < 500 for s in statuses), statuses
    genuine = parse_message(GENUINE).signed_fields()
    for raw in store.recorded.values():  # only the genuine content can have been recorded
        assert parse_message(raw).signed_fields() == genuine


def test_the_genuine_message_is_recorded_once_and_oversize_is_413() -> None:
    body = json.dumps(GENUINE).encode()
    statuses, store = asyncio.run(
        exchange([(body, "Notification"), (body, "Notification"), (b" " * 5000, "Notification")])
    )
    assert statuses == [200, 200, 413]
    assert list(store.recorded) == [GENUINE["MessageId"]]
