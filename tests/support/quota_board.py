"""The shared quota's rows and the leader's lock in memory, on the loop's clock (for unit tests
of the quota loops and of the worker in virtual time)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping

from dispatcher.domain.quota import Quota
from dispatcher.worker.quota_store import SharedReading

# Who holds the one leader's lock: shared by the FakeLocks of one test's processes.
LockRegistry = dict[str, uuid.UUID | None]


def now() -> float:
    return asyncio.get_running_loop().time()


class FakeBoard:
    """The shared rows of sql/quota.sql, in memory, on the loop's clock."""

    def __init__(self) -> None:
        self.epoch = 0
        self.polling = 0
        self.quota: Quota | None = None
        self.read_at = 0.0
        self.leader: uuid.UUID | None = None
        self.spend: dict[tuple[uuid.UUID, int], float] = {}
        self.listeners: list[asyncio.Event] = []  # NOTIFY dispatcher_quota

    async def sync(self, owner: uuid.UUID, spent: Mapping[int, float]) -> SharedReading:
        for epoch, sent in spent.items():
            self.spend[(owner, epoch)] = sent
        others = sum(v for (o, e), v in self.spend.items() if o != owner and e >= self.epoch)
        return SharedReading(
            epoch=self.epoch,
            polling_epoch=self.polling,
            quota=self.quota,
            age=now() - self.read_at if self.quota is not None else 0.0,
            leader=self.leader,
            others_sent=others,
        )

    async def begin(self, owner: uuid.UUID) -> int:
        self.polling, self.leader = self.epoch + 1, owner
        for wake in self.listeners:
            wake.set()
        return self.polling

    async def unmoved(self, epoch: int) -> int:
        owners = {o for o, _ in self.spend}
        return sum(1 for o in owners if (o, epoch) not in self.spend)

    async def publish(self, owner: uuid.UUID, epoch: int, quota: Quota) -> bool:
        if self.epoch >= epoch:
            return False
        self.epoch, self.quota, self.read_at, self.leader = epoch, quota, now(), owner
        self.spend = {k: v for k, v in self.spend.items() if k[1] >= epoch}
        return True


class FakeLock:
    """One advisory lock shared by the processes of a test: `try_take` wins while it is free."""

    def __init__(self, registry: LockRegistry, owner: uuid.UUID) -> None:
        self.registry = registry
        self.owner = owner

    @property
    def held(self) -> bool:
        return self.registry.get("holder") == self.owner

    async def try_take(self) -> bool:
        if self.registry.get("holder") is None:
            self.registry["holder"] = self.owner
        return self.held

    async def release(self) -> None:
        if self.held:
            self.registry["holder"] = None
