"""The shared daily quota in Postgres (migration 0009, quota.sql): one process reads
GetSendQuota for all of them and publishes it; each one records what it sent per epoch."""

from __future__ import annotations

import contextlib
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg  # type: ignore[import-untyped]

from dispatcher.accounts.settings import DEFAULT_ACCOUNT
from dispatcher.db.outage import connection_alive
from dispatcher.db.sql import named_queries
from dispatcher.domain.quota import Quota
from dispatcher.pacing.governor import PENDING_EPOCH

query = named_queries("dispatcher.worker", "quota.sql")

# NOTIFYed when a reading is begun: every worker moves its count to the new epoch at once.
QUOTA_CHANNEL = "dispatcher_quota"
# Advisory-lock key of the process that reads GetSendQuota for all ("dispatcher quota").
QUOTA_LEADER_LOCK = 0x64_69_73_70_71_75_6F_74


def leader_lock_key(account: str) -> int:
    """The leader lock of one account's quota reading; 'default' keeps the one of old."""
    if account == DEFAULT_ACCOUNT:
        return QUOTA_LEADER_LOCK
    return QUOTA_LEADER_LOCK ^ (zlib.crc32(account.encode()) << 1)


@dataclass(frozen=True, slots=True)
class SharedReading:
    """The published reading as one worker sees it."""

    epoch: int  # the reading published last
    polling_epoch: int  # a reading being taken, or == epoch
    quota: Quota | None  # None until a first reading is published
    age: float  # seconds since it was published (0 when none)
    leader: uuid.UUID | None  # the process that took it
    others_sent: float  # recipients the other workers sent since it was begun


class SharedQuotaStore:
    """Reads and writes of the shared quota rows, each on a connection from `pool`."""

    def __init__(self, pool: asyncpg.Pool, account: str = DEFAULT_ACCOUNT) -> None:
        self._pool = pool
        self.account = account  # whose reading (migration 0021: one per SES account)

    async def sync(self, owner: uuid.UUID, spent: Mapping[int, float]) -> SharedReading:
        """Record what `owner` sent per epoch; read the published reading and the others' sends."""
        epochs = list(spent)
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                query("quota_sync"),
                owner,
                epochs,
                [float(spent[e]) for e in epochs],
                self.account,
            )
        if row is None:  # an account no daemon has sent for yet: no reading, nobody's sends
            return SharedReading(0, 0, None, 0.0, None, 0.0)
        quota = None
        if row["max_24_hour_send"] is not None:
            quota = Quota(
                max_24_hour_send=row["max_24_hour_send"],
                max_send_rate=row["max_send_rate"],
                sent_last_24_hours=row["sent_last_24_hours"],
            )
        return SharedReading(
            epoch=row["epoch"],
            polling_epoch=row["polling_epoch"],
            quota=quota,
            age=row["age"] if row["age"] is not None else 0.0,
            leader=row["leader"],
            others_sent=row["others_sent"],
        )

    async def published(self, within: float) -> Quota | None:
        """The reading published in the last `within` seconds, or None."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(query("quota_published"), float(within), self.account)
        if row is None:
            return None
        return Quota(
            max_24_hour_send=row["max_24_hour_send"],
            max_send_rate=row["max_send_rate"],
            sent_last_24_hours=row["sent_last_24_hours"],
        )

    async def begin(self, owner: uuid.UUID) -> int:
        """A reading is about to be taken: the epoch it will publish."""
        async with self._pool.acquire() as conn:
            epoch: int = await conn.fetchval(query("quota_begin"), owner, self.account)
        return epoch

    async def unmoved(self, epoch: int) -> int:
        """How many live workers do not count into `epoch` yet."""
        async with self._pool.acquire() as conn:
            count: int = await conn.fetchval(query("quota_unmoved"), epoch, self.account)
        return count

    async def publish(self, owner: uuid.UUID, epoch: int, quota: Quota) -> bool:
        """Publish the reading of `epoch`; False if a newer one already was."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                query("quota_publish"),
                owner,
                epoch,
                float(quota.max_24_hour_send),
                float(quota.max_send_rate),
                float(quota.sent_last_24_hours),
                PENDING_EPOCH,
                self.account,
            )
        return bool(row["published"])


class LeaderLock:
    """The leader's advisory lock, held on a connection of its own taken from `pool`.

    Postgres releases it when that connection ends, so a process that dies (or loses the
    database) gives up the lead by itself; `held` turns False when the connection is gone.
    """

    def __init__(self, pool: asyncpg.Pool, account: str = DEFAULT_ACCOUNT) -> None:
        self._pool = pool
        self._conn: asyncpg.Connection | None = None
        self._key = leader_lock_key(account)

    @property
    def held(self) -> bool:
        return connection_alive(self._conn)

    async def try_take(self) -> bool:
        """Take the lock if it is free; False if another process holds it."""
        if self.held:
            return True
        await self.release()
        conn = await self._pool.acquire()
        try:
            taken = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._key))
        except BaseException:
            await self._give_back(conn)
            raise
        if taken:
            self._conn = conn
        else:
            await self._give_back(conn)
        return taken

    async def release(self) -> None:
        """Give the lock (and its connection) back; nothing if not held."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._give_back(conn)

    async def _give_back(self, conn: asyncpg.Connection) -> None:
        # The pool's reset on release runs pg_advisory_unlock_all(); a cut one is dropped.
        with contextlib.suppress(Exception):
            await self._pool.release(conn)
