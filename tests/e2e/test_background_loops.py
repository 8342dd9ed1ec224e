"""A loop of the daemon beside the worker that dies stops the daemon loudly: before, the SQS
feedback poller could die and the daemon sent on with nobody recording bounces."""

from __future__ import annotations

from pathlib import Path

from dispatcher.queue.repository import Queue
from tests.support.cli import cli_env, run_cli, state_counts
from tests.support.dispatch import batch
from tests.support.sim import SimFactory

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"


async def test_a_dead_sqs_poller_stops_the_daemon_with_one_line_and_exit_1(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    async with Queue.connect(pg_dsn, max_size=2) as queue:
        await queue.enqueue_many(batch(200))
    async with sim_process(max_send_rate=10, max_24_hour_send=-1) as sim:
        env = cli_env(
            tmp_path,
            dsn=pg_dsn,
            endpoint_url=sim.endpoint_url,
            DISPATCHER_FEEDBACK__SQS_QUEUE_URL="http://localhost:4566/000000000000/ses-feedback",
            # The scheme left out, as people do: botocore refuses the endpoint (ValueError,
            # which the poller's retry does not handle) and the poller task dies at once.
            DISPATCHER_FEEDBACK__SQS_ENDPOINT_URL="localhost:4566",
            DISPATCHER_FEEDBACK__ALLOWED_TOPICS=TOPIC,
        )
        # Before, the daemon never noticed and sent on: `run` did not end at all.
        result = await run_cli(env, "run", limit=60)
        sent = int((await sim.stats())["accepted"])

    assert result.code == 1, result
    assert "Traceback" not in result.err, result
    last = result.err.strip().splitlines()[-1]
    assert last.startswith(
        "dispatcher: error: the SQS feedback poller failed (ValueError: Invalid endpoint: "
        "localhost:4566), so the daemon stopped"
    ), result
    counts = await state_counts(pg_dsn)
    # Stopped cleanly: nothing left claimed or in flight, the rest still queued.
    assert counts.get("claimed", 0) == counts.get("in_flight", 0) == 0, counts
    assert counts.get("sent", 0) == sent and counts.get("queued", 0) == 200 - sent, counts
