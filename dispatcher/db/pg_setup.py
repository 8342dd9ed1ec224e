"""What the dispatcher sets up in its embedded cluster: initdb (superuser, password, settings,
the database ``dispatcher``), and the check that the database is there on an async start."""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import structlog

from dispatcher.db.pg_binaries import PgBinaries, RunAs, run_tool
from dispatcher.db.pg_host import HOST, tail, write_private
from dispatcher.errors import DatabaseError

__all__ = ["DATABASE", "SUPERUSER", "create_database", "initdb"]

log = structlog.get_logger()

SUPERUSER = "dispatcher"
DATABASE = "dispatcher"

# Written once into postgresql.conf at initdb. Port, listen address and socket dir are passed
# at each start instead, because the port is chosen then.
_BASE_SETTINGS: dict[str, str] = {
    "max_connections": "200",
    "shared_buffers": "128MB",
    "password_encryption": "'scram-sha-256'",
    "log_min_messages": "warning",
    "log_destination": "'stderr'",
    "logging_collector": "off",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
}
# Mail must never be lost: a commit is on disk before the dispatcher treats it as done.
_DURABLE_SETTINGS: dict[str, str] = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
}
# Throwaway test clusters only: a crash loses the cluster, which the test suite does not care about.
_EPHEMERAL_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


def initdb(
    data_dir: Path,
    pg_dir: Path,
    password_file: Path,
    bins: PgBinaries,
    run_as: RunAs | None,
    *,
    durable: bool,
) -> None:
    """initdb ``pg_dir``: a new superuser password (saved first), the settings, the database."""
    began = time.monotonic()
    pg_dir.mkdir(mode=0o700, exist_ok=True)
    if run_as is not None:
        os.chown(pg_dir, run_as.uid, run_as.gid)
    password = secrets.token_urlsafe(24)
    # Saved before initdb: a crash between the two must not leave a cluster nobody can log into.
    write_private(password_file, password + "\n")
    # initdb reads the password from a file the server user can open; it lives only
    # for this call and outside pg_dir, which initdb needs empty.
    fd, pwfile_name = tempfile.mkstemp(prefix=".pg-pwfile-", dir=data_dir)
    pwfile = Path(pwfile_name)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        if run_as is not None:
            os.chown(pwfile, run_as.uid, run_as.gid)
        argv = [
            str(bins.bin_dir / "initdb"),
            "-D",
            str(pg_dir),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
        ]
        if not durable:
            argv.append("--no-sync")
        result = run_tool(argv, run_as, timeout=120)
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise DatabaseError(
            f"initdb failed for {pg_dir} ({bins.bin_dir}):\n{tail(result.stderr or result.stdout)}"
        )
    settings = {
        **_BASE_SETTINGS,
        **(_DURABLE_SETTINGS if durable else _EPHEMERAL_SETTINGS),
    }
    block = "\n# --- written by dispatcher (embedded) ---\n" + "".join(
        f"{name} = {value}\n" for name, value in settings.items()
    )
    with (pg_dir / "postgresql.conf").open("a") as conf:
        conf.write(block)
    # The database too, in single-user mode before the first start: no connection, no event loop.
    result = run_tool(
        [str(bins.bin_dir / "postgres"), "--single", "-D", str(pg_dir), "postgres"],
        run_as,
        timeout=120,
        stdin_text=f'CREATE DATABASE "{DATABASE}"\n',
    )
    if result.returncode != 0 or "ERROR:" in result.stderr:  # --single exits 0 on SQL errors
        raise DatabaseError(
            f"creating the database {DATABASE} in {pg_dir} failed:\n"
            f"{tail(result.stderr or result.stdout)}"
        )
    log.info(
        "db.embedded.initialized",
        data_dir=str(data_dir),
        version=bins.major,
        durable=durable,
        seconds=round(time.monotonic() - began, 3),
    )


async def create_database(port: int, password: str) -> bool:
    """Create database ``dispatcher`` unless it exists; True if it was created.

    Checked from the ``postgres`` database so a missing one does not log a FATAL line.
    """
    deadline = time.monotonic() + 15
    while True:
        try:
            conn = await asyncpg.connect(
                host=HOST,
                port=port,
                user=SUPERUSER,
                password=password,
                database="postgres",
                timeout=10,
                ssl=False,
            )
            break
        except asyncpg.CannotConnectNowError:  # still recovering after a crash
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            return False
        await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
        return False  # created meanwhile by another process starting the same cluster
    finally:
        await conn.close()
    return True
