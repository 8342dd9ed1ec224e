"""What SES refuses of one message fails that message only: its sender keeps sending."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dispatcher.app import run_worker
from dispatcher.domain.jobs import NewMessage
from dispatcher.domain.validate import MAX_MESSAGE_BYTES
from dispatcher.queue.enqueue import enqueue_on
from dispatcher.queue.repository import Queue
from dispatcher.worker.pool import EXIT_OK, RunReport
from tests.support.dispatch import make_config
from tests.support.sim import SimFactory

OK = "success@simulator.amazonses.com"


async def drain(cfg: Any, limit: float = 90.0) -> RunReport:
    return await asyncio.wait_for(run_worker(cfg, asyncio.Event(), drain=True), limit)


# aiohttp warns that a body this large is sent as raw bytes; the test's point is SES's answer.
@pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning")
async def test_a_message_over_the_size_limit_fails_alone_and_its_sender_keeps_sending(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    big = NewMessage(
        from_addr="app@example.com",
        to=(OK,),
        subject="big",
        text="x" * (MAX_MESSAGE_BYTES + 1),
        priority=1,  # claimed first
    )
    async with queue.pool.acquire() as conn:
        # As an earlier version queued it, before enqueue checked the size.
        [queued_big] = await enqueue_on(conn, [big])
    later = await queue.enqueue(
        NewMessage(from_addr="app@example.com", to=(OK,), subject="later", text="t")
    )
    async with sim_process(max_send_rate=100) as sim:
        report = await drain(make_config(pg_dsn, sim.endpoint_url))
        received = await sim.messages()

    assert report.exit_code == EXIT_OK  # nothing held for a person
    assert [m["subject"] for m in received] == ["later"]
    failed = await queue.get(queued_big.id)
    assert failed is not None and (failed.state, failed.last_outcome) == ("failed", "rejected")
    assert "Message length is more than 41943040 bytes" in (failed.last_error or "")
    sent = await queue.get(later.id)
    assert sent is not None and sent.state == "sent"
