"""Provider lanes: each capped mailbox provider's rate and daily cap, without head-of-line blocking.

Pure: no I/O, times passed in. `LaneGate.enter(job, now)` says whether a job may go now (its
recipients are charged to each provider's lane: a message to gmail.com and outlook.com takes
from both), must wait in its lane's buffer (parked, so the mail behind it for other providers
goes on), or goes back to the queue for later (its lane's buffer is full, or the provider's
daily cap is spent). The worker (dispatcher.worker.lane_gate) keeps parked jobs and wakes the
dispatch loop when one is ready; dispatcher.worker.lane_store supplies the shared parts from
Postgres: each lane's daily room, the MX of unknown domains, and back-offs.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Generic, Literal, TypeVar

from dispatcher.doctor.settings import parse_nameservers
from dispatcher.errors import ConfigError
from dispatcher.pacing.leaky import LeakyBucket
from dispatcher.pacing.providers import OTHER, ProviderSettings, ProviderTable

__all__ = ["Backoff", "Entry", "LaneGate", "LaneSettings", "backoff_step"]

J = TypeVar("J")

# Seconds of a lane's rate its bucket holds beyond one recipient: a send the dispatch loop
# reaches late (it waited on the account's bucket, or for the CPU) is made up for instead of
# lost; a burst after an idle spell stays within this much of the lane's rate.
SLACK_SECONDS = 0.2
ROOM_RETRY = 0.1  # seconds a job waits for its lane's daily room to be topped up
SPENT_ASK = 30.0  # seconds between asks of a spent lane's row
# Give-back of a spent lane's mail when no wall clock is at hand (the worker's Lanes makes it
# the next 00:00 UTC, when the cap resets).
SPENT_RECHECK = 300.0


@dataclass(frozen=True, slots=True)
class LaneSettings:
    """Provider lanes (section `lanes`); lanes are on when a `[[providers]]` entry sets a limit."""

    # Seconds a job for a domain of unknown MX waits for the lookup before it goes as `other`.
    mx_wait: float = 2.0
    # Seconds an MX lookup's answer is kept (in Postgres, for every process and host).
    mx_ttl: float = 86400.0
    mx_timeout: float = 5.0  # seconds per MX lookup
    # DNS servers for MX lookups, comma-separated HOST[:PORT]; empty: the system's resolver.
    nameservers: str = ""
    # A burst of this many DeliveryDelay events and soft (transient) bounces from one provider
    # within backoff_window seconds slows its lane to backoff_factor of its rate...
    backoff_events: int = 20
    backoff_window: float = 300.0
    backoff_factor: float = 0.5
    # ...until this many seconds pass without such a burst.
    backoff_quiet: float = 900.0
    check_interval: float = 10.0  # seconds between back-off checks
    buffer_seconds: float = 4.0  # seconds of a lane's rate kept waiting in memory, at least 16
    chunk: int = 100  # recipients of a daily cap a process takes from Postgres at a time

    def __post_init__(self) -> None:
        for key in ("mx_wait", "mx_ttl", "mx_timeout", "backoff_window", "backoff_quiet"):
            _positive(f"lanes.{key}", getattr(self, key))
        for key in ("check_interval", "buffer_seconds"):
            _positive(f"lanes.{key}", getattr(self, key))
        if not 0.0 < self.backoff_factor < 1.0:
            raise ConfigError(
                f"lanes.backoff_factor must be in (0, 1), e.g. 0.5 to halve, got "
                f"{self.backoff_factor}"
            )
        if self.backoff_events < 1:
            raise ConfigError(f"lanes.backoff_events must be >= 1, got {self.backoff_events}")
        if not 50 <= self.chunk <= 100_000:
            raise ConfigError(
                f"lanes.chunk must be in [50, 100000] (a message has up to 50 recipients), "
                f"got {self.chunk}"
            )
        parse_nameservers(self.nameservers, key="lanes.nameservers")


def _positive(key: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{key} must be a number > 0, got {value}")


# -- back-off ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backoff:
    """A lane slowed for a burst of delays or soft bounces (times: seconds on a shared clock)."""

    reason: str
    since: float
    last_burst: float


def backoff_step(
    current: Backoff | None, soft: int, now: float, settings: LaneSettings
) -> Backoff | None:
    """The lane's back-off after counting `soft` delays and soft bounces in the last window."""
    if soft >= settings.backoff_events:
        reason = (
            f"{soft} delivery delays or soft bounces in the last "
            f"{settings.backoff_window:g} s (>= {settings.backoff_events}): rate x "
            f"{settings.backoff_factor:g}"
        )
        if current is None:
            return Backoff(reason, now, now)
        return replace(current, reason=reason, last_burst=now)
    if current is not None and now - current.last_burst >= settings.backoff_quiet:
        return None  # quiet long enough: back to the configured rate
    return current


# -- the gate ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """What `enter` decided: go (charged), parked (in `lane`), give back after `delay` s."""

    what: Literal["go", "parked", "give_back"]
    lane: str = ""
    delay: float = 0.0
    reason: str = ""
    spent: bool = False  # the lane's daily cap is reached: a drain does not wait for it


GO = Entry("go")


def lane_capacity(rate: float) -> float:
    """A lane bucket's size in recipients: one, plus SLACK_SECONDS of its rate."""
    return 1.0 + rate * SLACK_SECONDS


class Lane:
    """One capped provider in this process: its bucket (at this process's share of the rate),
    the daily room taken from Postgres and not used yet, and the jobs waiting for it."""

    __slots__ = (
        "asked_at",
        "backlogged",
        "backoff",
        "bucket",
        "cap",
        "day_room",
        "name",
        "rate",
        "room",
        "sent",
        "set_aside_until",
        "unflushed",
    )

    def __init__(self, name: str, rate: float | None, cap: int | None) -> None:
        self.name = name
        self.rate = rate  # configured, for all processes
        self.cap = cap
        self.bucket: LeakyBucket | None = None
        if rate is not None:
            self.bucket = LeakyBucket(rate, lane_capacity(rate))
        self.room = 0.0  # daily room in hand
        self.day_room: float | None = None  # room left in Postgres after our last take
        self.sent = 0  # recipients admitted by this process (since start)
        self.unflushed = 0  # ... not yet added to today's row
        self.backoff: Backoff | None = None
        self.asked_at = -math.inf  # when today's row last said the cap is reached
        # Mail waits in this lane: lateness of the loop is made up for (the bucket's slack);
        # after an idle spell it is not (no saved-up burst).
        self.backlogged = False
        # When the mail this process gave back to the queue (its buffer was full) is due: each
        # one a recipient's time after the last, so it comes back at the pace the lane sends.
        self.set_aside_until = -math.inf

    def effective(self, share: float, factor: float) -> float | None:
        if self.rate is None:
            return None
        return self.rate * share * (factor if self.backoff is not None else 1.0)

    def spent(self) -> bool:
        return (
            self.cap is not None
            and self.room < 1
            and self.day_room is not None
            and (self.day_room < 1)
        )


class LaneGate(Generic[J]):
    """Every lane of this process and the jobs parked in them."""

    def __init__(
        self,
        table: ProviderTable,
        limits: Iterable[ProviderSettings],
        settings: LaneSettings,
        addresses: Callable[[J], Iterable[str]],
    ) -> None:
        self.table = table
        self.settings = settings
        self._addresses = addresses
        self.lanes: dict[str, Lane] = {
            p.name: Lane(p.name, p.rate, p.daily_cap) for p in limits if p.limited
        }
        self.mx: dict[str, str] = {}  # domain -> provider, as looked up (every process's)
        self.pending: set[str] = set()  # domains to look up
        self._share = 1.0
        self._parked: dict[str, deque[tuple[J, float]]] = {n: deque() for n in self.lanes}
        self._mx_wait: deque[tuple[J, float]] = deque()  # (job, deadline)
        self._timed_out: set[int] = set()  # id() of jobs whose MX wait ended: unknown = other
        self._unflushed: dict[str, int] = {}  # recipients admitted to providers not limited

    # -- rates --------------------------------------------------------------------------------

    def set_share(self, share: float, now: float) -> None:
        """This process's part of every lane's rate (the account rate's share)."""
        if abs(share - self._share) > 1e-9:
            self._share = share
            self._rerate(now)

    def set_backoffs(self, backoffs: Mapping[str, Backoff], now: float) -> None:
        for name, lane in self.lanes.items():
            lane.backoff = backoffs.get(name)
        self._rerate(now)

    def _rerate(self, now: float) -> None:
        for lane in self.lanes.values():
            rate = lane.effective(self._share, self.settings.backoff_factor)
            if lane.bucket is not None and rate is not None:
                lane.bucket.rerate(rate, lane_capacity(rate), now)

    # -- entering -----------------------------------------------------------------------------

    def counts(self, job: J) -> tuple[dict[str, int], list[str]]:
        return self.table.lanes_of(self._addresses(job), self.mx)

    def enter(self, job: J, now: float) -> Entry:
        """May `job` go now? Charged to its lanes if so; else parked or to be given back."""
        counts, unknown = self.counts(job)
        if unknown and id(job) not in self._timed_out:
            self.pending.update(unknown)
            if len(self._mx_wait) >= self._capacity_of(None):
                return Entry("give_back", OTHER, self.settings.mx_wait, "waiting for MX lookups")
            self._mx_wait.append((job, now + self.settings.mx_wait))
            return Entry("parked", "(mx lookup)")
        if unknown:  # its MX wait ended: those recipients go as `other`
            self._timed_out.discard(id(job))
            counts[OTHER] = counts.get(OTHER, 0) + len(unknown)
        blocked = self._blocked(counts, now)
        if blocked is None:
            for name, n in counts.items():
                lane = self.lanes.get(name)
                if lane is not None:
                    self._charge(lane, n, now)
                else:  # not limited: counted for `status` only
                    self._unflushed[name] = self._unflushed.get(name, 0) + n
            return GO
        lane, spent = blocked
        if spent:
            return Entry("give_back", lane.name, SPENT_RECHECK, self.spent_reason(lane), True)
        queue = self._parked[lane.name]
        if len(queue) >= self._capacity_of(lane):
            # The lane's buffer is full: back to the queue, due when the lane reaches it (after
            # what waits here and what went back before it), a second early so the claim has
            # time to bring it in. Each job is then claimed about twice, not once per look.
            rate = lane.effective(self._share, self.settings.backoff_factor) or 1.0
            turn = max(lane.set_aside_until, now + len(queue) / rate)
            lane.set_aside_until = turn + counts[lane.name] / rate
            wait = turn - now
            return Entry("give_back", lane.name, max(wait / 2, wait - 1.0), "lane buffer full")
        queue.append((job, now))
        lane.backlogged = True
        return Entry("parked", lane.name)

    def _blocked(self, counts: Mapping[str, int], now: float) -> tuple[Lane, bool] | None:
        """The first lane that keeps these recipients from going now, and whether it is spent."""
        for name, n in counts.items():
            lane = self.lanes.get(name)
            if lane is None:
                continue
            if lane.cap is not None and lane.room < n:
                return lane, lane.spent() or (
                    lane.day_room is not None and lane.room + lane.day_room < n
                )
            if lane.bucket is not None and lane.bucket.wait(now) > 0:
                return lane, False
        return None

    def _charge(self, lane: Lane, n: int, now: float) -> None:
        bucket = lane.bucket
        if bucket is not None:
            if not lane.backlogged:  # nothing waited: the slack is not a burst to spend
                bucket.leak(now)
                bucket.level = max(bucket.level, bucket.capacity - 1.0)
            bucket.charge(n, now)
            lane.backlogged = bool(self._parked[lane.name])
        if lane.cap is not None:
            lane.room = max(0.0, lane.room - n)
        lane.sent += n
        lane.unflushed += n

    def _capacity_of(self, lane: Lane | None) -> int:
        if lane is None:
            return 1000
        rate = lane.effective(self._share, self.settings.backoff_factor)
        return max(16, math.ceil((rate or 0.0) * self.settings.buffer_seconds))

    @staticmethod
    def spent_reason(lane: Lane) -> str:
        return (
            f"provider {lane.name}: today's cap of {lane.cap:,} recipients is reached; "
            "its mail waits for the next day (UTC)"
        )

    # -- leaving the buffer -------------------------------------------------------------------

    def pop_ready(self, now: float) -> J | None:
        """A parked job that may go now (`enter` charges it), oldest lane head first."""
        while self._mx_wait:
            job, deadline = self._mx_wait[0]
            _, unknown = self.counts(job)
            if unknown and now < deadline:
                break  # later ones were parked later: their deadlines are later too
            self._mx_wait.popleft()
            if unknown:
                self._timed_out.add(id(job))
            return job
        best: tuple[float, str] | None = None
        for name, queue in self._parked.items():
            if not queue or (best is not None and queue[0][1] >= best[0]):
                continue
            if self._blocked(self.counts(queue[0][0])[0], now) is None:
                best = (queue[0][1], name)
        if best is None:
            return None
        return self._parked[best[1]].popleft()[0]

    def ready_in(self, now: float) -> float | None:
        """Seconds until a parked job may be ready (None: nothing parked)."""
        waits: list[float] = []
        if self._mx_wait:
            waits.append(max(0.0, self._mx_wait[0][1] - now))
        for name, queue in self._parked.items():
            if not queue:
                continue
            lane = self.lanes[name]
            if lane.cap is not None and lane.room < 1:
                waits.append(ROOM_RETRY)
            elif lane.bucket is not None:
                waits.append(lane.bucket.wait(now))
            else:
                waits.append(0.0)
        return min(waits) if waits else None

    def holding(self) -> bool:
        """Any job parked (cheap: asked for every job the dispatch loop takes)."""
        return bool(self._mx_wait) or any(self._parked.values())

    def parked(self) -> list[J]:
        return [j for j, _ in self._mx_wait] + [j for q in self._parked.values() for j, _ in q]

    def take_parked(self) -> list[J]:
        """Everything parked (to give back at shutdown or when sending pauses)."""
        jobs = self.parked()
        self._mx_wait.clear()
        self._timed_out.clear()
        for queue in self._parked.values():
            queue.clear()
        for lane in self.lanes.values():
            lane.backlogged = False
        return jobs

    def waiting(self, name: str) -> int:
        return len(self._parked.get(name, ()))

    # -- the shared parts, from the lanes loop ------------------------------------------------

    def room_wanted(self, now: float) -> dict[str, int]:
        """Lanes whose daily room in hand runs short: how much to take from Postgres. A spent
        lane asks again every SPENT_ASK s (a new UTC day, room another process gave back)."""
        chunk = self.settings.chunk
        out: dict[str, int] = {}
        for name, lane in self.lanes.items():
            if lane.cap is None or lane.room >= chunk / 2:
                continue
            if lane.day_room is not None and lane.day_room < 1 and now - lane.asked_at < SPENT_ASK:
                continue
            out[name] = chunk
        return out

    def room_granted(
        self, name: str, granted: float, left: float, new_day: bool, now: float
    ) -> None:
        lane = self.lanes[name]
        if new_day:
            lane.room = 0.0
        lane.room += granted
        lane.day_room = left
        if left < 1:
            lane.asked_at = now

    def flush(self) -> dict[str, int]:
        """Recipients admitted per lane since the last flush (added to today's row)."""
        out = {n: lane.unflushed for n, lane in self.lanes.items() if lane.unflushed}
        for name in out:
            self.lanes[name].unflushed = 0
        out |= self._unflushed
        self._unflushed = {}
        return out

    def unflush(self, counts: Mapping[str, int]) -> None:
        for name, n in counts.items():
            lane = self.lanes.get(name)
            if lane is not None:
                lane.unflushed += n
            else:
                self._unflushed[name] = self._unflushed.get(name, 0) + n

    def give_back_room(self) -> dict[str, float]:
        """Room taken and not used, to return to today's rows at exit."""
        out = {n: lane.room for n, lane in self.lanes.items() if lane.room > 0}
        for name in out:
            self.lanes[name].room = 0.0
        return out

    def resolved(self, found: Mapping[str, str]) -> None:
        """MX lookups answered: domain -> provider."""
        self.mx.update(found)
        self.pending.difference_update(found)

    def view(self, now: float) -> list[dict[str, object]]:
        """Each lane as this process runs it (metrics and the dashboard)."""
        out: list[dict[str, object]] = []
        for name, lane in self.lanes.items():
            out.append(
                {
                    "provider": name,
                    "rate": lane.rate,
                    "rate_now": lane.effective(self._share, self.settings.backoff_factor),
                    "daily_cap": lane.cap,
                    "sent": lane.sent,
                    "waiting": self.waiting(name),
                    "backed_off": lane.backoff.reason if lane.backoff is not None else None,
                    "spent": lane.spent(),
                }
            )
        return out
