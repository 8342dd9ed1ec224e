"""`dispatcher db status | stop | url`: the embedded Postgres, which cluster it is, who uses it,
and the URL to reach the database in use.

`db stop` refuses (exit 2) while anyone else is connected, unless `--force`: a daemon cut off
rides out the outage for database.outage_timeout and carries on once any later command has
started the server again, on the same port (see EmbeddedPostgres's pg-port).
"""

from __future__ import annotations

import argparse
import asyncio

import asyncpg  # type: ignore[import-untyped]

from dispatcher import app
from dispatcher.config import Config
from dispatcher.db.embedded import EmbeddedPostgres
from dispatcher.errors import InputError

# Other client connections, and the daemons among them whose heartbeat is within its lease.
_USERS = """
SELECT (SELECT count(*) FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()) AS connections,
       (SELECT coalesce(array_agg(hostname || '/' || pid ORDER BY started_at), '{}')
        FROM dispatcher.workers
        WHERE heartbeat_at > now() - make_interval(secs => lease_seconds)) AS daemons
"""


def _embedded(cfg: Config) -> EmbeddedPostgres:
    if cfg.database.url:
        raise InputError(
            "database.url is set: the dispatcher uses that server, not an embedded one"
        )
    return EmbeddedPostgres(cfg.database.data_dir)


async def cmd_stop(args: argparse.Namespace, cfg: Config) -> int:
    embedded = _embedded(cfg)
    st = await asyncio.to_thread(embedded.status)
    if st.running and not args.force:
        connections, daemons = await _users(await embedded.open())
        if connections:
            who = f"daemon(s) {', '.join(daemons)} and " if daemons else ""
            raise InputError(
                f"embedded Postgres under {st.data_dir} (port {st.port}) is in use: {who}"
                f"{connections} connection(s) in all; stop the daemons first, or use "
                "`db stop --force` (a daemon retries for database.outage_timeout and "
                "carries on once a later command starts the server again, same port)"
            )
    await asyncio.to_thread(embedded.stop)
    print(f"embedded Postgres under {embedded.data_dir} stopped")
    return 0


async def cmd_url(args: argparse.Namespace, cfg: Config) -> int:
    """The URL of the database in use: database.url, or the embedded server (started if needed),
    for psql, pg_dump and applications using the outbox."""
    print(await app.database_url(cfg))
    return 0


async def cmd_status(args: argparse.Namespace, cfg: Config) -> int:
    st = await asyncio.to_thread(_embedded(cfg).status)
    if not st.initialized:
        print(f"no embedded Postgres under {st.data_dir} yet (the first command creates it)")
    elif st.running:
        print(f"embedded Postgres under {st.data_dir}: running, pid {st.pid}, port {st.port}")
    else:
        print(f"embedded Postgres under {st.data_dir}: stopped")
    return 0


async def _users(dsn: str) -> tuple[int, list[str]]:
    """(other connections, live daemons as host/pid) of the embedded server."""
    conn = await asyncpg.connect(dsn)
    try:
        try:
            row = await conn.fetchrow(_USERS)
        except asyncpg.UndefinedTableError:  # never migrated: no daemon ever ran here
            n = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
            return int(n), []
        return int(row["connections"]), list(row["daemons"])
    finally:
        await conn.close()
