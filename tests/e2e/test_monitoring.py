"""Monitoring as an operator sees it: a `run --processes 2` daemon with `[api] enabled` sends a
few hundred messages to the simulator; /metrics, scraped during and after, agrees with
`status --json` and with the simulator's record; /readyz and `status --check` turn not ready
while Postgres is stopped and ready once it is back, while /healthz stays alive throughout.
With two SES accounts, each one's sending and quota has its own series (label `account`)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.db.embedded import EmbeddedPostgres
from dispatcher.obs.metrics import QUEUE_STATES
from dispatcher.queue.repository import Queue
from tests.support.cli import cli_env, fetch, run_cli, start_cli, stop_cli
from tests.support.dispatch import batch, eventually
from tests.support.sim import SimFactory

MESSAGES = 300
LATER = 25  # scheduled for an hour from now: still queued when the test looks
pytestmark = pytest.mark.timeout(240)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a scrape."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(
    scrape: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return scrape[(name, tuple(sorted(labels.items())))]


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.text()


async def status_json(env: dict[str, str]) -> dict[str, Any]:
    result = await run_cli(env, "status", "--json")
    assert result.code == 0, result
    view: dict[str, Any] = json.loads(result.out)
    return view


async def test_metrics_agree_with_status_and_the_simulator_and_readyz_follows_postgres(
    own_cluster: EmbeddedPostgres, tmp_path: Path, sim_process: SimFactory
) -> None:
    dsn = own_cluster.dsn
    msgs = batch(MESSAGES, every=10, extra=2)  # every 10th has 2 more recipients (Cc)
    in_an_hour = datetime.now(UTC) + timedelta(hours=1)
    later = [replace(m, send_after=in_an_hour) for m in batch(LATER, prefix="later")]
    async with Queue.connect(dsn, max_size=2, migrate=True) as queue:
        await queue.enqueue_many(msgs + later)
    recipients = sum(m.recipient_count for m in msgs)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with sim_process(max_send_rate=40, max_24_hour_send=-1) as sim:
        (tmp_path / "cli").mkdir()
        env = cli_env(
            tmp_path / "cli",
            dsn=dsn,
            endpoint_url=sim.endpoint_url,
            DISPATCHER_API__ENABLED="true",
            DISPATCHER_API__LISTEN_PORT=str(port),
            DISPATCHER_QUEUE__LEASE_SECONDS="3",
            DISPATCHER_QUEUE__HEARTBEAT_SECONDS="1",
            DISPATCHER_DATABASE__OUTAGE_TIMEOUT="120",
        )
        log_file = tmp_path / "run.log"
        proc = await start_cli(env, "run", "--processes", "2", output=log_file)
        try:
            # During the run: the scrape answers, counts what went out so far, and never
            # more than the simulator took.
            async def some_sent() -> bool:
                return int((await sim.stats())["accepted"]) >= 60

            await eventually(some_sent, limit=60)

            async def counted() -> bool:  # copied from the workers' counters once a second
                scrape = samples((await get(f"{base}/metrics"))[1])
                return (
                    value(scrape, "dispatcher_sends_total", account="default", outcome="sent") > 0
                )

            await eventually(counted, limit=10, step=0.2)
            status, text = await get(f"{base}/metrics")
            assert status == 200, text
            during = samples(text)
            sent_during = value(during, "dispatcher_sends_total", account="default", outcome="sent")
            assert sent_during <= int((await sim.stats())["accepted"])
            assert value(during, "dispatcher_send_rate_allowed", account="default") > 0
            assert value(during, "dispatcher_database_up") == 1

            async def all_sent() -> bool:
                return bool((await status_json(env))["states"]["sent"] == MESSAGES)

            await eventually(all_sent, limit=90, step=0.5)
            stats = await sim.stats()

            # After: every scrape (whichever child answers) sums both processes, and its
            # numbers are the simulator's and `status --json`'s.
            states = (await status_json(env))["states"]
            assert states["queued"] == LATER

            async def counters_copied() -> bool:  # the ticker copies them once a second
                after = samples((await get(f"{base}/metrics"))[1])
                return (
                    value(after, "dispatcher_sends_total", account="default", outcome="sent")
                    == MESSAGES
                )

            await eventually(counters_copied, limit=10, step=0.2)
            for _ in range(4):  # new connections: the kernel hands them to either child
                status, text = await get(f"{base}/metrics")
                after = samples(text)
                assert (
                    value(after, "dispatcher_sends_total", account="default", outcome="sent")
                    == MESSAGES
                )
                assert (
                    value(after, "dispatcher_sends_total", account="default", outcome="sent")
                    == stats["accepted"]
                )
                assert (
                    value(after, "dispatcher_recipients_sent_total", account="default")
                    == recipients
                )
                assert stats["recipients_accepted"] == recipients
                assert (
                    value(after, "dispatcher_throttled_total", account="default")
                    == stats["throttled"]
                )
                assert (
                    value(after, "dispatcher_sends_total", account="default", outcome="sent")
                    == states["sent"]
                )
                for state in QUEUE_STATES:
                    assert value(after, "dispatcher_messages", state=state) == states[state], state
                assert value(after, "dispatcher_in_doubt") == states["unknown"] == 0
                assert value(after, "dispatcher_in_flight", account="default") == 0
                assert value(after, "dispatcher_send_seconds_count", account="default") == value(
                    after, "dispatcher_ses_calls_total", account="default"
                )
                assert (
                    value(
                        after,
                        "dispatcher_enqueue_to_accepted_seconds_count",
                        account="default",
                        lane="message",
                    )
                    == MESSAGES
                )
                assert value(after, "dispatcher_workers", host=socket.gethostname()) == 2
            if shutil.which("promtool"):
                checked = await asyncio.to_thread(promtool_check_metrics, text)
                assert checked.returncode == 0, checked.stdout + checked.stderr

            async def ready() -> bool:
                return (await get(f"{base}/readyz"))[0] == 200

            await eventually(ready, limit=30, step=0.5)
            assert value(samples((await get(f"{base}/metrics"))[1]), "dispatcher_ready") == 1
            check = await run_cli(env, "status", "--check")
            assert (check.code, check.out.strip()) == (0, "ready"), check

            # Postgres stopped: not ready (with the reason), yet alive: a restart would not help.
            await asyncio.to_thread(own_cluster.stop)
            status, body = await get(f"{base}/readyz")
            assert status == 503, body
            assert json.loads(body)["problems"][0].startswith("Postgres unreachable"), body
            status, body = await get(f"{base}/healthz")
            assert (status, json.loads(body)["phase"]) == (200, "sending"), body
            status, text = await get(f"{base}/metrics")  # what this process knows still counts
            assert status == 200
            assert value(samples(text), "dispatcher_database_up") == 0
            assert value(samples(text), "dispatcher_ready") == 0
            assert (
                value(samples(text), "dispatcher_sends_total", account="default", outcome="sent")
                == MESSAGES
            )
            check = await run_cli(env, "status", "--check")
            assert check.code == 1, check
            assert check.out.startswith("Postgres is not usable: cannot connect"), check
            assert len(check.out.strip().splitlines()) == 1, check

            # Back: ready again, without a restart.
            await asyncio.to_thread(own_cluster.start)
            await eventually(ready, limit=60, step=0.5)
            check = await run_cli(env, "status", "--check")
            assert (check.code, check.out.strip()) == (0, "ready"), check
            code = await stop_cli(proc, limit=60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    output = log_file.read_text()
    assert code == 0, output[-3000:]
    # Both children sent (so the scrapes above summed two processes' counters).
    per_child = [int(n) for n in re.findall(r"stopped\. sent (\d+)", output)]
    assert len(per_child) == 2 and all(per_child) and sum(per_child) == MESSAGES, per_child


async def test_with_two_accounts_each_ones_sending_and_quota_has_its_own_series(
    queue: Queue, pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    """An operator with two SES accounts tells them apart on /metrics: what each sent, its
    allowed rate and its quota, under `account`."""
    rate_a, rate_b, quota_b = 20.0, 5.0, 1000
    n_a, n_b = 30, 12
    port = free_port()
    async with (
        sim_process(max_send_rate=rate_a, max_24_hour_send=-1, identities=("a.example",)) as a,
        sim_process(max_send_rate=rate_b, max_24_hour_send=quota_b, identities=("b.example",)) as b,
    ):
        sims = {"brand-a": a, "brand-b": b}  # the first is the default account
        accounts = [
            f'[[accounts]]\nname = "{n}"\nendpoint_url = "{s.endpoint_url}"'
            for n, s in sims.items()
        ]
        route = '[[routes]]\nfrom_domain = "b.example"\naccount = "brand-b"'
        config = tmp_path / "dispatcher.toml"
        config.write_text("\n\n".join([*accounts, route]) + "\n")
        env = cli_env(
            tmp_path,
            dsn=pg_dsn,
            DISPATCHER_CONFIG=str(config),
            DISPATCHER_API__ENABLED="true",
            DISPATCHER_API__LISTEN_PORT=str(port),
        )
        proc = await start_cli(env, "run", output=tmp_path / "run.log")
        try:

            async def routes_written() -> bool:
                return bool(await fetch(pg_dsn, "SELECT 1 FROM dispatcher.routes"))

            await eventually(routes_written, limit=30)
            await queue.enqueue_many(
                [replace(m, from_addr="shop@a.example") for m in batch(n_a, prefix="a")]
                + [replace(m, from_addr="news@b.example") for m in batch(n_b, prefix="b")]
            )

            async def both_copied() -> bool:  # all sent, and the ticker copied the counters
                scrape = samples((await get(f"http://127.0.0.1:{port}/metrics"))[1])
                sent = [
                    value(scrape, "dispatcher_sends_total", account=name, outcome="sent")
                    for name in ("brand-a", "brand-b")
                ]
                return sent == [n_a, n_b]

            await eventually(both_copied, limit=60, step=0.5)
            status, text = await get(f"http://127.0.0.1:{port}/metrics")
        finally:
            await stop_cli(proc)
        assert status == 200, text
        assert (len(await a.messages()), len(await b.messages())) == (n_a, n_b)
    scrape = samples(text)
    for name, rate, n in (("brand-a", rate_a, n_a), ("brand-b", rate_b, n_b)):
        assert value(scrape, "dispatcher_recipients_sent_total", account=name) == n
        assert value(scrape, "dispatcher_ses_calls_total", account=name) == n
        assert value(scrape, "dispatcher_quota_max_send_rate", account=name) == rate
        assert 0 < value(scrape, "dispatcher_send_rate_allowed", account=name) <= rate
        assert value(scrape, "dispatcher_throttled_total", account=name) == 0
    assert value(scrape, "dispatcher_quota_max_24h", account="brand-a") == -1
    assert value(scrape, "dispatcher_quota_max_24h", account="brand-b") == quota_b
    assert {
        ("dispatcher_quota_used_24h", (("account", n),)) for n in ("brand-a", "brand-b")
    } <= set(scrape)
