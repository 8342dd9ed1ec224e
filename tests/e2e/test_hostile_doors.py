"""One table of hostile messages (tests/support/hostile.py) through every door: `dispatcher
send`, `dispatcher enqueue` (JSONL), Queue.enqueue, outbox.enqueue, the SQL dispatcher.enqueue()
and `campaign create`. Every door refuses every row it can carry, and nothing is queued."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from dispatcher import outbox
from dispatcher.domain.jobs import NewMessage
from dispatcher.errors import InputError
from dispatcher.queue.repository import Queue
from tests.support.cli import CliResult, cli_env, fetch, run_cli
from tests.support.hostile import HOSTILE, Hostile

CONCURRENT_CLI = 3  # CLI runs at once: a few, on a 2-core machine


def new_message(f: dict[str, Any]) -> NewMessage:
    """The row as a Python caller would build it (no validation on the way)."""

    def many(key: str) -> tuple[str, ...]:
        value = f.get(key) or ()
        return (value,) if isinstance(value, str) else tuple(value)

    return NewMessage(
        from_addr=f["from"],
        to=many("to"),
        cc=many("cc"),
        bcc=many("bcc"),
        reply_to=many("reply_to"),
        subject=f.get("subject", ""),
        text=f.get("text"),
        html=f.get("html"),
        configuration_set=f.get("configuration_set"),
        tags=f.get("tags") or {},
        priority=f.get("priority", 0),
    )


def send_args(f: dict[str, Any]) -> list[str]:
    args = ["send", "--from", f["from"], "--subject", f["subject"], "--text", f["text"]]
    for key in ("to", "cc", "bcc", "reply_to"):
        for address in f.get(key) or ():
            args += [f"--{key.replace('_', '-')}", address]
    if "configuration_set" in f:
        args += ["--configuration-set", f["configuration_set"]]
    for name, value in (f.get("tags") or {}).items():
        args += ["--tag", f"{name}={value}"]
    if "priority" in f:
        args += ["--priority", str(f["priority"])]
    return args


def campaign_args(f: dict[str, Any], template: Path, recipients: Path) -> list[str]:
    args = ["campaign", "create", "--name", "hostile", "--from", f["from"]]
    args += ["--subject", f["subject"], "--template", str(template)]
    args += ["--recipients", str(recipients)]
    for address in f.get("reply_to") or ():
        args += ["--reply-to", address]
    if "configuration_set" in f:
        args += ["--configuration-set", f["configuration_set"]]
    for name, value in (f.get("tags") or {}).items():
        args += ["--tag", f"{name}={value}"]
    if "priority" in f:
        args += ["--priority", str(f["priority"])]
    return args


def refused_by_the_cli(row: Hostile, door: str, result: CliResult) -> str | None:
    """What is wrong with how the CLI answered, or None if it refused as it should."""
    if result.code != 2:
        return f"{door}: {row.what}: exit {result.code}\n{result}"
    if "Traceback" in result.err:
        return f"{door}: {row.what}: a traceback\n{result}"
    errors = [m for m in result.messages if m.startswith("dispatcher: error: ")]
    if len(errors) != 1:
        return f"{door}: {row.what}: not one error line\n{result}"
    return None


async def sql_enqueue(conn: asyncpg.Connection, f: dict[str, Any]) -> None:
    await conn.fetchval(
        "SELECT dispatcher.enqueue(from_addr => $1, to_addrs => $2, subject => $3, "
        "text_body => $4, html_body => $5, cc_addrs => $6, bcc_addrs => $7, reply_to => $8, "
        "tags => $9::jsonb, configuration_set => $10, priority => $11::integer::smallint)",
        f["from"],
        f.get("to") or [],
        f.get("subject"),
        f.get("text"),
        f.get("html"),
        f.get("cc") or [],
        f.get("bcc") or [],
        f.get("reply_to") or [],
        json.dumps(f.get("tags") or {}),
        f.get("configuration_set"),
        f.get("priority", 0),
    )


@pytest.mark.timeout(300)
async def test_every_door_refuses_every_hostile_row_and_queues_nothing(
    queue: Queue, pg_dsn: str, tmp_path: Path
) -> None:
    problems: list[str] = []

    # The Python doors: Queue.enqueue (what `send` and `enqueue` use) and the outbox.
    conn = await asyncpg.connect(pg_dsn)
    try:
        for row in HOSTILE:
            msg = new_message(row.fields)
            try:
                await queue.enqueue(msg)
                problems.append(f"Queue.enqueue accepted {row.what}")
            except InputError:
                pass
            try:
                async with conn.transaction():
                    await outbox.enqueue(conn, msg)
                problems.append(f"outbox.enqueue accepted {row.what}")
            except InputError:
                pass
            # The SQL door: any language, on the application's own connection.
            try:
                await sql_enqueue(conn, row.fields)
                problems.append(f"dispatcher.enqueue() accepted {row.what}")
            except asyncpg.PostgresError as exc:
                if exc.sqlstate not in ("22023", "22003"):
                    problems.append(f"dispatcher.enqueue(): {row.what}: {exc.sqlstate} {exc}")
    finally:
        await conn.close()

    env = cli_env(tmp_path, dsn=pg_dsn)
    # `dispatcher enqueue`: the whole table in one file, every line reported by number.
    jsonl = tmp_path / "hostile.jsonl"
    jsonl.write_text("".join(json.dumps(row.fields) + "\n" for row in HOSTILE), encoding="utf-8")
    result = await run_cli(env, "enqueue", str(jsonl), limit=120)
    if result.code != 2 or "Traceback" in result.err:
        problems.append(f"enqueue: exit {result.code}\n{result}")
    reported = "\n".join(result.messages)
    for number, row in enumerate(HOSTILE, start=1):
        if f"line {number}:" not in reported:
            problems.append(f"enqueue: line {number} ({row.what}) not reported\n{result}")

    # `dispatcher send` and `campaign create`, a few at a time.
    template = tmp_path / "t.html"
    template.write_text("<p>Hi {{ name }}</p>", encoding="utf-8")
    recipients = tmp_path / "list.csv"
    recipients.write_text("email,name\nsuccess@simulator.amazonses.com,Jo\n", encoding="utf-8")
    gate = asyncio.Semaphore(CONCURRENT_CLI)

    async def through(row: Hostile, door: str, args: list[str]) -> str | None:
        async with gate:
            return refused_by_the_cli(row, door, await run_cli(env, *args))

    runs = [through(row, "send", send_args(row.fields)) for row in HOSTILE if row.through("send")]
    runs += [
        through(row, "campaign create", campaign_args(row.fields, template, recipients))
        for row in HOSTILE
        if row.through("campaign")
    ]
    problems += [p for p in await asyncio.gather(*runs) if p is not None]

    assert not problems, "\n".join(problems)
    (counts,) = await fetch(
        pg_dsn,
        "SELECT (SELECT count(*) FROM dispatcher.messages) AS messages, "
        "(SELECT count(*) FROM dispatcher.jobs) AS jobs, "
        "(SELECT count(*) FROM dispatcher.campaigns) AS campaigns",
    )
    assert dict(counts) == {"messages": 0, "jobs": 0, "campaigns": 0}
