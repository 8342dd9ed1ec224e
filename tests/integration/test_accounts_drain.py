"""`run --drain` with two SES accounts: each pool waits only for its own account's mail, so an
account whose daily quota is spent ends the run with exit code 3 once the other has sent all of
its mail, instead of the other waiting for mail it may never send."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from dispatcher.accounts.settings import AccountSettings, RouteSettings
from dispatcher.app import run_worker
from dispatcher.domain.jobs import NewMessage
from dispatcher.queue.repository import Queue
from dispatcher.worker.counters import EXIT_QUOTA_SPENT
from tests.support.dispatch import REAL, make_config
from tests.support.sim import SimFactory


def mail(from_addr: str, n: int) -> list[NewMessage]:
    return [
        NewMessage(from_addr=from_addr, to=(REAL,), subject=f"s {i}", text="t") for i in range(n)
    ]


async def test_a_drain_ends_when_each_account_has_sent_what_it_can(
    queue: Queue, pg_dsn: str, sim_inprocess: SimFactory
) -> None:
    async with (
        sim_inprocess(max_send_rate=50, max_24_hour_send=5, identities=("a.example",)) as sim_a,
        sim_inprocess(max_send_rate=50, max_24_hour_send=1000, identities=("b.example",)) as sim_b,
    ):
        base = make_config(pg_dsn, sim_a.endpoint_url)
        cfg = replace(
            base,
            accounts=(
                AccountSettings(name="a", endpoint_url=sim_a.endpoint_url, quota_headroom=1.0),
                AccountSettings(name="b", endpoint_url=sim_b.endpoint_url),
            ),
            routes=(RouteSettings(account="b", from_domain=("b.example",)),),
        )
        await queue.enqueue_many(mail("x@a.example", 10) + mail("x@b.example", 20))
        report = await asyncio.wait_for(run_worker(cfg, asyncio.Event(), drain=True), 60)
        sent_a, sent_b = len(await sim_a.messages()), len(await sim_b.messages())

    assert report.exit_code == EXIT_QUOTA_SPENT, report.reason
    assert (sent_a, sent_b) == (5, 20)
    assert report.counters.sent == 25
    async with queue.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT account, state::text AS state, count(*) AS n FROM dispatcher.jobs GROUP BY 1, 2"
        )
    assert {(r["account"], r["state"]): r["n"] for r in rows} == {
        ("a", "sent"): 5,
        ("a", "queued"): 5,
        ("b", "sent"): 20,
    }
