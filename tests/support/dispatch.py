"""Helpers for tests that run the whole dispatch path: configs and batches of messages."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from dispatcher.config import Config
from dispatcher.domain.jobs import NewMessage
from dispatcher.pacing import PacingSettings
from dispatcher.ses import SesSettings

SIM_OK = "success@simulator.amazonses.com"
REAL = "someone@example.com"  # counts against the simulated daily quota


def make_config(
    dsn: str,
    endpoint_url: str,
    *,
    queue: dict[str, Any] | None = None,
    delivery: dict[str, Any] | None = None,
    pacing: dict[str, Any] | None = None,
    ses: dict[str, Any] | None = None,
) -> Config:
    """Defaults, pointed at a test database and an SES endpoint on loopback."""
    base = Config()
    ses_kwargs: dict[str, Any] = {
        "region": "us-east-1",
        "endpoint_url": endpoint_url,
        "access_key_id": "testing",
        "secret_access_key": "testing",
    }
    ses_kwargs.update(ses or {})
    return replace(
        base,
        database=replace(base.database, url=dsn, migrate_on_start=True),
        queue=replace(base.queue, **(queue or {})),
        delivery=replace(base.delivery, **(delivery or {})),
        pacing=PacingSettings(**(pacing or {})),
        ses=SesSettings(**ses_kwargs),
    )


def batch(
    n: int, *, every: int = 0, extra: int = 0, prefix: str = "m", to: str = SIM_OK
) -> list[NewMessage]:
    """n messages to `to`; every `every`-th one has `extra` more recipients (Cc).

    Mailbox-simulator addresses (the default) count against the rate but, as in SES, not
    against the daily quota: quota tests send to ordinary addresses (`to=REAL`).
    """
    out = []
    for i in range(n):
        cc: tuple[str, ...] = ()
        if every and i % every == every - 1:
            cc = tuple(f"success+{prefix}{i}-{k}@simulator.amazonses.com" for k in range(extra))
        out.append(
            NewMessage(
                from_addr="sender@example.com",
                to=(to,),
                cc=cc,
                subject=f"{prefix} {i}",
                text=f"body {i}",
                idempotency_key=f"{prefix}-{i}",
            )
        )
    return out


def dispatcher_ids(messages: list[dict[str, Any]]) -> list[int]:
    """Our message ids as the simulator received them (the dispatcher_id tag)."""
    return [int(m["tags"]["dispatcher_id"]) for m in messages]


async def eventually(
    check: Callable[[], Awaitable[bool]], limit: float = 30.0, step: float = 0.05
) -> None:
    """Poll `check` until it holds; fail the test after `limit` seconds (a bounded loop)."""
    for _ in range(max(1, int(limit / step))):
        if await check():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"condition not reached within {limit} s")
