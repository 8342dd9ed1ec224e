"""The composition root: builds the database, SES client, pacing and worker pool from a Config."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import structlog

from dispatcher.accounts.session import ses_session
from dispatcher.accounts.settings import account_names, effective_accounts
from dispatcher.accounts.store import AccountCounts, AccountStore
from dispatcher.accounts.watch import merged_report, run_pause_watch
from dispatcher.campaigns.sending import CampaignSender
from dispatcher.campaigns.store import CampaignStore
from dispatcher.campaigns.unsubscribe import TOKEN_PURPOSE, UnsubscribeTokens
from dispatcher.config import Config
from dispatcher.db.connect import describe_dsn
from dispatcher.db.embedded import EmbeddedPostgres
from dispatcher.domain.retry import RetryPolicy
from dispatcher.doors.keys import MasterKey, master_key_path
from dispatcher.doors.serve import open_doors, serve_app
from dispatcher.doors.sockets import Listen
from dispatcher.errors import ConfigError, DatabaseError, DispatcherError
from dispatcher.feedback.endpoint import certificate_fetcher, create_app, subscription_confirmer
from dispatcher.feedback.sns import SnsVerifier
from dispatcher.feedback.sqs import run_sqs_poller
from dispatcher.feedback.store import FeedbackStore
from dispatcher.feedback.unsubscribe import add_unsubscribe_routes
from dispatcher.feedback.watch import run_guard
from dispatcher.obs.live import observing
from dispatcher.obs.metrics import ProcessMetrics
from dispatcher.pacing import QuotaGovernor, RecipientLimiter
from dispatcher.pacing.settings import PacingSettings
from dispatcher.pacing.warmup import WarmupGate
from dispatcher.queue.repository import Queue
from dispatcher.retention import Pruner, run_pruner
from dispatcher.runtime import settle_heap
from dispatcher.ses import SesAdapter
from dispatcher.ses.settings import SesSettings
from dispatcher.webhooks.sender import run_webhooks
from dispatcher.worker.lane_gate import Lanes
from dispatcher.worker.lane_store import LaneStore, run_lanes
from dispatcher.worker.listener import Listener
from dispatcher.worker.pool import PoolSettings, RunReport, Shared, WorkerPool, first_reading
from dispatcher.worker.quota_store import LeaderLock, SharedQuotaStore
from dispatcher.worker.warmup_store import WarmupStore, run_warmup

log = structlog.get_logger()


async def database_url(cfg: Config) -> str:
    """The configured URL, or the embedded cluster under the data dir (started or reused)."""
    if cfg.database.url:
        return cfg.database.url
    embedded = EmbeddedPostgres(cfg.database.data_dir)
    return await embedded.open()


@asynccontextmanager
async def connect(cfg: Config) -> AsyncIterator[asyncpg.Connection]:
    """One plain connection (for migrations), with a clear error if the server is not there."""
    url = await database_url(cfg)
    try:
        conn = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseError(
            f"cannot connect to the database at {describe_dsn(url)}: {exc}"
        ) from None
    try:
        yield conn
    finally:
        await conn.close()


# Held for a whole run (the LISTEN connection, the quota leader's lock, the worker's session
# lock) or a prune run (the pruner's lock): never taken from the ones that claim and settle.
HELD_CONNECTIONS = 4
HELD_PER_ACCOUNT = 3  # of those, each further SES account's pool holds its own LISTEN,
# leader and session connections


@asynccontextmanager
async def open_queue(cfg: Config, *, migrate: bool | None = None) -> AsyncIterator[Queue]:
    """A connected Queue; migrates first when asked to (default: database.migrate_on_start)."""
    url = await database_url(cfg)
    do_migrate = cfg.database.migrate_on_start if migrate is None else migrate
    # The daemon keeps connections for itself (HELD_CONNECTIONS): pool_size counts the ones
    # that run the queue's statements.
    extra_accounts = len(account_names(cfg.accounts)) - 1
    size = cfg.database.pool_size + HELD_CONNECTIONS + HELD_PER_ACCOUNT * extra_accounts
    async with Queue.connect(url, max_size=size, migrate=do_migrate) as queue:
        yield queue


@dataclass(frozen=True, slots=True)
class Stores:
    """Every store of one database, built once here on one connection pool."""

    queue: Queue
    campaigns: CampaignStore
    feedback: FeedbackStore
    quota: SharedQuotaStore


@asynccontextmanager
async def open_stores(cfg: Config, *, migrate: bool | None = None) -> AsyncIterator[Stores]:
    """The stores on a connected pool (migrated first as `open_queue` says)."""
    async with open_queue(cfg, migrate=migrate) as queue:
        pool = queue.pool
        # The quota board of the default account (the doors' GetSendQuota, `status`).
        quota = SharedQuotaStore(pool, account_names(cfg.accounts)[0])
        yield Stores(queue, CampaignStore(pool), FeedbackStore(pool), quota)


def retry_policy(cfg: Config) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=cfg.queue.max_attempts,
        backoff_base=cfg.queue.backoff_base,
        backoff_max=cfg.queue.backoff_max,
        config_error_delay=cfg.delivery.config_error_delay,
        account_paused_delay=cfg.delivery.account_paused_delay,
        in_doubt=cfg.delivery.in_doubt,
    )


def pool_settings(cfg: Config) -> PoolSettings:
    return PoolSettings(
        claim_batch=cfg.queue.claim_batch,
        max_in_flight=cfg.delivery.in_flight_ceiling,
        lease_seconds=cfg.queue.lease_seconds,
        heartbeat_seconds=cfg.queue.heartbeat_seconds,
        poll_interval=cfg.queue.poll_interval,
        listen=cfg.queue.listen,
        shutdown_grace=cfg.delivery.shutdown_grace,
        settle_batch=cfg.queue.settle_batch,
        settle_interval=cfg.queue.settle_interval,
        campaign_rate_share=cfg.delivery.campaign_rate_share,
        outage_timeout=cfg.database.outage_timeout,
        retry=retry_policy(cfg),
    )


def postgres_shared(queue: Queue, quota: SharedQuotaStore | None = None) -> Shared:
    """The account's shared quota board, leader lock and LISTEN connection, on the queue's pool
    (the account of `quota`, or the queue's)."""
    board = quota if quota is not None else SharedQuotaStore(queue.pool, queue.account)
    return Shared(
        quota_board=board,
        leader_lock=LeaderLock(queue.pool, board.account),
        listen=lambda wakes: Listener(queue.pool, wakes),
    )


class Watchdog:
    """The daemon's loops beside the worker (SQS poller, guard): the first that dies stops the
    daemon, which then ends with an error naming it (sending on without it would go unnoticed:
    bounces unrecorded, the guard blind)."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self.failure: tuple[str, BaseException] | None = None

    def watch(self, task: asyncio.Task[None], what: str) -> None:
        """Stop the daemon if `task` (described to the user as `what`) raises."""
        task.add_done_callback(lambda done: self._ended(done, what))

    def _ended(self, task: asyncio.Task[None], what: str) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        assert exc is not None
        log.error("worker.task_failed", task=task.get_name(), error=repr(exc))
        if self.failure is None:
            self.failure = (what, exc)
        self._stop.set()

    def check(self) -> None:
        """Raise the first loop's death as the daemon's error."""
        if self.failure is not None:
            what, exc = self.failure
            raise DispatcherError(
                f"{what} failed ({type(exc).__name__}: {exc}), so the daemon stopped "
                "instead of sending on without it; fix the cause, then start it again"
            )


@asynccontextmanager
async def feedback_intake(
    cfg: Config,
    store: FeedbackStore,
    watchdog: Watchdog | None = None,
    metrics: ProcessMetrics | None = None,
) -> AsyncIterator[None]:
    """Bounce and complaint intake while the daemon runs: the SNS HTTP endpoint (if enabled)
    and the SQS poller (if a queue is set, watched by `watchdog`), both verifying with one
    SnsVerifier."""
    fb = cfg.feedback
    queues = feedback_queues(cfg)
    if not fb.enabled and not queues:
        yield
        return
    async with aiohttp.ClientSession() as http:
        verifier = await sns_verifier(cfg, http)
        pollers: list[asyncio.Task[None]] = []
        for name, url, ses in queues:
            poller = asyncio.create_task(
                run_sqs_poller(fb, store, verifier, url=url, session=await ses_session(ses)),
                name=f"sqs-poller-{name}",
            )
            pollers.append(poller)
            if watchdog is not None:
                what = "" if len(queues) == 1 else f" of account {name}"
                watchdog.watch(poller, f"the SQS feedback poller{what}")
        try:
            if fb.enabled:
                async with _http_endpoint(cfg, store, verifier, http, metrics):
                    yield
            else:
                yield
        finally:
            for poller in pollers:
                poller.cancel()  # a message received but not recorded comes back (SQS)
            await asyncio.gather(*pollers, return_exceptions=True)


def feedback_queues(cfg: Config) -> list[tuple[str, str, SesSettings]]:
    """The SQS feedback queues to poll: feedback.sqs_queue_url with [ses]'s credentials and
    region, and each account's own sqs_queue_url with that account's; one poller per queue."""
    queues: dict[str, tuple[str, str, SesSettings]] = {}
    if cfg.feedback.sqs_queue_url is not None:
        name = account_names(cfg.accounts)[0]
        queues[cfg.feedback.sqs_queue_url] = (name, cfg.feedback.sqs_queue_url, cfg.ses)
    for account in cfg.accounts:
        if account.sqs_queue_url is not None and account.sqs_queue_url not in queues:
            queues[account.sqs_queue_url] = (
                account.name,
                account.sqs_queue_url,
                account.ses(cfg.ses),
            )
    return list(queues.values())


async def sns_verifier(cfg: Config, http: aiohttp.ClientSession) -> SnsVerifier:
    """The SNS signature verifier; a trusted simulator's certificate is pinned (rehearsals)."""
    fb = cfg.feedback
    pinned: dict[str, bytes] = {}
    origins: list[str] = []
    if fb.trusted_simulator:
        base = fb.trusted_simulator.rstrip("/")
        cert_url = f"{base}/_sim/sns/certificate.pem"
        try:
            async with http.get(cert_url) as resp:
                resp.raise_for_status()
                pinned[cert_url] = await resp.read()
        except aiohttp.ClientError as exc:
            raise ConfigError(
                f"feedback.trusted_simulator: cannot read {cert_url}: {exc}"
            ) from None
        origins.append(base)
    return SnsVerifier(
        allowed_topics=fb.topics,
        fetch=certificate_fetcher(http),
        trusted_certificates=pinned,
        trusted_subscribe_origins=origins,
    )


@asynccontextmanager
async def _http_endpoint(
    cfg: Config,
    store: FeedbackStore,
    verifier: SnsVerifier,
    http: aiohttp.ClientSession,
    metrics: ProcessMetrics | None = None,
) -> AsyncIterator[None]:
    fb = cfg.feedback
    app = create_app(
        verifier,
        store,
        confirm=subscription_confirmer(http),
        max_body=fb.max_body_bytes,
        path=fb.path,
    )
    if fb.public_url is not None:  # the campaigns' default List-Unsubscribe URLs point here
        count = None if metrics is None else metrics.unsubscribes_counter()
        add_unsubscribe_routes(app, unsubscribe_tokens(cfg), store, count)
    async with serve_app(app, Listen("feedback", fb.listen_host, fb.listen_port)):
        yield


def unsubscribe_tokens(cfg: Config) -> UnsubscribeTokens:
    """The unsubscribe token key, derived from the keys' master key (made 0600 on first use)."""
    master = MasterKey.load(
        master_key_path(cfg.keys.master_file, cfg.database.data_dir), create=True
    )
    return UnsubscribeTokens(master.derive(TOKEN_PURPOSE))


async def account_pool(
    cfg: Config,
    stores: Stores,
    account: tuple[str, SesAdapter, PacingSettings],
    stop: asyncio.Event,
    drain: bool,
) -> WorkerPool:
    """The worker pool of one SES account: its own quota reading, limiter, governor and rate
    share, claiming only that account's jobs."""
    name, ses, pacing = account
    queue = stores.queue.for_account(name)
    board = stores.quota if name == stores.quota.account else SharedQuotaStore(queue.pool, name)
    governor = QuotaGovernor(pacing)
    # A reading another process published within a poll interval is taken over: SES
    # answers GetSendQuota once a second for the account, whoever asks.
    quota = await first_reading(
        ses, governor, published=lambda: board.published(within=pacing.poll_interval)
    )
    log.info(
        "quota.read",
        account=name,
        max_send_rate=quota.max_send_rate,
        max_24_hour_send=quota.max_24_hour_send,
        sent_last_24_hours=quota.sent_last_24_hours,
    )
    campaigns = CampaignSender(
        stores.campaigns, ses.ensure_template, tokens=lambda: unsubscribe_tokens(cfg)
    )
    return WorkerPool(
        queue,
        ses,
        RecipientLimiter(quota.max_send_rate, pacing),
        governor,
        pool_settings(cfg),
        postgres_shared(queue, board),
        stop=stop,
        drain=drain,
        pacing=pacing,
        campaigns=campaigns,
    )


def ses_settings_for(cfg: Config, ses: SesSettings) -> SesSettings:
    """One HTTP connection per concurrent send, so max_in_flight is never capped by the pool."""
    return replace(
        ses, max_pool_connections=max(ses.max_pool_connections, cfg.delivery.in_flight_ceiling)
    )


async def run_worker(
    cfg: Config,
    stop: asyncio.Event,
    *,
    drain: bool = False,
    on_start: Callable[[WorkerPool], None] | None = None,
) -> RunReport:
    """Everything a running dispatcher holds, in one place: pool, SES client, pacing, workers;
    one worker pool per SES account (`[[accounts]]`), the default account's first."""
    accounts = effective_accounts(cfg.accounts, cfg.ses, cfg.pacing)
    watchdog = Watchdog(stop)
    async with (
        open_stores(cfg) as stores,
        AsyncExitStack() as clients,
        # first: the feedback listener counts unsubscribes into it
        observing(stop, [name for name, _, _ in accounts]) as live,
        feedback_intake(cfg, stores.feedback, watchdog, live.metrics),
        open_doors(cfg, stores.queue, stores.feedback, stores.quota, live),
    ):
        account_store = AccountStore(stores.queue.pool)
        await account_store.put([name for name, _, _ in accounts], cfg.routes)
        pools: list[WorkerPool] = []
        for name, ses_settings, pacing in accounts:
            ses = await clients.enter_async_context(
                SesAdapter.open(ses_settings_for(cfg, ses_settings))
            )
            pools.append(await account_pool(cfg, stores, (name, ses, pacing), stop, drain))
        pool = pools[0]  # the default account's: what on_start and the dashboard see
        # /metrics counts the sends of every account, each under its name
        live.attach([(name, p) for (name, _, _), p in zip(accounts, pools, strict=True)])
        if on_start is not None:
            on_start(pool)
        settle_heap()  # start-up is done: what it built lives as long as the process
        guard_stop = asyncio.Event()
        guard = asyncio.create_task(
            run_guard(
                stores.feedback,
                stores.campaigns,
                cfg.guard,
                guard_stop,
                # each account on its own numbers, its own hold (not just the one 'default')
                account_store if cfg.accounts else None,
            ),
            name="guard",
        )
        watchdog.watch(guard, "the reputation guard")  # sending on blind could cost the account
        background: list[asyncio.Task[None]] = [guard]
        if cfg.retention.enabled:  # one process at a time prunes (an advisory lock)
            pruner = Pruner(stores.queue.pool, cfg.retention)
            background.append(asyncio.create_task(run_pruner(pruner, guard_stop), name="pruner"))
            watchdog.watch(background[-1], "the retention pruner")
        # Webhooks: own tasks on at most two of the pool's connections, never in mail's way.
        background.append(
            asyncio.create_task(
                run_webhooks(stores.queue.pool, cfg.webhooks, guard_stop), name="webhooks"
            )
        )
        watchdog.watch(background[-1], "the webhook sender")
        # Postgres learns when SES pauses an account: `status` shows it, and the routes that
        # opted in move its waiting mail to their fallback account.
        for name, account in zip((n for n, _, _ in accounts), pools, strict=True):
            background.append(
                asyncio.create_task(
                    run_pause_watch(account_store, name, account, guard_stop),
                    name=f"pause-watch-{name}",
                )
            )
            watchdog.watch(background[-1], f"the pause watch of account {name}")
        warmups: list[tuple[WarmupStore, WarmupGate]] = []
        if cfg.warmup.enabled:  # each governor admits against its account's warm-up cap too
            for name, account in zip((n for n, _, _ in accounts), pools, strict=True):
                warmup = WarmupStore(stores.queue.pool, cfg.warmup, name)
                gate = account.governor.warmup = WarmupGate()
                warmups.append((warmup, gate))
                # A spike of this account's own bounces or complaints holds its ramp.
                counts = AccountCounts(account_store, name) if cfg.accounts else stores.feedback
                supply = run_warmup(
                    warmup, gate, cfg.warmup, counts, cfg.guard.window_hours, guard_stop
                )
                background.append(asyncio.create_task(supply, name=f"warmup-{name}"))
                # without it nothing is admitted
                watchdog.watch(background[-1], f"the warm-up of account {name}")
        all_lanes: list[Lanes] = []
        if any(p.limited for p in cfg.providers):  # provider lanes: see worker/lane_gate.py
            for name, account in zip((n for n, _, _ in accounts), pools, strict=True):
                lanes = Lanes(cfg.providers, cfg.lanes, share=account_share(account))
                account.intake.use_lanes(lanes)
                all_lanes.append(lanes)
                supply_lanes = run_lanes(LaneStore(stores.queue.pool, name), lanes, guard_stop)
                background.append(asyncio.create_task(supply_lanes, name=f"lanes-{name}"))
                # their caps need it
                watchdog.watch(background[-1], f"the provider lanes of account {name}")
        try:
            names = [name for name, _, _ in accounts]
            reports = await asyncio.gather(
                *(run_pool(p, name, len(names) > 1) for p, name in zip(pools, names, strict=True))
            )
            report = merged_report(reports)
        finally:
            for lanes in all_lanes:
                lanes.close()
            guard_stop.set()
            await asyncio.gather(*background, return_exceptions=True)
            for warmup, gate in warmups:
                try:
                    await warmup.give_back(gate)  # others may use it today
                except Exception as exc:
                    log.warning("warmup.give_back_failed", error=repr(exc))
        watchdog.check()
        return report


def account_share(pool: WorkerPool) -> Callable[[], float]:
    """This process's part of an account's rate, which each provider lane of it takes too."""
    return lambda: pool.limiter.share


async def run_pool(pool: WorkerPool, name: str, named: bool) -> RunReport:
    """One account's pool; with several accounts, its log lines name the account."""
    if named:
        structlog.contextvars.bind_contextvars(account=name)
    return await pool.run()
