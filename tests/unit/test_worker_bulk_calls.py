"""A SendBulkEmail call SES refuses for its one request a second: the call rate backs off, the
send rate does not (issue 19: two processes' bulk calls collided and each 429 "Rate exceeded"
cut that process's sending by 30 % as if it were over MaxSendRate)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from structlog.testing import capture_logs

from dispatcher.domain.message import OutgoingMessage
from dispatcher.domain.outcome import Outcome, SendResult
from dispatcher.pacing.calls import HOLD_SLOTS
from dispatcher.queue.memory import MemoryJobStore
from tests.unit.test_worker import (
    FakeCampaigns,
    FakeSes,
    loop_now,
    messages,
    pool,
    run,
    states,
    virtual_clock,
)


@dataclass
class RefusesTheFirstBulkCall(FakeSes):
    """SES refusing the first SendBulkEmail call as a whole with `text`."""

    text: str = "Rate exceeded"
    refused_at: float | None = None

    async def send_bulk(
        self, template_name: str, messages: list[tuple[OutgoingMessage, dict[str, str]]]
    ) -> list[SendResult]:
        if self.refused_at is None:
            self.refused_at = loop_now()
            refusal = SendResult(
                Outcome.THROTTLED, code="TooManyRequestsException", reason=self.text
            )
            return [refusal] * len(messages)
        return await super().send_bulk(template_name, messages)


def campaign_run(text: str) -> tuple[RefusesTheFirstBulkCall, dict[str, int], list[Any]]:
    async def main() -> tuple[RefusesTheFirstBulkCall, dict[str, int]]:
        store = MemoryJobStore(now=virtual_clock)
        store.set_campaign_state(3, "running")
        await store.enqueue_many(messages(500), campaign_id=3, variables=[{}] * 500)
        ses = RefusesTheFirstBulkCall(text=text)
        await (await pool(store, ses, campaigns=FakeCampaigns(store, template="news"))).run()
        return ses, await states(store)

    with capture_logs() as logs:
        ses, counts = run(main)
    return ses, counts, logs


def test_a_bulk_call_refused_for_the_call_rate_holds_bulk_calls_not_the_send_rate() -> None:
    ses, counts, logs = campaign_run("Rate exceeded")
    assert counts == {"sent": 500}  # the refused call's recipients went again
    assert sorted(Counter(i for i, _ in ses.accepted).values()) == [1] * 500
    assert not [e for e in logs if e["event"] == "pacing.throttled"]  # the rate was not cut
    times = sorted(t for _, t in ses.accepted)
    assert times[-1] - times[0] <= 5.5  # ~100/s throughout, as without the refusal
    assert ses.refused_at is not None and ses.bulk_at  # bulk calls came back ...
    assert ses.bulk_at[0] - ses.refused_at >= (HOLD_SLOTS - 1) * 1.25  # ... after the hold


def test_a_bulk_call_refused_as_over_max_send_rate_slows_the_sending() -> None:
    _, counts, logs = campaign_run("Maximum sending rate exceeded.")
    assert counts == {"sent": 500}
    assert [e for e in logs if e["event"] == "pacing.throttled"]  # MaxSendRate's throttle
