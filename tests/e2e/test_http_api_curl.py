"""The HTTP API of `dispatcher run` driven by clients nobody here wrote (`curl`) and by the
project's synchronous client: the must-show of issue 16 item 3 against the real daemon,
Postgres and the SES simulator."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from dispatcher.client import Client, ClientError
from dispatcher.db.embedded import EmbeddedPostgres
from dispatcher.queue.repository import Queue
from tests.support.api import api_daemon, create_key, curl, needs_curl, tail
from tests.support.cli import cli_env, fetch
from tests.support.dispatch import eventually
from tests.support.sim import SimFactory

MSG: dict[str, Any] = {
    "from": "Shop <news@shop.example>",
    "to": ["success@simulator.amazonses.com"],
    "subject": "Your order",
    "text": "Thanks for your order",
}
IDENTITIES = ("example.com", "shop.example")


async def queued_by(dsn: str, key_id: str) -> int:
    """Messages committed with this key."""
    (row,) = await fetch(
        dsn, "SELECT count(*) AS n FROM dispatcher.messages WHERE key_id = $1", key_id
    )
    return int(row["n"])


def unavailable_answers(log_file: Path) -> int:
    """How many requests the daemon answered 503 (one `api.unavailable` record each)."""
    return log_file.read_text(errors="replace").count('"api.unavailable"')


def json_body(obj: Any) -> tuple[str, ...]:
    return ("-H", "Content-Type: application/json", "--data-binary", json.dumps(obj))


@needs_curl
@pytest.mark.timeout(300)
async def test_curl_and_the_client_against_the_daemon(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    async with sim_process(max_send_rate=2, identities=IDENTITIES) as sim:
        env = cli_env(tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url)
        shop_id, shop_secret = await create_key(env, "shop", "--from", "*@shop.example")
        ops_id, ops_secret = await create_key(env, "ops")
        shop = ("-u", f"{shop_id}:{shop_secret}")
        async with api_daemon(env, tmp_path / "run.log") as (base, _):
            url = base + "/v1/messages"

            # The same Idempotency-Key twice: one message.
            once = (*shop, "-H", "Idempotency-Key: order-1", *json_body(MSG))
            first, again = await curl(url, *once), await curl(url, *once)
            assert first[0] == 201 and again[0] == 200, (first, again)
            assert first[1]["id"] == again[1]["id"]
            assert await queued_by(pg_dsn, shop_id) == 1

            # A bad field is named.
            status, body = await curl(url, *shop, *json_body({**MSG, "to": ["not an address"]}))
            assert status == 400 and body["field"] == "to", body

            # 10,000 messages in one transaction: one bad message at the end queues nothing...
            batch = [{**MSG, "subject": f"Order {i}"} for i in range(10_000)]
            bad_file = tmp_path / "bad.json"
            bad_file.write_text(json.dumps([*batch[:-1], {**batch[-1], "reply_to": "nope"}]))
            status, body = await curl(url, *shop, "--data-binary", f"@{bad_file}")
            assert status == 400 and (body["index"], body["field"]) == (9999, "reply_to"), body
            assert await queued_by(pg_dsn, shop_id) == 1
            # ... and a good one is all there once the 201 is in.
            good_file = tmp_path / "good.json"
            good_file.write_text(json.dumps(batch))
            status, body = await curl(url, *shop, "--data-binary", f"@{good_file}")
            assert status == 201 and len(set(body["ids"])) == 10_000
            assert await queued_by(pg_dsn, shop_id) == 10_001

            # A wrong secret, a sender outside the key, another key's message.
            status, body = await curl(url, "-u", f"{shop_id}:wrong", *json_body(MSG))
            assert status == 401 and "error" in body
            status, body = await curl(url, *shop, *json_body({**MSG, "from": "app@example.com"}))
            assert status == 403 and body["field"] == "from", body
            mine = f"{base}/v1/messages/{first[1]['id']}"
            status, body = await curl(mine, "-u", f"{ops_id}:{ops_secret}")
            assert status == 404 and "Order" not in json.dumps(body)
            status, body = await curl(mine, *shop)
            assert status == 200 and body["message"]["subject"] == "Your order"
            assert body["message"]["idempotency_key"] == "order-1"
            assert await queued_by(pg_dsn, shop_id) == 10_001

            # The synchronous client, in a thread as an application would call it.
            client = Client(base, shop_id, shop_secret, timeout=30)
            fields = {k: v for k, v in MSG.items() if k != "from"}
            message_id = await asyncio.to_thread(
                client.send, from_=MSG["from"], **fields, idempotency_key="client-1"
            )
            again_id = await asyncio.to_thread(
                client.send, from_=MSG["from"], **fields, idempotency_key="client-1"
            )
            assert again_id == message_id
            ids = await asyncio.to_thread(client.send_batch, [MSG, {**MSG, "subject": "Two"}])
            assert len(set(ids)) == 2 and message_id not in ids
            view = await asyncio.to_thread(client.get, message_id)
            assert view["message"]["id"] == message_id and view["message"]["state"] in (
                "queued",
                "claimed",
                "in_flight",
                "sent",
            )
            with pytest.raises(ClientError) as refused:
                await asyncio.to_thread(client.send, **{**MSG, "priority": "high"})
            assert (refused.value.status, refused.value.field) == (400, "priority")
            with pytest.raises(ClientError) as other:
                await asyncio.to_thread(Client(base, ops_id, ops_secret).get, message_id)
            assert other.value.status == 404
            with pytest.raises(ClientError) as wrong:
                await asyncio.to_thread(Client(base, shop_id, "wrong").send, **MSG)
            assert wrong.value.status == 401
            assert await queued_by(pg_dsn, shop_id) == 10_004
        assert "Traceback" not in (tmp_path / "run.log").read_text(), tail(tmp_path / "run.log")


@needs_curl
@pytest.mark.timeout(180)
async def test_postgres_stopped_is_503_and_the_client_retries_until_it_is_back(
    own_cluster: EmbeddedPostgres, tmp_path: Path, sim_process: SimFactory
) -> None:
    dsn = own_cluster.dsn
    async with Queue.connect(dsn, max_size=2, migrate=True):
        pass
    async with sim_process(max_send_rate=2, identities=IDENTITIES) as sim:
        env = cli_env(
            tmp_path,
            dsn=dsn,
            endpoint_url=sim.endpoint_url,
            DISPATCHER_DATABASE__OUTAGE_TIMEOUT="120",
        )
        key_id, secret = await create_key(env, "shop")
        log_file = tmp_path / "run.log"
        async with api_daemon(env, log_file) as (base, proc):
            await asyncio.to_thread(own_cluster.stop)
            headers = tmp_path / "headers.txt"
            status, body = await curl(
                base + "/v1/messages",
                "-u",
                f"{key_id}:{secret}",
                "-D",
                str(headers),
                *json_body(MSG),
            )
            assert status == 503, (body, tail(log_file))
            assert "try again later" in body["error"]
            assert "retry-after: 5" in headers.read_text().lower()

            # The client waits as asked and tries again: accepted once Postgres is back.
            client = Client(base, key_id, secret, retries=6)
            sending = asyncio.create_task(asyncio.to_thread(client.send, **MSG))

            async def refused_once_more() -> bool:
                return unavailable_answers(log_file) >= 2

            await eventually(refused_once_more, limit=30)
            await asyncio.to_thread(own_cluster.start)
            message_id = await asyncio.wait_for(sending, 60)
            assert proc.returncode is None, tail(log_file)
        assert "Traceback" not in log_file.read_text(), tail(log_file)
    rows = await fetch(dsn, "SELECT id, key_id FROM dispatcher.messages")
    assert [(r["id"], r["key_id"]) for r in rows] == [
        (message_id, key_id)
    ]  # the 503 queued nothing
