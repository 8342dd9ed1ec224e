"""The daemon serves the SNS endpoint: a bounce from SES suppresses the address, end to end."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import asyncpg  # type: ignore[import-untyped]

from dispatcher.app import run_worker
from dispatcher.domain.jobs import NewMessage
from dispatcher.queue.repository import Queue
from tests.support.dispatch import eventually, make_config
from tests.support.moto import free_port
from tests.support.sim import SimFactory

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
BOUNCE = "bounce@simulator.amazonses.com"


async def test_run_with_feedback_enabled_suppresses_a_bounced_address(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    port = free_port()
    async with sim_process(max_send_rate=100) as sim:
        base = make_config(pg_dsn, sim.endpoint_url)
        feedback = replace(
            base.feedback,
            enabled=True,
            listen_port=port,
            allowed_topics=TOPIC,
            trusted_simulator=sim.endpoint_url,
        )
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(replace(base, feedback=feedback), stop))
        try:
            endpoint = f"http://127.0.0.1:{port}/sns"

            async def listening() -> bool:
                if worker.done():
                    worker.result()  # surface a start-up error
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    return False
                writer.close()
                await writer.wait_closed()
                return True

            await eventually(listening, limit=20)
            await sim.admin(
                "POST", "/_sim/subscriptions", {"endpoint": endpoint, "topic_arn": TOPIC}
            )

            async def confirmed() -> bool:
                subs = await sim.admin("GET", "/_sim/subscriptions")
                return any(s["confirmed"] for s in subs)

            await eventually(confirmed, limit=20)
            await queue.enqueue(
                NewMessage(
                    from_addr="app@example.com",
                    to=(BOUNCE, "success@simulator.amazonses.com"),
                    subject="hello",
                    text="hi",
                )
            )

            async def suppressed() -> bool:
                conn = await asyncpg.connect(pg_dsn)
                try:
                    rows = await conn.fetch("SELECT address, reason FROM dispatcher.suppressions")
                finally:
                    await conn.close()
                return [r["address"] for r in rows] == [BOUNCE]

            await eventually(suppressed, limit=20)
        finally:
            stop.set()
            await asyncio.wait_for(worker, 30)
