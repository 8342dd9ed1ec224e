"""`GET /metrics`, `/healthz` and `/readyz` on the `[api]` listener.

None takes a key. The probes are asked by Kubernetes or a load balancer, which carry none.
/metrics carries no address, message id or content (counts, rates, campaign names), must answer
while Postgres is down (when it matters most, and a key is checked in Postgres), and the
listener is on loopback unless the operator opens it: put it on a private network, or behind
a proxy that asks for a token, before exposing it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg  # type: ignore[import-untyped]
from aiohttp import web

from dispatcher.config import Config
from dispatcher.feedback.store import FeedbackStore
from dispatcher.obs.health import Readiness, gather_readiness, readiness
from dispatcher.obs.live import Live
from dispatcher.obs.metrics import CONTENT_TYPE, SharedReader, read_shared, render
from dispatcher.worker.quota_store import SharedQuotaStore

if TYPE_CHECKING:  # doors.web imports this module to install the routes
    from dispatcher.doors.web import DoorContext

__all__ = ["install"]


@dataclass(frozen=True, slots=True)
class _Observed:
    """What the handlers read: the daemon's stores and its live state."""

    cfg: Config
    pool: asyncpg.Pool
    feedback: FeedbackStore
    quota: SharedQuotaStore
    live: Live | None


OBSERVED = web.AppKey("observed", _Observed)


def install(app: web.Application, ctx: DoorContext) -> None:
    """Add /metrics, /healthz and /readyz to the `[api]` app."""
    app[OBSERVED] = _Observed(ctx.cfg, ctx.pool, ctx.feedback, ctx.quota, ctx.live)
    app.add_routes(
        [
            web.get("/metrics", metrics),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
        ]
    )


def _live(ctx: _Observed) -> Live:
    if ctx.live is None:  # doors served without a daemon: nothing to report on
        raise web.HTTPNotFound()
    return ctx.live


async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[OBSERVED]
    live = _live(ctx)
    if live.reader is None:
        live.reader = SharedReader.for_config(ctx.pool, ctx.feedback, ctx.quota, ctx.cfg)
    facts = await read_shared(live.reader)
    judged = Readiness(
        database_error=None if facts is not None else "unreachable",
        reading_age=facts.quota.age if facts and facts.quota.quota else None,
        hold="held" if facts and facts.held else None,
        account_paused_for=live.account_paused_for(asyncio.get_running_loop().time()),
        stopping=live.stop.is_set(),
    )
    ready = not readiness(judged, poll_interval=ctx.cfg.pacing.poll_interval)
    body = render(live.metrics, facts, ctx.cfg.guard, ready)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def healthz(request: web.Request) -> web.Response:
    live = _live(request.app[OBSERVED])
    verdict = live.liveness(asyncio.get_running_loop().time())
    body = {"alive": verdict.alive, "phase": verdict.phase, "problems": list(verdict.problems)}
    return web.json_response(body, status=200 if verdict.alive else 503)


async def readyz(request: web.Request) -> web.Response:
    ctx = request.app[OBSERVED]
    live = _live(ctx)
    gathered = await gather_readiness(ctx.pool, ctx.quota, ctx.feedback)
    facts = Readiness(
        database_error=gathered.database_error,
        reading_age=gathered.reading_age,
        hold=gathered.hold,
        account_paused_for=live.account_paused_for(asyncio.get_running_loop().time()),
        stopping=live.stop.is_set(),
    )
    problems = readiness(facts, poll_interval=ctx.cfg.pacing.poll_interval)
    body = {"ready": not problems, "problems": problems}
    return web.json_response(body, status=200 if not problems else 503)
