"""Two SES accounts (two simulator processes with their own rate and daily quota) in one daemon:
mail routed by From domain goes out through its own account at that account's rate and within
its quota, and pausing one account (as SES does) holds only that account's mail, except the
route that opted in to a fallback account."""

from __future__ import annotations

import json
from pathlib import Path

from dispatcher.domain.jobs import NewMessage
from dispatcher.queue.repository import Queue
from tests.support.accounts import write_accounts
from tests.support.cli import cli_env, fetch, run_cli, start_cli, stop_cli
from tests.support.dispatch import eventually
from tests.support.sim import SimFactory, SimHandle

RATE_A, RATE_B = 20.0, 4.0  # MaxSendRate of each account
QUOTA_B = 30  # Max24HourSend of account b
N_A, N_B = 150, 40
N_URGENT = 10  # b.example mail whose route falls back to brand-a while brand-b is paused


def rate(stamps: list[float]) -> float:
    """Sends per second from the first to the last."""
    stamps = sorted(stamps)
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


async def accepted(sim: SimHandle) -> list[float]:
    return [m["accepted_at"] for m in await sim.messages()]


async def test_two_accounts_each_paced_to_its_own_numbers_and_a_pause_holds_only_its_mail(
    queue: Queue, pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    async with (
        sim_process(
            max_send_rate=RATE_A,
            max_24_hour_send=100_000,
            identities=("a.example", "b.example"),  # brand-a may send b's urgent mail
        ) as sim_a,
        sim_process(
            max_send_rate=RATE_B, max_24_hour_send=QUOTA_B, identities=("b.example",)
        ) as sim_b,
    ):
        config = write_accounts(
            tmp_path / "dispatcher.toml",
            {"brand-a": sim_a.endpoint_url, "brand-b": sim_b.endpoint_url},
            extra={"brand-b": "quota_headroom = 1.0\n"},
            routes="""
[[routes]]
tag = "urgent=yes"
account = "brand-b"
fallback = "brand-a"

[[routes]]
from_domain = "b.example"
account = "brand-b"
""",
        )
        env = cli_env(
            tmp_path,
            dsn=pg_dsn,
            DISPATCHER_CONFIG=str(config),
            DISPATCHER_DELIVERY__ACCOUNT_PAUSED_DELAY="1",
        )
        daemon = await start_cli(env, "run", output=tmp_path / "daemon.log")
        try:

            async def routes_written() -> bool:
                return bool(await fetch(pg_dsn, "SELECT 1 FROM dispatcher.routes"))

            await eventually(routes_written, limit=30)
            # brand-a's mail from Python, brand-b's from an application's transaction (SQL).
            await queue.enqueue_many(
                [
                    NewMessage(
                        from_addr="shop@a.example",
                        to=("success@simulator.amazonses.com",),
                        subject=f"a {i}",
                        text="hello",
                    )
                    for i in range(N_A)
                ]
            )
            for i in range(N_B):
                await fetch(
                    pg_dsn,
                    "SELECT dispatcher.enqueue('News <news@b.example>', "
                    "'{reader@mail.example}', $1, 'hello')",
                    f"b {i}",
                )

            async def b_sent(n: int) -> bool:
                return len(await accepted(sim_b)) >= n

            await eventually(lambda: b_sent(14), limit=30)
            await sim_b.admin("POST", "/_sim/account", {"sending_enabled": False})
            b_before = await accepted(sim_b)
            a_at_pause = len(await accepted(sim_a))
            await eventually(lambda: _grew(sim_a, a_at_pause + 2 * int(RATE_A)), limit=10)
            b_during = await accepted(sim_b)

            async def marked_paused() -> bool:
                rows = await fetch(
                    pg_dsn, "SELECT paused_at FROM dispatcher.accounts WHERE name = 'brand-b'"
                )
                return rows[0]["paused_at"] is not None

            await eventually(marked_paused, limit=5)  # what `status` shows as PAUSED
            a_during = len(await accepted(sim_a))
            # Mail of the route that opted in goes out via brand-a while brand-b is paused.
            await queue.enqueue_many(
                [
                    NewMessage(
                        from_addr="alerts@b.example",
                        to=("reader@mail.example",),
                        subject=f"urgent {i}",
                        text="now",
                        tags={"urgent": "yes"},
                    )
                    for i in range(N_URGENT)
                ]
            )

            async def urgent_via_a() -> bool:
                got = [m for m in await sim_a.messages() if "alerts@" in m["from"]]
                return len(got) == N_URGENT

            await eventually(urgent_via_a, limit=10)
            b_after_urgent = await accepted(sim_b)
            await sim_b.admin("POST", "/_sim/account", {"sending_enabled": True})

            await eventually(lambda: b_sent(QUOTA_B), limit=30)
            await eventually(lambda: _grew(sim_a, N_A + N_URGENT), limit=30)
            status = json.loads((await run_cli(env, "status", "--json")).out)
            text = (await run_cli(env, "status")).out
        finally:
            await stop_cli(daemon)
        a_stamps, b_stamps = await accepted(sim_a), await accepted(sim_b)
        a_messages, b_messages = await sim_a.messages(), await sim_b.messages()

    # Each account got only its own mail: brand-a all of a.example (and b's urgent mail, sent
    # while brand-b was paused), brand-b the rest of b.example's.
    assert len(a_stamps) == N_A + N_URGENT
    assert sum("@a.example" in m["from"] for m in a_messages) == N_A
    assert sum("alerts@b.example" in m["from"] for m in a_messages) == N_URGENT
    assert all("news@b.example" in m["from"] for m in b_messages)
    # Each account paced to its own MaxSendRate (a starting burst allowed).
    assert RATE_A * 0.7 <= rate(a_stamps) <= RATE_A * 1.2, rate(a_stamps)
    assert RATE_B * 0.7 <= rate(b_before) <= RATE_B * 1.3, rate(b_before)
    # The pause held brand-b's mail (at most what was on the wire went out) while brand-a's
    # went on at its rate.
    assert len(b_during) - len(b_before) <= 1
    assert len(b_after_urgent) == len(b_during)
    assert a_during >= a_at_pause + 2 * RATE_A
    # brand-b stops at its own daily quota; the rest waits (queued, nothing failed or lost).
    assert len(b_stamps) == QUOTA_B
    jobs = await fetch(
        pg_dsn,
        "SELECT account, state::text AS state, count(*) AS n FROM dispatcher.jobs GROUP BY 1, 2",
    )
    assert {(r["account"], r["state"]): r["n"] for r in jobs} == {
        ("brand-a", "sent"): N_A + N_URGENT,
        ("brand-b", "sent"): QUOTA_B,
        ("brand-b", "queued"): N_B - QUOTA_B,
    }
    # status shows each account with its own numbers.
    shown = {a["name"]: a for a in status["accounts"]}
    assert shown["brand-a"]["max_send_rate"] == RATE_A and shown["brand-a"]["default"]
    assert shown["brand-b"]["max_send_rate"] == RATE_B
    assert shown["brand-b"]["queued"] == N_B - QUOTA_B
    assert "brand-b" in text and "brand-a" in text


async def _grew(sim: SimHandle, n: int) -> bool:
    return len(await accepted(sim)) >= n
