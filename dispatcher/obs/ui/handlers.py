"""The live dashboard: /ui/ (a static page and its script), /ui/state.json (polled by the page
every second), and the operator's actions as POSTs under /ui/api/.

Only a key without limits opens it: the page shows every sender's mail (addresses, subjects,
errors) and its buttons pause or cancel any campaign, which a key limited to some senders or
priorities must not see or do. The actions answer after their transaction committed. They are
guarded against cross-site requests by a custom header a cross-site form cannot send (and a
cross-origin script cannot without a CORS preflight, which this listener never grants), plus
an Origin check: the browser re-sends Basic credentials to any page that posts here, and
SameSite cookies do not apply to them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped]
import structlog
from aiohttp import web

from dispatcher.accounts.settings import effective_accounts
from dispatcher.accounts.store import AccountRow, AccountStore
from dispatcher.campaigns.store import CampaignStore
from dispatcher.db.sql import named_queries
from dispatcher.domain.jobs import ResolveTo, UnknownJob
from dispatcher.errors import InputError
from dispatcher.feedback.store import HeldSender
from dispatcher.feedback.watch import campaign_thresholds, thresholds
from dispatcher.obs.live import Live
from dispatcher.obs.metrics import SHARED_TIMEOUT, SharedReader, process_source, read_shared
from dispatcher.obs.ui.view import ErrorKind, ProcessNumbers, RateHistory, dashboard

if TYPE_CHECKING:  # doors.web imports this module to install the routes
    from dispatcher.doors.keys import ApiKey
    from dispatcher.doors.web import DoorContext

__all__ = ["ACTION_HEADER", "install", "process_numbers"]

log = structlog.get_logger()
query = named_queries("dispatcher.obs.ui", "ui.sql")

ACTION_HEADER = "X-Dispatcher-Action"  # set by the page's script on every POST
ERRORS_WINDOW = 3600.0  # seconds of failed mail the page lists by kind
IN_DOUBT_SHOWN = 50  # the page lists this many in-doubt messages (the count says how many)
SAMPLE_EVERY = 1.0  # seconds between the rate chart's samples
STATIC = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}
RESOLVE: dict[str, ResolveTo] = {"resend": "queued", "sent": "sent", "failed": "failed"}


@dataclass(slots=True)
class _Ui:
    ctx: DoorContext
    campaigns: CampaignStore
    history: RateHistory
    reader: SharedReader
    regions: dict[str, str]  # each SES account's region, for the accounts panel


UI = web.AppKey("ui", _Ui)


def install(app: web.Application, ctx: DoorContext) -> None:
    """Add /ui/ and its endpoints to the `[api]` app, and the rate chart's sampler."""
    reader = SharedReader.for_config(ctx.pool, ctx.feedback, ctx.quota, ctx.cfg)
    if ctx.live is not None:  # share /metrics' reader (and its quota cache)
        if ctx.live.reader is None:
            ctx.live.reader = reader
        reader = ctx.live.reader
    cfg = ctx.cfg
    regions = {n: ses.region for n, ses, _ in effective_accounts(cfg.accounts, cfg.ses, cfg.pacing)}
    app[UI] = _Ui(ctx, CampaignStore(ctx.pool), RateHistory(), reader, regions)
    app.cleanup_ctx.append(_sampling)
    app.add_routes(
        [
            web.get("/ui", _to_slash),
            web.get("/ui/", page),
            web.get("/ui/static/{name}", static),
            web.get("/ui/state.json", state),
            web.post("/ui/api/campaigns/{id:[0-9]+}/{action:pause|resume|cancel}", campaign),
            web.post("/ui/api/in-doubt/{id:[0-9]+}/{action:resend|sent|failed}", in_doubt),
        ]
    )


def process_numbers(live: Live) -> ProcessNumbers:
    """The process metrics as /metrics reports them (every process's, under --processes)."""
    values: dict[str, float] = {}
    sends: dict[str, float] = {}
    for family in process_source(live.metrics).collect():
        for s in family.samples:
            if s.name == "dispatcher_sends_total":
                sends[s.labels["outcome"]] = sends.get(s.labels["outcome"], 0.0) + s.value
            else:
                values[s.name] = values.get(s.name, 0.0) + s.value
    return ProcessNumbers(
        rate_achieved=values.get("dispatcher_send_rate_achieved", 0.0),
        rate_allowed=values.get("dispatcher_send_rate_allowed", 0.0),
        in_flight=values.get("dispatcher_in_flight", 0.0),
        sends=sends,
        throttled=values.get("dispatcher_throttled_total", 0.0),
    )


async def _sampling(app: web.Application) -> AsyncIterator[None]:
    """Sample the rates every SAMPLE_EVERY s while the listener serves (the chart's history)."""
    ui = app[UI]
    live = ui.ctx.live
    if live is None:
        yield
        return
    loop = asyncio.get_running_loop()

    async def sample() -> None:
        while True:
            try:
                numbers = process_numbers(live)
                ui.history.add(loop.time(), numbers.rate_achieved, numbers.rate_allowed)
            except Exception as exc:  # the chart must never stop the sending
                log.error("ui.sample_failed", error=repr(exc))
            await asyncio.sleep(SAMPLE_EVERY)

    task = asyncio.create_task(sample(), name="ui-rate-sampler")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def operator_key(request: web.Request) -> ApiKey:
    """The request's key if it may operate the dashboard (no sender or priority limit)."""
    from dispatcher.doors.web import basic_key, fail

    key = await basic_key(request)
    if key.senders or key.max_priority is not None:
        fail(
            403,
            f"key {key.id} ({key.name}) is limited to some senders or priorities; the dashboard "
            "shows and acts on every sender's mail: use a key made without --from and "
            "--max-priority",
        )
    return key


def _checked_action(request: web.Request) -> None:
    """Refuse what a cross-site page could have sent with the browser's Basic credentials."""
    from dispatcher.doors.web import fail

    if request.headers.get(ACTION_HEADER) != "1":
        fail(403, f"actions are sent by the dashboard's page, with the header {ACTION_HEADER}: 1")
    # The host only: behind a proxy that ends TLS the scheme the listener sees is http.
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        fail(403, f"cross-origin request from {origin} refused")


async def _to_slash(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui/")


def _resource(name: str) -> bytes:
    return resources.files("dispatcher.obs.ui").joinpath(name).read_bytes()


async def page(request: web.Request) -> web.Response:
    await operator_key(request)
    return web.Response(
        body=_resource("index.html"),
        content_type="text/html",
        charset="utf-8",
        headers=_NO_STORE | _CSP,
    )


_NO_STORE = {"Cache-Control": "no-store"}
# The page runs its own script only: no inline script, nothing from elsewhere (works offline).
_CSP = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


async def static(request: web.Request) -> web.Response:
    """The page's script and style (no data in them: served without a key)."""
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    return web.Response(
        body=_resource(f"static/{name}"), content_type=STATIC[name], charset="utf-8"
    )


async def state(request: web.Request) -> web.Response:
    """The page's numbers: /metrics' facts plus the lists only the page shows."""
    await operator_key(request)
    ui = request.app[UI]
    ctx = ui.ctx
    facts = await read_shared(ui.reader)
    lists: _Lists = (None, [], [], [], [])
    if facts is not None:
        try:
            lists = await asyncio.wait_for(_lists(ctx), SHARED_TIMEOUT)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("ui.database_unavailable", error=repr(exc))
            facts = None
    hold, held, unknown, errors, accounts = lists
    live = ctx.live
    view = dashboard(
        facts,
        th=thresholds(ctx.cfg.guard),
        campaign_th=campaign_thresholds(ctx.cfg.guard),
        window_hours=ctx.cfg.guard.window_hours,
        quota_headroom=ctx.cfg.pacing.quota_headroom,
        hold=hold,
        held=held,
        in_doubt=unknown,
        errors=errors,
        numbers=None if live is None else process_numbers(live),
        history=ui.history,
        now=asyncio.get_running_loop().time(),
        wall=datetime.now(UTC),
        accounts=accounts,
        regions=ui.regions,
    )
    return web.json_response(view, headers=_NO_STORE)


_Lists = tuple[
    tuple[str, datetime] | None,
    list[HeldSender],
    list[UnknownJob],
    list[ErrorKind],
    list[AccountRow],
]


async def _lists(ctx: DoorContext) -> _Lists:
    hold = await ctx.feedback.sending_hold()
    held = await ctx.feedback.held_senders()
    unknown = await ctx.queue.list_unknown(IN_DOUBT_SHOWN)
    async with ctx.pool.acquire() as conn:
        rows = await conn.fetch(query("recent_failures"), ERRORS_WINDOW)
    errors = [ErrorKind(r["kind"], r["n"], r["last_at"], r["example"]) for r in rows]
    # Read only with several accounts: with one, the rest of the page is that account.
    accounts = await AccountStore(ctx.pool).overview() if len(ctx.cfg.accounts) > 1 else []
    return hold, held, unknown, errors, accounts


async def campaign(request: web.Request) -> web.Response:
    """Pause, resume or cancel a campaign, as `dispatcher campaign pause|resume|cancel` do."""
    from dispatcher.doors.web import fail

    key = await operator_key(request)
    _checked_action(request)
    store = request.app[UI].campaigns
    cid = int(request.match_info["id"])
    action = request.match_info["action"]
    try:
        current = await store.get(cid)
        if action == "pause":
            if not await store.pause(cid):
                fail(409, f"campaign {cid} is {(await store.get(cid)).state}, not running")
            message = f"campaign {cid} paused"
        elif action == "resume":
            if current.state != "paused":
                fail(409, f"campaign {cid} is {current.state}, not paused")
            force = bool((await _body(request)).get("force"))
            if (current.pause_reason or "").startswith("guard:") and not force:
                fail(
                    409,
                    f"campaign {cid} was paused by the reputation guard ({current.pause_reason});"
                    " resume with force once you have checked it",
                    field="force",
                )
            await store.start(cid)
            message = f"campaign {cid} resumed"
        else:
            n = await store.cancel(cid)
            message = f"campaign {cid} cancelled: {n} unsent message(s) cancelled"
    except InputError as exc:
        fail(404 if "no campaign" in str(exc) else 409, str(exc))
    log.info("ui.campaign_action", campaign_id=cid, action=action, key_id=key.id)
    return web.json_response({"ok": True, "message": message})


async def _body(request: web.Request) -> dict[str, Any]:
    from dispatcher.doors.web import fail

    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        fail(400, 'the body must be JSON, e.g. {"force": true}')
    return body if isinstance(body, dict) else {}


async def in_doubt(request: web.Request) -> web.Response:
    """Resolve one in-doubt message, as `dispatcher in-doubt resolve --resend|--sent|--failed`."""
    from dispatcher.doors.web import fail

    key = await operator_key(request)
    _checked_action(request)
    mid = int(request.match_info["id"])
    to = RESOLVE[request.match_info["action"]]
    done = await request.app[UI].ctx.queue.resolve_unknown([mid], to)
    if not done:
        fail(409, f"message {mid} is not in doubt (any more): left as it is")
    verb = {"queued": "queued again", "sent": "recorded as sent", "failed": "recorded as failed"}
    log.info("ui.in_doubt_resolved", message_id=mid, to=to, key_id=key.id)  # who decided
    return web.json_response({"ok": True, "message": f"message {mid} {verb[to]}"})
