"""One pooled connection that LISTENs on the channels a worker reacts to; a NOTIFY on a channel
sets its event. Polling remains the fallback: if the connection cannot be had, or a Postgres
restart cuts it, nothing fails, and `ensure()` listens again on a new one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

import asyncpg  # type: ignore[import-untyped]
import structlog

from dispatcher.db.outage import connection_alive

log = structlog.get_logger()

Callback = Callable[[object, int, str, str], None]


class Listener:
    def __init__(self, pool: asyncpg.Pool, channels: Mapping[str, asyncio.Event]) -> None:
        self._pool = pool
        self._events = dict(channels)
        self._callbacks: dict[str, Callback] = {
            channel: _setter(event) for channel, event in self._events.items()
        }
        self._conn: asyncpg.Connection | None = None

    @property
    def listening(self) -> bool:
        return connection_alive(self._conn)

    async def ensure(self) -> None:
        """Listen, or listen again if the connection was cut; every event is set afterwards
        (a NOTIFY may have come while nobody listened)."""
        if self.listening:
            return
        await self.close()
        try:
            self._conn = await self._pool.acquire()
            for channel, callback in self._callbacks.items():
                await self._conn.add_listener(channel, callback)
        except BaseException as exc:
            # Cancelled too (the worker stopping while this starts): the connection goes back,
            # or closing the pool would wait for it forever.
            await self.close()
            if not isinstance(exc, Exception):
                raise
            log.warning("queue.listen_failed", error=repr(exc))  # the poll still finds mail
            return
        log.debug("queue.listening", channels=sorted(self._callbacks))
        for event in self._events.values():
            event.set()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        for channel, callback in self._callbacks.items():
            with contextlib.suppress(Exception):
                await conn.remove_listener(channel, callback)
        with contextlib.suppress(Exception):
            await self._pool.release(conn)


def _setter(event: asyncio.Event) -> Callback:
    def on_notify(conn: object, pid: int, channel: str, payload: str) -> None:
        event.set()

    return on_notify
