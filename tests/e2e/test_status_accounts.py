"""`dispatcher status` with two SES accounts: each account's warm-up day is its own (a new
account starts at day 1 while the other is further on), and status shows both."""

from __future__ import annotations

import json
from pathlib import Path

from dispatcher.accounts.store import AccountStore
from dispatcher.pacing.warmup import WarmupSettings
from dispatcher.queue.repository import Queue
from dispatcher.worker.warmup_store import WarmupStore
from tests.support.accounts import write_accounts
from tests.support.cli import cli_env, fetch, run_cli
from tests.support.sim import SimFactory

SCHEDULE = "100, 150, 300"


async def test_status_shows_each_accounts_own_warmup(
    queue: Queue, pg_dsn: str, tmp_path: Path, sim_inprocess: SimFactory
) -> None:
    settings = WarmupSettings(enabled=True, schedule=SCHEDULE)
    await AccountStore(queue.pool).put(["brand-a", "brand-b"], ())
    # brand-a started yesterday (its first day moved back, as a day passing does) and has sent
    # 120 today; brand-b is new: 30 taken on its first day.
    await WarmupStore(queue.pool, settings, "brand-a").take(60)
    await fetch(pg_dsn, "UPDATE dispatcher.warmup_days SET day = day - 1 WHERE account = 'brand-a'")
    await WarmupStore(queue.pool, settings, "brand-a").take(120)
    await WarmupStore(queue.pool, settings, "brand-b").take(30)
    async with sim_inprocess() as sim_a, sim_inprocess() as sim_b:
        config = write_accounts(
            tmp_path / "dispatcher.toml",
            {"brand-a": sim_a.endpoint_url, "brand-b": sim_b.endpoint_url},
        )
        env = cli_env(
            tmp_path,
            dsn=pg_dsn,
            DISPATCHER_CONFIG=str(config),
            DISPATCHER_WARMUP__ENABLED="true",
            DISPATCHER_WARMUP__SCHEDULE=SCHEDULE,
        )
        as_json = await run_cli(env, "status", "--json")
        text = await run_cli(env, "status")

    assert as_json.code == 0, as_json
    shown = {a["name"]: a["warmup"] for a in json.loads(as_json.out)["accounts"]}
    assert (shown["brand-a"]["day"], shown["brand-a"]["taken_today"]) == (2, 120)
    assert (shown["brand-b"]["day"], shown["brand-b"]["taken_today"]) == (1, 30)
    assert text.code == 0, text
    assert "warm-up: day 2 of 3, cap 150 recipients today (UTC), 120 taken, 30 left" in text.out
    assert (
        "warm-up of account brand-b: day 1 of 3, cap 100 recipients today (UTC), 30 taken, 70 left"
        in text.out
    )
