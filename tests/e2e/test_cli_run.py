"""`dispatcher run --drain`, `status` and `quota` against the simulator and moto, as a user runs
them: what reached SES, what the exit code and the output say, what the database holds."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import aioboto3

from dispatcher.domain.jobs import STATES, NewMessage
from dispatcher.queue.repository import Queue
from tests.support.cli import cli_env, fetch, run_cli, state_counts
from tests.support.dispatch import REAL, batch, dispatcher_ids
from tests.support.moto import MotoServer
from tests.support.sim import SimFactory

# The states a script reading `status --json` relies on (the code may add more).
DOCUMENTED_STATES = ("queued", "claimed", "in_flight", "sent", "failed", "unknown", "cancelled")


async def test_run_drain_sends_everything_once_and_status_and_quota_show_it(
    queue: Queue, pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    msgs = batch(30, every=5, extra=2)  # 42 recipients in all
    ids = [r.id for r in await queue.enqueue_many(msgs)]
    # 20/s: the drain lasts over a second, so the quota leader (which may ask SES again only a
    # second after the start-up reading: SES allows 1 request/s) publishes a reading for all.
    async with sim_process(max_send_rate=20, max_24_hour_send=5000) as sim:
        env = cli_env(tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url)

        run = await run_cli(env, "run", "--drain")

        assert run.code == 0, run
        assert run.out.startswith("drained: nothing left to send. sent 30, failed 0, in doubt 0")
        assert "worker.stopped" in run.event_names()
        received = await sim.messages()
        assert Counter(dispatcher_ids(received)) == Counter(ids)  # each exactly once
        assert (await sim.stats())["throttled"] == 0

        # Each command reads GetSendQuota, which SES answers once a second: a user's pace.
        status = await run_cli(env, "status", "--json")
        await asyncio.sleep(1.0)
        text = await run_cli(env, "status")
        await asyncio.sleep(1.0)
        quota = await run_cli(env, "quota")

    assert status.code == 0, status
    view = json.loads(status.out)
    assert set(DOCUMENTED_STATES) <= set(STATES)
    assert view["states"] == {s: 30 if s == "sent" else 0 for s in STATES}
    pacing = view["pacing"]
    assert pacing["max_send_rate"] == 20
    assert pacing["max_24_hour_send"] == 5000
    # Simulator addresses do not count against the daily quota, as in SES.
    assert pacing["sent_last_24_hours"] == 0
    assert pacing["paused"] is False and pacing["reason"] is None
    assert pacing["workers"] == 0  # the drained worker deregistered
    # The reading the worker took for all workers, and what they sent since (as the governor
    # counts: every recipient, simulator addresses too).
    shared = pacing["shared"]
    assert shared["read_by"] is None and shared["reading_age_seconds"] >= 0
    assert 0 < shared["sent_since_reading"] <= 42
    # Rates next to AWS's review levels: 42 recipients sent, nothing came back (no feedback).
    rep = view["reputation"]
    assert rep["recipients_sent"] == 42 and rep["hard_bounces"] == rep["complaints"] == 0
    assert rep["bounce_rate"] == 0.0 and rep["aws_bounce_review"] == 0.05
    assert rep["aws_complaint_review"] == 0.001 and rep["judged"] is False  # under min_volume

    assert text.code == 0, text
    lines = text.out.splitlines()
    assert lines[0] == "messages:"
    assert [line.split() for line in lines[1 : 1 + len(STATES)]] == [
        [s, "30" if s == "sent" else "0"] for s in STATES
    ]
    assert "workers: 0 running" in lines
    assert any(line.split() == ["MaxSendRate", "20", "recipients/s"] for line in lines)
    assert any(line.split() == ["state", "sending"] for line in lines)
    assert any(
        "shared reading    taken" in line and "a worker that has stopped" in line for line in lines
    )

    assert quota.code == 0, quota
    assert quota.out.splitlines()[0] == "account (GetSendQuota):"
    shown = {line.split()[0]: line.split()[1] for line in quota.out.splitlines()[1:4]}
    assert shown == {"MaxSendRate": "20", "Max24HourSend": "5000", "SentLast24Hours": "0"}
    assert "stops at" in quota.out and "(98% of Max24HourSend)" in quota.out


async def test_run_drain_stops_before_the_daily_quota_with_exit_3(
    queue: Queue, pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    # Ordinary addresses count against the daily quota; 5 allowed, 12 queued.
    ids = [r.id for r in await queue.enqueue_many(batch(12, to=REAL))]
    async with sim_process(max_send_rate=100, max_24_hour_send=5) as sim:
        env = cli_env(tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url)

        run = await run_cli(env, "run", "--drain")

        assert run.code == 3, run
        assert run.out == ""
        (report,) = run.messages
        assert report.startswith("daily sending quota spent with mail still queued"), report
        assert "24 h" in report
        received = await sim.messages()
        stats = await sim.stats()
        # Each command reads GetSendQuota, which SES answers once a second: a user's pace.
        await asyncio.sleep(1.0)
        status = await run_cli(env, "status", "--json")
        await asyncio.sleep(1.0)
        text = await run_cli(env, "status")

    # The governor stopped short of the quota: SES never had to refuse a send.
    assert stats["daily_quota_exceeded"] == 0
    sent_ids = dispatcher_ids(received)
    assert 0 < len(sent_ids) <= 4 and len(set(sent_ids)) == len(sent_ids)  # 5 x 0.98 = 4.9
    assert set(sent_ids) <= set(ids)
    assert status.code == 0, status
    view = json.loads(status.out)
    assert view["states"]["sent"] == len(sent_ids)
    assert view["states"]["queued"] == 12 - len(sent_ids)  # the rest waits, nothing failed
    assert view["states"]["failed"] == view["states"]["in_flight"] == 0
    assert view["pacing"]["paused"] is True
    assert "daily sending quota" in view["pacing"]["reason"]
    assert text.code == 0, text
    assert any(line.split() == ["state", "PAUSED"] for line in text.out.splitlines())


async def test_run_drain_against_moto_sends_once_and_holds_an_unverified_sender(
    queue: Queue, pg_dsn: str, tmp_path: Path, moto: MotoServer
) -> None:
    sender = "verified@example.com"
    async with aioboto3.Session().client("ses", **moto.client_kwargs()) as ses:
        await ses.verify_email_identity(EmailAddress=sender)
    good = [
        NewMessage(from_addr=sender, to=(f"r{i}@example.net",), subject=f"s{i}", text=f"t{i}")
        for i in range(2)
    ]
    stranger = NewMessage(
        from_addr="stranger@example.com", to=("r9@example.net",), subject="s9", text="t9"
    )
    good_ids = [r.id for r in await queue.enqueue_many(good)]
    (bad_id,) = [r.id for r in await queue.enqueue_many([stranger])]
    # moto's account allows 1 recipient/s: three sends take about two seconds.
    env = cli_env(tmp_path, dsn=pg_dsn, endpoint_url=moto.endpoint_url)

    run = await run_cli(env, "run", "--drain")

    # The unverified sender is held (issue 15 item 4), not failed: the drain stops on it.
    assert run.code == 4, run
    assert "sent 2, failed 0, in doubt 0" in run.err
    assert [e for e in run.events if e["event"] == "message.failed"] == []
    [held] = [e for e in run.events if e["event"] == "sender.held"]
    assert held["from_addr"] == "stranger@example.com"
    sent = moto.sent_messages()
    assert sorted(r["destinations"]["ToAddresses"][0] for r in sent) == [
        "r0@example.net",
        "r1@example.net",
    ]
    assert all(r["source"] == sender for r in sent)
    rows = await fetch(
        pg_dsn,
        "SELECT id, state::text AS state, attempts, ses_message_id, last_error "
        "FROM dispatcher.jobs ORDER BY id",
    )
    by_id = {r["id"]: r for r in rows}
    assert {by_id[i]["ses_message_id"] for i in good_ids} == {r["id"] for r in sent}
    assert all(by_id[i]["state"] == "sent" for i in good_ids)
    waiting = by_id[bad_id]
    assert waiting["state"] == "queued"
    assert waiting["attempts"] == 0  # a held sender spends none of its messages' attempts
    assert "Email address not verified" in waiting["last_error"]
    assert "stranger@example.com" in waiting["last_error"]
    assert await state_counts(pg_dsn) == {"sent": 2, "queued": 1}


async def test_cancel_of_mail_already_sent_exits_1(
    queue: Queue, pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    (first, second) = [r.id for r in await queue.enqueue_many(batch(2))]
    async with sim_process(max_send_rate=100) as sim:
        env = cli_env(tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url)
        cancelled = await run_cli(env, "cancel", str(second))
        assert cancelled.code == 0, cancelled
        run = await run_cli(env, "run", "--drain")
        assert run.code == 0, run
        assert dispatcher_ids(await sim.messages()) == [first]  # the cancelled one never went

    late = await run_cli(env, "cancel", str(first))

    assert late.code == 1, late
    assert late.messages == [f"not cancelled (unknown, or already sending or done): {first}"]
    assert await state_counts(pg_dsn) == {"sent": 1, "cancelled": 1}
