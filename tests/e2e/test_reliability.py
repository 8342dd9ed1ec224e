"""Reliability scenarios as a user meets them: Postgres unreachable at start, Postgres restarted
under a running daemon. Real servers and the real CLI; counts in every assertion message."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.app import run_worker
from dispatcher.db.embedded import EmbeddedPostgres
from dispatcher.queue.repository import Queue
from tests.support.cli import cli_env, fetch, run_cli, start_cli, state_counts, stop_cli
from tests.support.dispatch import SIM_OK, batch, dispatcher_ids, eventually, make_config
from tests.support.pg import server_dir
from tests.support.sim import SimFactory, SimHandle


async def accepted_at_least(sim: SimHandle, n: int) -> bool:
    return int((await sim.stats())["accepted"]) >= n


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_postgres_unreachable_at_start_is_one_clear_line_and_a_nonzero_exit(
    tmp_path: Path,
) -> None:
    dsn = f"postgresql://dispatcher:secret@127.0.0.1:{closed_port()}/dispatcher"
    env = cli_env(tmp_path, dsn=dsn, endpoint_url="http://127.0.0.1:9")
    for args in (("run",), ("run", "--drain"), ("status",)):
        result = await run_cli(env, *args, limit=60)
        assert result.code != 0, result
        assert "Traceback" not in result.err, result
        assert "secret" not in result.err, result  # the password is never printed
        errors = [line for line in result.messages if "cannot connect" in line]
        assert errors, result
        assert "127.0.0.1" in errors[0], result


async def test_postgres_restarted_mid_run_the_daemon_reconnects_and_finishes(
    own_cluster: EmbeddedPostgres, tmp_path: Path, sim_process: SimFactory
) -> None:
    dsn = own_cluster.dsn
    async with Queue.connect(dsn, max_size=2, migrate=True) as queue:
        ids = [r.id for r in await queue.enqueue_many(batch(1200))]
    async with sim_process(max_send_rate=200, max_24_hour_send=-1) as sim:
        env = cli_env(
            tmp_path / "cli",
            dsn=dsn,
            endpoint_url=sim.endpoint_url,
            DISPATCHER_QUEUE__LEASE_SECONDS="4",
            DISPATCHER_QUEUE__HEARTBEAT_SECONDS="1",
        )
        (tmp_path / "cli").mkdir()
        proc = await start_cli(env, "run", "--drain", output=tmp_path / "run.log")
        try:

            async def some_sent() -> bool:
                return int((await sim.stats())["accepted"]) >= 300

            await eventually(some_sent, limit=30)
            await asyncio.to_thread(own_cluster.restart)
            code = await asyncio.wait_for(proc.wait(), 90)
        finally:
            if proc.returncode is None:
                await stop_cli(proc)
        received = await sim.messages()
    log = (tmp_path / "run.log").read_text()
    counts = await state_counts(dsn)
    unknown = {
        r["id"] for r in await fetch(dsn, "SELECT id FROM dispatcher.jobs WHERE state = 'unknown'")
    }
    seen = Counter(dispatcher_ids(received))
    lost = [i for i in ids if i not in seen and i not in unknown]
    twice = {i: n for i, n in seen.items() if n > 1}
    summary = (
        f"exit {code}, states {counts}, lost {len(lost)}, twice {twice}, in doubt {len(unknown)}"
    )
    assert "Traceback" not in log, log[-3000:]
    assert code == 0 or (code == 4 and unknown), summary
    assert not lost, summary
    assert set(twice) <= unknown, summary  # only an in-doubt send may have gone twice
    assert counts.get("claimed", 0) == counts.get("in_flight", 0) == counts.get("queued", 0) == 0
    assert counts["sent"] + len(unknown) == len(ids), summary


async def test_faults_and_a_throttling_storm_end_sent_or_in_doubt_never_failed_by_throttling(
    pg_dsn: str, sim_process: SimFactory
) -> None:
    """5 % HTTP 500, 2 % connection resets, 1 % requests never answered, and a 1 s storm of
    throttling: every message ends sent (once) or in doubt (held, not sent); none fails."""
    async with Queue.connect(pg_dsn, max_size=2) as queue:
        ids = [r.id for r in await queue.enqueue_many(batch(600))]
    async with sim_process(
        max_send_rate=300,
        fault_500_rate=0.05,
        fault_reset_rate=0.02,
        fault_timeout_rate=0.01,
        fault_timeout_seconds=5,
    ) as sim:
        cfg = make_config(
            pg_dsn,
            sim.endpoint_url,
            queue={"backoff_base": 0.05, "backoff_max": 0.2},
            ses={"read_timeout": 0.5},
        )
        worker = asyncio.create_task(run_worker(cfg, asyncio.Event(), drain=True))
        await eventually(lambda: accepted_at_least(sim, 150))
        await sim.admin("POST", "/_sim/storm", {"seconds": 1.0})
        report = await asyncio.wait_for(worker, 90)
        received = await sim.messages()
        stats = await sim.stats()
    counts = await state_counts(pg_dsn)
    rows = await fetch(pg_dsn, "SELECT id, state::text AS state, attempts FROM dispatcher.jobs")
    unknown = {r["id"] for r in rows if r["state"] == "unknown"}
    seen = Counter(dispatcher_ids(received))
    summary = (
        f"states {counts}, sim faults {stats['faults']}, throttled {stats['throttled']}, "
        f"exit {report.exit_code} ({report.reason})"
    )
    assert stats["faults"] > 0 and stats["throttled"] > 0, summary  # the faults did happen
    assert set(counts) <= {"sent", "unknown"}, summary  # nothing failed, nothing stuck
    assert {i for i in ids if i not in unknown} == set(seen), summary  # sent = received
    assert max(seen.values()) == 1, summary  # and each once
    # Throttling is not a failed attempt: the attempts used are the faults' (at most 1 + 3 per
    # message here), never one per throttled call.
    assert sum(r["attempts"] for r in rows) <= stats["faults"] + len(ids), summary


async def test_a_passing_ses_error_at_start_is_retried_not_fatal(
    pg_dsn: str, sim_process: SimFactory
) -> None:
    """Every request fails with HTTP 500 for the first second: the daemon waits it out."""
    async with Queue.connect(pg_dsn, max_size=2) as queue:
        ids = [r.id for r in await queue.enqueue_many(batch(20))]
    async with sim_process(max_send_rate=100) as sim:
        await sim.configure(fault_500_rate=1.0)  # once the account is set up
        worker = asyncio.create_task(
            run_worker(make_config(pg_dsn, sim.endpoint_url), asyncio.Event(), drain=True)
        )
        await eventually(lambda: faults_at_least(sim, 2))
        await sim.configure(fault_500_rate=0.0)
        report = await asyncio.wait_for(worker, 60)
        received = await sim.messages()
    assert report.exit_code == 0, report.reason
    assert sorted(dispatcher_ids(received)) == sorted(ids)


async def faults_at_least(sim: SimHandle, n: int) -> bool:
    return int((await sim.stats())["faults"]) >= n


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 120 MB tmpfs: a disk this test can fill (skipped where mounting is not allowed)."""
    with server_dir() as base:
        yield from _mounted(base / "disk")


def _mounted(mount_point: Path) -> Iterator[Path]:
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=120m,mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here to fill: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        EmbeddedPostgres(mount_point / "data").stop()
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


async def test_a_full_disk_under_the_embedded_cluster_stops_cleanly_and_loses_nothing(
    small_disk: Path, sim_process: SimFactory
) -> None:
    async with sim_process(max_send_rate=500, max_24_hour_send=-1) as sim:
        env = cli_env(
            small_disk / "data",
            endpoint_url=sim.endpoint_url,
            DISPATCHER_QUEUE__LEASE_SECONDS="2",
            DISPATCHER_QUEUE__HEARTBEAT_SECONDS="1",
        )
        (small_disk / "data").mkdir()
        lines = "".join(
            json.dumps({"from": "a@example.com", "to": [SIM_OK], "subject": f"m{i}", "text": "x"})
            + "\n"
            for i in range(500)
        )
        enqueued = await run_cli(env, "enqueue", "-", stdin=lines.encode(), limit=120)
        assert enqueued.code == 0, enqueued
        filler = small_disk / "filler"
        free = shutil.disk_usage(small_disk).free
        with filler.open("wb") as f:
            os.posix_fallocate(f.fileno(), 0, max(1, free - 64 * 1024))

        full = await run_cli(env, "run", "--drain", limit=120)
        assert full.code != 0, full
        assert "Traceback" not in full.err, full
        last = full.err.strip().splitlines()[-1]
        assert last.startswith("dispatcher: error: Postgres refused a write"), full
        assert "No space left on device" in last, full

        filler.unlink()  # the operator frees space and starts again
        await asyncio.sleep(2.5)  # the stopped worker's lease lapses
        again = await run_cli(env, "run", "--drain", limit=120)
        received = await sim.messages()
        listed = await run_cli(env, "in-doubt", "list", "--limit", "1000", limit=60)
    assert again.code == 0, again
    # Deliveries per message, as SES saw them. In doubt is a message whose send was cut off:
    # held (the default policy), never sent again, so it reached SES once or not at all.
    seen = Counter(dispatcher_ids(received))
    in_doubt = {int(line.split("\t")[0]) for line in listed.out.splitlines() if "\t" in line}
    twice = {i: n for i, n in seen.items() if n > 1}
    assert not twice, f"delivered more than once: {twice}"
    lost = set(range(1, 501)) - set(seen) - in_doubt
    assert not lost, f"{len(lost)} of 500 neither reached SES nor are in doubt: {sorted(lost)}"
    assert set(seen) | in_doubt == set(range(1, 501)), (sorted(seen), in_doubt)
