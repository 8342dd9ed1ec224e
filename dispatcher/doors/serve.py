"""The doors a running daemon serves: the `[api]` HTTP listener (and, when enabled, SMTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import structlog
from aiohttp import web

from dispatcher.config import Config
from dispatcher.doors import sockets
from dispatcher.doors.keys import KeyStore
from dispatcher.doors.web import DoorContext, build_app
from dispatcher.feedback.store import FeedbackStore
from dispatcher.obs.live import Live
from dispatcher.queue.repository import Queue
from dispatcher.worker.quota_store import SharedQuotaStore

__all__ = ["open_doors", "serve_app"]

log = structlog.get_logger()


@asynccontextmanager
async def serve_app(app: web.Application, door: sockets.Listen) -> AsyncIterator[None]:
    """Serve `app` on the door's socket (the parent's, under `run --processes`) until exit."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        sock, shared = sockets.open_socket(door)
        await web.SockSite(runner, sock).start()
        host, port = sock.getsockname()[:2]
        log.info(f"{door.name}.listening", host=host, port=port, shared=shared)
        yield
    finally:
        await runner.cleanup()


@asynccontextmanager
async def open_doors(
    cfg: Config,
    queue: Queue,
    feedback: FeedbackStore,
    quota: SharedQuotaStore,
    live: Live | None = None,
) -> AsyncIterator[None]:
    """Every door the configuration enables, open while the daemon runs."""
    ctx = DoorContext(
        cfg=cfg,
        pool=queue.pool,
        keys=KeyStore(queue.pool),
        queue=queue,
        feedback=feedback,
        quota=quota,
        live=live,
    )
    async with AsyncExitStack() as stack:
        if cfg.api.enabled:
            door = sockets.Listen("api", cfg.api.listen_host, cfg.api.listen_port)
            await stack.enter_async_context(serve_app(build_app(ctx), door))
        if cfg.smtp.enabled:
            # Imported here: aiosmtpd and the certificate code cost every CLI command ~40 ms.
            from dispatcher.doors.smtp import serve_smtp

            await stack.enter_async_context(serve_smtp(cfg, ctx.pool, ctx.keys))
        yield
