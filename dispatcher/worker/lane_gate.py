"""The provider lanes in the worker: the intake hands each job to `Lanes.enter` before it is
planned and admitted; a job whose lane is not ready is parked here (still ours, still claimed)
and the dispatch loop goes on with mail for other providers. A timer wakes the intake when the
first parked job may go. Decisions in dispatcher.pacing.lanes; Postgres in lane_store."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence

from dispatcher.domain.jobs import ClaimedJob
from dispatcher.pacing.lanes import GO, Entry, LaneGate, LaneSettings
from dispatcher.pacing.providers import ProviderSettings, ProviderTable

__all__ = ["Lanes"]


def until_utc_midnight(wall: float) -> float:
    """Seconds from `wall` (Unix time) to the next 00:00 UTC, when daily caps reset."""
    return 86400.0 - wall % 86400.0


def _addresses(job: ClaimedJob) -> Iterable[str]:
    msg = job.message
    return (*msg.to, *msg.cc, *msg.bcc)


class Lanes:
    """This process's lanes: the gate, the timer that frees parked mail, and the events the
    lanes loop (lane_store.run_lanes) and the intake wait on."""

    def __init__(
        self,
        limits: Sequence[ProviderSettings],
        settings: LaneSettings,
        share: Callable[[], float],
    ) -> None:
        self.limits = tuple(limits)
        self.gate: LaneGate[ClaimedJob] = LaneGate(
            ProviderTable(limits), limits, settings, _addresses
        )
        self._share = share  # this process's part of the account rate, applied to each lane
        self.wake = asyncio.Event()  # the lanes loop has something to do now
        self.on_ready: Callable[[], None] | None = None  # the intake looks at parked mail
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        # Jobs charged to their lanes and not handed on yet: one put back in the buffer (our
        # share of the day's quota is used until the next sync) is not charged twice.
        self._passed: set[int] = set()

    @property
    def holding(self) -> bool:
        return self.gate.holding()

    def held_ids(self) -> list[int]:
        return [j.id for j in self.gate.parked()]

    def enter(self, job: ClaimedJob) -> Entry:
        """Go now (charged), parked here, or give back to the queue for `delay` s."""
        if job.id in self._passed:
            return GO
        now = self._now()
        self.gate.set_share(self._share(), now)
        entry = self.gate.enter(job, now)
        if entry.spent:  # the cap resets at 00:00 UTC: mail for it comes back then, once
            entry = dataclasses.replace(entry, delay=until_utc_midnight(time.time()))
        if entry.what == "go":
            self._passed.add(job.id)
        elif entry.what == "parked":
            self._arm(now)
        if self.gate.pending or self.gate.room_wanted(now):
            self.wake.set()
        return entry

    def pop_ready(self) -> ClaimedJob | None:
        """A parked job that may go now (to `enter` again), or None."""
        if not self.holding:
            return None
        now = self._now()
        self.gate.set_share(self._share(), now)
        job = self.gate.pop_ready(now)
        if job is None:
            self._arm(now)
        return job

    def forget(self, jobs: Sequence[ClaimedJob]) -> None:
        """These jobs left the worker's hands (sent, settled or given back)."""
        if self._passed:
            for job in jobs:
                self._passed.discard(job.id)

    def take_parked(self) -> list[ClaimedJob]:
        return self.gate.take_parked()

    def poke(self) -> None:
        """Something changed (room granted, MX answered, back-off): look at parked mail now."""
        if self.holding and self.on_ready is not None:
            self.on_ready()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, now: float) -> None:
        wait = self.gate.ready_in(now)
        if wait is None:
            return
        at = now + max(wait, 0.005)
        if self._timer is not None and self._timer_at <= at:
            return  # an earlier wake is set already
        self.close()
        self._timer_at = at
        self._timer = asyncio.get_running_loop().call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self.on_ready is not None:
            self.on_ready()

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()
