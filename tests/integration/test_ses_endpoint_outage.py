"""The SES-compatible endpoint while Postgres is out of reach: SES's 503 (every SDK retries it),
nothing queued, and the same request accepted once Postgres is back."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import aioboto3
import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError

from dispatcher.db.embedded import EmbeddedPostgres
from dispatcher.doors.keys import KeyStore, MasterKey
from dispatcher.doors.serve import serve_app
from dispatcher.doors.ses_ids import message_id_of
from dispatcher.doors.sockets import Listen
from dispatcher.doors.web import DoorContext, build_app
from dispatcher.feedback.store import FeedbackStore
from dispatcher.queue.repository import Queue
from dispatcher.worker.quota_store import SharedQuotaStore
from tests.support.cli import fetch
from tests.support.dispatch import make_config
from tests.support.moto import free_port

OK = "success@simulator.amazonses.com"
SEND: dict[str, Any] = {
    "FromEmailAddress": "app@example.com",
    "Destination": {"ToAddresses": [OK]},
    "Content": {"Simple": {"Subject": {"Data": "hi"}, "Body": {"Text": {"Data": "hello"}}}},
}


async def test_postgres_out_of_reach_is_a_503_and_the_retry_after_it_is_back_is_queued(
    own_cluster: EmbeddedPostgres, tmp_path: Path
) -> None:
    dsn = own_cluster.dsn
    base = make_config(dsn, "http://127.0.0.1:9")  # no SES: nothing is sent here
    cfg = replace(base, keys=replace(base.keys, master_file=tmp_path / "keys.master"))
    master = MasterKey.load(tmp_path / "keys.master", create=True)
    port = free_port()
    async with Queue.connect(dsn, max_size=2, migrate=True) as queue:
        pool = queue.pool
        key, secret = await KeyStore(pool).create(master, "app")
        ctx = DoorContext(
            cfg, pool, KeyStore(pool), queue, FeedbackStore(pool), SharedQuotaStore(pool)
        )
        kwargs: dict[str, Any] = {
            "endpoint_url": f"http://127.0.0.1:{port}",
            "region_name": "us-east-1",
            "aws_access_key_id": key.id,
            "aws_secret_access_key": secret,
            "config": AioConfig(retries={"mode": "standard", "total_max_attempts": 1}),
        }
        session = aioboto3.Session()
        async with (
            serve_app(build_app(ctx), Listen("api", "127.0.0.1", port)),
            session.client("sesv2", **kwargs) as v2,
            session.client("ses", **kwargs) as v1,
        ):
            before = await v2.send_email(**SEND)
            await asyncio.to_thread(own_cluster.stop)
            try:
                with pytest.raises(ClientError) as down:
                    await v2.send_email(**SEND)
                err = down.value.response
                assert err["Error"]["Code"] == "ServiceUnavailable"
                assert err["ResponseMetadata"]["HTTPStatusCode"] == 503
                assert "try again" in err["Error"]["Message"]
                with pytest.raises(ClientError) as down_v1:
                    await v1.send_raw_email(
                        RawMessage={"Data": b"From: app@example.com\r\nTo: " + OK.encode()}
                    )
                assert down_v1.value.response["Error"]["Code"] == "ServiceUnavailable"
            finally:
                await asyncio.to_thread(own_cluster.start)
            # The pool may hand out a connection that died with the server: an SDK's retries
            # (a few attempts, backing off) get through.
            after = None
            for _ in range(5):
                try:
                    after = await v2.send_email(**SEND)
                    break
                except ClientError as exc:
                    assert exc.response["Error"]["Code"] == "ServiceUnavailable"
                    await asyncio.sleep(0.2)
            assert after is not None
    rows = await fetch(dsn, "SELECT id, key_id FROM dispatcher.messages ORDER BY id")
    assert [r["id"] for r in rows] == [
        message_id_of(before["MessageId"]),
        message_id_of(after["MessageId"]),
    ]
    assert {r["key_id"] for r in rows} == {key.id}
