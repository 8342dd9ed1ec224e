"""The transactional outbox and the wake-up: mail enqueued in the application's transaction is
sent if and only if it commits, at once on an idle daemon (LISTEN/NOTIFY, not the next poll)."""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg  # type: ignore[import-untyped]
import pytest

from dispatcher import outbox
from dispatcher.app import run_worker
from dispatcher.config import Config
from dispatcher.domain.jobs import NewMessage
from dispatcher.domain.validate import validate_message
from dispatcher.errors import InputError
from dispatcher.queue.repository import Queue
from tests.support.dispatch import dispatcher_ids, eventually, make_config
from tests.support.sim import SimFactory, SimHandle

SIM_OK = "success@simulator.amazonses.com"


def message(n: int) -> NewMessage:
    return NewMessage(from_addr="app@example.com", to=(SIM_OK,), subject=f"reset {n}", text="t")


@asynccontextmanager
async def daemon(cfg: Config) -> AsyncIterator[None]:
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(cfg, stop))
    try:
        await asyncio.sleep(0.5)  # started and idle
        assert not worker.done(), worker.result()
        yield
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)


async def accepted(sim: SimHandle) -> int:
    return int((await sim.stats())["accepted"])


async def test_mail_is_sent_only_if_the_transaction_commits(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    app_conn = await asyncpg.connect(pg_dsn)
    try:
        async with (
            sim_process(max_send_rate=100) as sim,
            daemon(make_config(pg_dsn, sim.endpoint_url)),
        ):
            rolled_back: list[int] = []
            with pytest.raises(RuntimeError):
                async with app_conn.transaction():
                    rolled_back.append(await outbox.enqueue(app_conn, message(1)))
                    rolled_back.append(
                        await app_conn.fetchval(
                            "SELECT dispatcher.enqueue(from_addr => 'app@example.com', "
                            "to_addrs => ARRAY[$1], subject => 'reset 2', text_body => 't')",
                            SIM_OK,
                        )
                    )
                    raise RuntimeError("the application's own write failed")
            async with app_conn.transaction():
                kept_py = await outbox.enqueue(app_conn, message(3))
                kept_sql = await app_conn.fetchval(
                    "SELECT dispatcher.enqueue(from_addr => 'app@example.com', "
                    "to_addrs => ARRAY[$1], subject => 'reset 4', text_body => 't', "
                    "idempotency_key => 'reset-4')",
                    SIM_OK,
                )
                # The same key again in the same transaction is the same message.
                assert (
                    await app_conn.fetchval(
                        "SELECT dispatcher.enqueue('app@example.com', ARRAY[$1], 'reset 4', 't', "
                        "idempotency_key => 'reset-4')",
                        SIM_OK,
                    )
                    == kept_sql
                )

            await eventually(lambda: _at_least(sim, 2), limit=10)
            await asyncio.sleep(1.0)  # anything else would have gone by now
            received = Counter(dispatcher_ids(await sim.messages()))
    finally:
        await app_conn.close()
    assert received == Counter({kept_py: 1, kept_sql: 1})
    assert not set(rolled_back) & set(received)
    counts = await queue.counts()
    assert counts["sent"] == 2 and sum(counts.values()) == 2  # rolled back: no rows at all


async def _at_least(sim: SimHandle, n: int) -> bool:
    return await accepted(sim) >= n


async def test_an_idle_daemon_sends_new_mail_at_once_not_at_its_next_poll(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    loop = asyncio.get_running_loop()
    async with sim_process(max_send_rate=100) as sim:
        cfg = make_config(pg_dsn, sim.endpoint_url, queue={"poll_interval": 10.0})
        async with daemon(cfg):
            for n in range(3):
                await asyncio.sleep(0.3)  # idle again
                began = loop.time()
                await queue.enqueue(message(n))
                await eventually(functools.partial(_at_least, sim, n + 1), limit=5, step=0.005)
                waited = loop.time() - began
                # A poll every 10 s would take seconds; the wake-up takes milliseconds.
                assert waited < 1.0, f"message {n} took {waited:.3f} s"


async def test_the_sql_function_refuses_bad_mail_with_a_clear_error_and_writes_nothing(
    queue: Queue, pg_dsn: str
) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        cases = {
            "no recipient": "SELECT dispatcher.enqueue('a@example.com', '{}', 's', 't')",
            "is not an email address": (
                "SELECT dispatcher.enqueue('a@example.com', ARRAY['nobody'], 's', 't')"
            ),
            "no body": "SELECT dispatcher.enqueue('a@example.com', ARRAY['b@example.com'], 's')",
            "at most 50": (
                "SELECT dispatcher.enqueue('a@example.com', "
                "array_fill('b@example.com'::text, ARRAY[51]), 's', 't')"
            ),
            "reserved": (
                "SELECT dispatcher.enqueue('a@example.com', ARRAY['b@example.com'], 's', 't', "
                """tags => '{"dispatcher_id": "1"}')"""
            ),
        }
        for expected, sql in cases.items():
            with pytest.raises(asyncpg.PostgresError, match=expected) as err:
                await conn.fetchval(sql)
            assert err.value.sqlstate == "22023" and err.value.hint, expected
    finally:
        await conn.close()
    assert sum((await queue.counts()).values()) == 0


async def test_the_python_helper_validates_like_the_cli(queue: Queue, pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        with pytest.raises(InputError, match="no recipient"):
            await outbox.enqueue(conn, NewMessage(from_addr="a@example.com", subject="s", text="t"))
    finally:
        await conn.close()
    assert sum((await queue.counts()).values()) == 0


async def test_the_sql_function_stores_addresses_as_the_python_validator_does(
    queue: Queue, pg_dsn: str
) -> None:
    sender = "App  <app@Example.COM>"
    given = ["Jane Doe <jane@Example.COM>", " jo@example.com ", r'"Doe, \"J\"" <j@example.com>']
    conn = await asyncpg.connect(pg_dsn)
    try:
        sql_id = await conn.fetchval(
            "SELECT dispatcher.enqueue(from_addr => $1, to_addrs => $2, reply_to => $2, "
            "subject => 's', text_body => 't')",
            sender,
            given,
        )
        row = await conn.fetchrow(
            "SELECT from_addr, to_addrs, reply_to FROM dispatcher.messages WHERE id = $1", sql_id
        )
        with pytest.raises(asyncpg.PostgresError, match="punycode") as err:
            await conn.fetchval(
                "SELECT dispatcher.enqueue('a@example.com', ARRAY['j@bücher.example'], 's', 't')"
            )
        assert err.value.sqlstate == "22023"
    finally:
        await conn.close()
    py = validate_message(NewMessage(from_addr=sender, to=tuple(given), subject="s", text="t"))
    assert row["from_addr"] == py.from_addr == '"App" <app@example.com>'
    assert tuple(row["to_addrs"]) == tuple(row["reply_to"]) == py.to
    assert py.to == (
        '"Jane Doe" <jane@example.com>',
        "jo@example.com",
        r'"Doe, \"J\"" <j@example.com>',
    )
