"""The job store seam: what the worker needs of the queue, whatever keeps it.

`Queue` (Postgres, `repository.py`) is the real one; `MemoryJobStore` (`memory.py`) is its
in-memory twin for unit tests of the worker in virtual time. One conformance suite
(`tests/conformance/`) runs the same tests against both, so the twin cannot drift.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from dispatcher.domain.jobs import ClaimedJob, Held, Peers, Pending, Recovered, Settlement
from dispatcher.domain.retry import InDoubtPolicy

if TYPE_CHECKING:
    from dispatcher.queue.memory import MemoryJobStore
    from dispatcher.queue.repository import Queue

__all__ = ["JobStore"]


class JobStore(Protocol):
    """Leases, fencing tokens and results: every write the worker makes about its jobs."""

    async def claim(self, owner: uuid.UUID, limit: int) -> list[ClaimedJob]:
        """Lease up to `limit` due jobs to `owner` (lanes take turns, higher priority first);
        each claim gets a new fencing token."""
        ...

    async def claim_screened(
        self, owner: uuid.UUID, limit: int
    ) -> tuple[list[ClaimedJob], frozenset[str] | None]:
        """`claim`, and the suppression keys among the plain addresses of the jobs' recipients
        (None: not looked up; the caller checks them all with `suppressed_among`)."""
        ...

    async def launch(
        self, owner: uuid.UUID, jobs: Sequence[ClaimedJob] | Sequence[tuple[int, int]]
    ) -> set[int]:
        """claimed -> in_flight for the jobs whose owner and token are current (repeatable);
        only the returned ids may be handed to SES."""
        ...

    async def settle(self, settlements: Sequence[Settlement]) -> set[int]:
        """Record results of the jobs whose token is current; a stale token records nothing."""
        ...

    async def release(
        self, owner: uuid.UUID, ids: Sequence[int], delay: float = 0.0, *, scheduled: bool = False
    ) -> int:
        """Give claimed jobs back without using an attempt, not due before `delay` seconds
        (`scheduled`: due later on purpose, e.g. a send window; a drain does not wait for it)."""
        ...

    async def release_orphans(self, owner: uuid.UUID, held: Sequence[int]) -> int:
        """Give back jobs claimed by `owner` other than `held` (a claim whose answer was lost)."""
        ...

    async def register_worker(self, owner: uuid.UUID, lease_seconds: float) -> None:
        """Announce a live worker; its jobs are recovered once it misses its lease."""
        ...

    async def heartbeat(self, owner: uuid.UUID) -> bool:
        """Renew the lease; False if the worker was declared dead (its row is gone)."""
        ...

    async def unregister_worker(self, owner: uuid.UUID) -> None:
        """A worker leaves; what it still holds is recovered like a dead worker's."""
        ...

    async def hold_session(self, owner: uuid.UUID) -> bool:
        """Hold (or take again) `owner`'s session lock, which ends with its process; False if
        it cannot be taken (then only the lease tells that the worker died)."""
        ...

    async def end_session(self, owner: uuid.UUID) -> None:
        """Give `owner`'s session lock back; nothing if not held."""
        ...

    async def recover(
        self, in_doubt: InDoubtPolicy, session_grace: float | None = None
    ) -> Recovered:
        """Jobs of dead workers: claimed -> queued; in_flight -> unknown (hold) or queued.

        Dead: no row, a lease run out, or (`session_grace` given) a session lock that is free
        while the heartbeat is older than `session_grace` seconds."""
        ...

    async def rate_share(self, owner: uuid.UUID, busy: bool, ttl: float) -> Peers:
        """Mark `owner` active for `ttl` s when busy; the other workers that are active."""
        ...

    async def pending(self, horizon_seconds: float = 0.0) -> Pending:
        """What a draining worker still waits for."""
        ...

    async def held(self) -> Held:
        """Queued mail waiting out a sending error a person must fix."""
        ...

    async def suppressed_among(self, addresses: Sequence[str]) -> set[str]:
        """The suppression keys (domain.validate.suppression_key) of these addresses that must
        never be mailed."""
        ...


if TYPE_CHECKING:  # mypy proves both stores keep the Protocol

    def _conforms(queue: Queue, memory: MemoryJobStore) -> tuple[JobStore, JobStore]:
        return queue, memory
