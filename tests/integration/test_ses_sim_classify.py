"""The adapter's classification of the simulator's real wire responses (SES's codes and texts)."""

from __future__ import annotations

import asyncio

from dispatcher.domain.message import OutgoingMessage
from dispatcher.domain.outcome import Outcome
from dispatcher.ses import SesAdapter, SesSettings
from tests.support.sim import SimFactory, SimHandle


def settings(sim: SimHandle) -> SesSettings:
    return SesSettings(endpoint_url=sim.endpoint_url, access_key_id="t", secret_access_key="t")


def msg(i: int, *to: str) -> OutgoingMessage:
    return OutgoingMessage(id=i, from_addr="s@example.com", to=to, subject="s", text="t")


async def test_over_the_rate_is_throttled(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess(max_send_rate=1) as sim, SesAdapter.open(settings(sim)) as ses:
        first = await ses.send(msg(1, "a@example.com", "b@example.com"))
        second = await ses.send(msg(2, "a@example.com"))
    assert first.outcome is Outcome.SENT and first.ses_message_id
    assert (second.outcome, second.code) == (Outcome.THROTTLED, "TooManyRequestsException")


async def test_daily_quota_spent_is_not_confused_with_throttling(sim_inprocess: SimFactory) -> None:
    async with (
        sim_inprocess(max_send_rate=100, max_24_hour_send=1) as sim,
        SesAdapter.open(settings(sim)) as ses,
    ):
        first = await ses.send(msg(1, "a@example.com"))
        second = await ses.send(msg(2, "a@example.com"))
        quota = await ses.get_send_quota()
    assert first.outcome is Outcome.SENT
    assert (second.outcome, second.code) == (Outcome.DAILY_QUOTA, "LimitExceededException")
    assert "Daily message quota exceeded" in (second.reason or "")
    assert (quota.max_24_hour_send, quota.sent_last_24_hours) == (1, 1)


async def test_invalid_recipient_is_a_permanent_rejection(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess(max_send_rate=100) as sim, SesAdapter.open(settings(sim)) as ses:
        result = await ses.send(msg(1, "good@example.com", "not-an-address"))
    assert result.outcome is Outcome.REJECTED
    assert result.reason == "Invalid email address not-an-address."


async def test_non_send_actions_go_at_most_once_a_second(sim_inprocess: SimFactory) -> None:
    """SES limits every action but the sends to 1 request/s; sends are not held back by it."""
    async with sim_inprocess(max_send_rate=100) as sim, SesAdapter.open(settings(sim)) as ses:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await ses.get_send_quota()
        await ses.get_send_quota()
        [entry async for entry in ses.list_suppressed()]
        control = loop.time() - start
        start = loop.time()
        sent = [await ses.send(msg(i, "a@example.com")) for i in range(3)]
        sends = loop.time() - start
    assert control >= 1.95  # the second and third waited their second each
    assert all(r.outcome is Outcome.SENT for r in sent)
    assert sends < 0.9  # the sends did not wait for the control limiter
