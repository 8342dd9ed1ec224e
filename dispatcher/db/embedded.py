"""Embedded PostgreSQL: a private cluster under the data dir, used when no database URL is set.

The server outlives the process that started it (like a dev database): the CLI runs many times
and each run either reuses the running postmaster or starts it. ``start()`` is blocking
(subprocesses; the database is created in single-user mode right after initdb, so it needs no
connection and no event loop); async code awaits ``open()``, which runs the same in a thread and
then checks the database over a connection on the caller's own event loop.

Layout under ``data_dir``::

    pg/                 the cluster (PGDATA), owned by the user the server runs as
    pg/log/postgresql.log   server log (pg_ctl -l), rotated to .1 at start past 10 MiB
    pg-password         superuser password, mode 0600, owned by the calling user
    pg.lock             flock taken around init/start/stop so concurrent callers agree
    pg.init-incomplete  exists only while initdb runs; found at start, pg/ is rebuilt
    pg-port             the port the server was last started on, reused at the next start so
                        a daemon that rode out a restart finds it again
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import asyncpg  # type: ignore[import-untyped]
import structlog

from dispatcher.db.pg_binaries import (
    PgBinaries,
    RunAs,
    ensure_traversable,
    find_binaries,
    run_tool,
    server_user,
)
from dispatcher.db.pg_host import (
    HOST,
    PidFile,
    clear_stale_server,
    free_port,
    is_live_postgres,
    locked,
    port_is_free,
    read_pid_file,
    read_tail,
    tail,
    user_name,
    wait_gone,
)
from dispatcher.db.pg_setup import DATABASE, SUPERUSER, create_database, initdb
from dispatcher.errors import DatabaseError

__all__ = ["EmbeddedPostgres", "EmbeddedStatus", "temporary_cluster"]

log = structlog.get_logger()

_START_TIMEOUT_S = 60
_STOP_TIMEOUT_S = 60
_LOG_ROTATE_BYTES = 10 * 1024 * 1024
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS; keep a margin
_PORT_ATTEMPTS = 3  # a free port can be taken between our probe and the postmaster's bind
# pg_ctl pastes -D/-l paths into a /bin/sh command line inside double quotes.
_SHELL_UNSAFE = re.compile(r'["$`\\\n]')


@dataclass(frozen=True, slots=True)
class EmbeddedStatus:
    """What ``dispatcher db status`` would print."""

    data_dir: Path
    initialized: bool
    running: bool
    pid: int | None
    port: int | None


class EmbeddedPostgres:
    """A private PostgreSQL cluster under ``data_dir / "pg"``, started or reused by ``start()``."""

    __slots__ = (
        "_bin_dir",
        "_durable",
        "_port",
        "data_dir",
        "init_marker",
        "lock_file",
        "log_file",
        "password_file",
        "pg_dir",
        "port_file",
    )

    def __init__(self, data_dir: Path, *, bin_dir: Path | None = None, durable: bool = True):
        # Absolute and symlink-free: it is compared with /proc/PID/cwd and handed to pg_ctl.
        self.data_dir = Path(os.path.abspath(data_dir.expanduser()))
        with contextlib.suppress(OSError):
            self.data_dir = self.data_dir.resolve()
        self.pg_dir = self.data_dir / "pg"
        self.password_file = self.data_dir / "pg-password"
        self.lock_file = self.data_dir / "pg.lock"
        self.init_marker = self.data_dir / "pg.init-incomplete"
        self.port_file = self.data_dir / "pg-port"
        self.log_file = self.pg_dir / "log" / "postgresql.log"
        self._bin_dir = bin_dir  # None: search pgserver, PATH, /usr/lib/postgresql
        self._durable = durable  # False only for throwaway test clusters (fsync off)
        self._port: int | None = None  # set by start(), cleared by stop()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres(data_dir={str(self.data_dir)!r}, port={self._port})"

    # --- public API --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """TCP port on 127.0.0.1 of the running server; valid after ``start()``."""
        if self._port is None:
            raise RuntimeError("EmbeddedPostgres.start() has not been called")
        return self._port

    @property
    def dsn(self) -> str:
        """postgresql://dispatcher:PASSWORD@127.0.0.1:PORT/dispatcher; valid after ``start()``."""
        password = quote(self._read_password(), safe="")
        return f"postgresql://{SUPERUSER}:{password}@{HOST}:{self.port}/{DATABASE}"

    def start(self) -> str:
        """Reuse the server running on this data dir, or init/start it; return the DSN.

        Blocking (subprocesses): async code awaits ``open()`` instead.
        """
        self._serve()
        return self.dsn

    async def open(self) -> str:
        """``start()`` for async code: the server's processes run in a thread, then the database
        is checked (re-created if someone dropped it) on the caller's own event loop."""
        await asyncio.to_thread(self._serve)
        await self._ensure_database()
        return self.dsn

    def stop(self) -> None:
        """Stop the server (pg_ctl stop -m fast) if it is running; a no-op otherwise."""
        if not self.data_dir.is_dir():
            return
        with locked(self.lock_file):
            self._port = None
            info = read_pid_file(self.pg_dir)
            if info is None or not is_live_postgres(info.pid, self.pg_dir):
                log.info("db.embedded.not_running", data_dir=str(self.data_dir))
                return
            run_as = server_user(self.pg_dir)
            try:
                bins = find_binaries(
                    self._bin_dir, cluster_major=self._cluster_major(), run_as=run_as
                )
            except DatabaseError:
                # No pg_ctl any more (e.g. pgserver uninstalled): SIGINT is fast shutdown.
                self._stop_by_signal(info.pid)
                return
            result = run_tool(
                [
                    str(bins.bin_dir / "pg_ctl"),
                    "stop",
                    "-D",
                    str(self.pg_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(_STOP_TIMEOUT_S),
                ],
                run_as,
                timeout=_STOP_TIMEOUT_S + 15,
            )
            if result.returncode != 0 and is_live_postgres(info.pid, self.pg_dir):
                raise DatabaseError(
                    f"Could not stop the embedded PostgreSQL in {self.pg_dir} (pid {info.pid}): "
                    f"{tail(result.stderr or result.stdout)}"
                )
            log.info("db.embedded.stopped", data_dir=str(self.data_dir), pid=info.pid)

    def restart(self) -> None:
        """pg_ctl restart -m fast: every connection is cut, the server comes back on its port."""
        with locked(self.lock_file):
            info = read_pid_file(self.pg_dir)
            if info is None or not is_live_postgres(info.pid, self.pg_dir):
                raise DatabaseError(f"the embedded PostgreSQL in {self.pg_dir} is not running")
            run_as = server_user(self.pg_dir)
            bins = find_binaries(self._bin_dir, cluster_major=self._cluster_major(), run_as=run_as)
            result = run_tool(
                [
                    str(bins.bin_dir / "pg_ctl"),
                    "restart",
                    "-D",
                    str(self.pg_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(_START_TIMEOUT_S),
                    "-l",
                    str(self.log_file),
                ],
                run_as,
                timeout=_START_TIMEOUT_S + _STOP_TIMEOUT_S + 15,
                new_session=True,
            )
            if result.returncode != 0:
                raise DatabaseError(
                    f"Could not restart the embedded PostgreSQL in {self.pg_dir}: "
                    f"{tail(result.stderr or result.stdout)}"
                )
            log.info("db.embedded.restarted", data_dir=str(self.data_dir), old_pid=info.pid)

    def status(self) -> EmbeddedStatus:
        """Whether the cluster exists and a postmaster is serving it; takes no lock."""
        info = read_pid_file(self.pg_dir)
        running = info is not None and is_live_postgres(info.pid, self.pg_dir)
        return EmbeddedStatus(
            data_dir=self.data_dir,
            initialized=(self.pg_dir / "PG_VERSION").is_file(),
            running=running,
            pid=info.pid if info is not None and running else None,
            port=info.port if info is not None and running else None,
        )

    def is_running(self) -> bool:
        """True if a live postmaster serves this data dir."""
        return self.status().running

    # --- steps of start() ----------------------------------------------------------------------

    def _serve(self) -> None:
        """Reuse the server running on this data dir, or init/start it (blocking: subprocesses)."""
        self._prepare_data_dir()
        with locked(self.lock_file):
            running = self._running_postmaster()
            if running is not None:
                self._port = running.port
                log.info(
                    "db.embedded.reused",
                    data_dir=str(self.data_dir),
                    port=running.port,
                    pid=running.pid,
                )
                return

            began = time.monotonic()
            run_as = server_user(self.pg_dir)
            if run_as is not None:
                ensure_traversable(self.data_dir, run_as)
            if self.init_marker.exists():
                # The last initdb never finished, so pg_dir never held data: start over.
                log.warning("db.embedded.init_incomplete", data_dir=str(self.data_dir))
                shutil.rmtree(self.pg_dir, ignore_errors=True)
            cluster_major = self._cluster_major()
            bins = find_binaries(self._bin_dir, cluster_major=cluster_major, run_as=run_as)
            if cluster_major is None:
                self._initdb(bins, run_as)
            clear_stale_server(self.pg_dir, self.data_dir)
            pid = self._start_server(bins, run_as)
            log.info(
                "db.embedded.started",
                data_dir=str(self.data_dir),
                port=self._port,
                pid=pid,
                version=bins.major,
                bin_dir=str(bins.bin_dir),
                run_as=run_as.name if run_as else None,
                seconds=round(time.monotonic() - began, 3),
            )

    def _prepare_data_dir(self) -> None:
        if _SHELL_UNSAFE.search(str(self.data_dir)):
            raise DatabaseError(
                f'The data directory {self.data_dir} contains one of " $ ` \\ or a newline, '
                "which pg_ctl cannot handle; choose a plainer path."
            )
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(
                f"Cannot create the data directory {self.data_dir}: {exc.strerror or exc}. "
                "Choose a writable data directory or fix its permissions."
            ) from None
        if not os.access(self.data_dir, os.W_OK | os.X_OK):
            raise DatabaseError(
                f"The data directory {self.data_dir} is not writable by "
                f"{user_name(os.geteuid())}. Choose a writable data directory or fix its "
                "permissions."
            )

    def _running_postmaster(self) -> PidFile | None:
        """The postmaster serving pg_dir once it is ready, or None if there is none."""
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            info = read_pid_file(self.pg_dir)
            if info is None or not is_live_postgres(info.pid, self.pg_dir):
                return None
            if info.status == "ready" and info.port is not None:
                return info
            # "starting" (crash recovery) or "stopping": wait for it to settle either way.
            if time.monotonic() > deadline:
                raise DatabaseError(
                    f"The embedded PostgreSQL in {self.pg_dir} (pid {info.pid}) has been "
                    f"'{info.status or 'starting'}' for {_START_TIMEOUT_S} s. Server log "
                    f"{self.log_file}:\n{tail(read_tail(self.log_file))}"
                )
            time.sleep(0.1)

    def _cluster_major(self) -> str | None:
        """Major version in PG_VERSION, or None if pg_dir holds no cluster yet."""
        version_file = self.pg_dir / "PG_VERSION"
        if version_file.is_file():
            return version_file.read_text().strip()
        if self.pg_dir.is_dir() and any(self.pg_dir.iterdir()):
            raise DatabaseError(
                f"{self.pg_dir} exists and is not empty but holds no PostgreSQL cluster "
                "(no PG_VERSION). Move it aside so a fresh cluster can be created there."
            )
        return None

    def _initdb(self, bins: PgBinaries, run_as: RunAs | None) -> None:
        self.init_marker.touch(mode=0o600)  # removed once the cluster is complete
        initdb(self.data_dir, self.pg_dir, self.password_file, bins, run_as, durable=self._durable)
        self.log_file.parent.mkdir(mode=0o700, exist_ok=True)
        if run_as is not None:
            os.chown(self.log_file.parent, run_as.uid, run_as.gid)
        self.init_marker.unlink()

    def _start_server(self, bins: PgBinaries, run_as: RunAs | None) -> int:
        """pg_ctl start on a free loopback port; returns the postmaster pid."""
        self.log_file.parent.mkdir(mode=0o700, exist_ok=True)
        if run_as is not None:
            os.chown(self.log_file.parent, run_as.uid, run_as.gid)
        self._rotate_log()
        socket_dir_ok = len(str(self.pg_dir / ".s.PGSQL.65535").encode()) <= _SOCKET_PATH_MAX
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port = self._last_port() if attempt == 1 else free_port()
            # pg_ctl runs postgres through /bin/sh: the -o string is shell text.
            options = f"-p {port} -c listen_addresses={HOST} " + (
                f"-k {shlex.quote(str(self.pg_dir))}"
                if socket_dir_ok
                else "-c unix_socket_directories=''"
            )
            log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            argv = [
                str(bins.bin_dir / "pg_ctl"),
                "start",
                "-D",
                str(self.pg_dir),
                "-w",
                "-t",
                str(_START_TIMEOUT_S),
                "-l",
                str(self.log_file),
                "-o",
                options,
            ]
            result = run_tool(argv, run_as, timeout=_START_TIMEOUT_S + 15, new_session=True)
            info = read_pid_file(self.pg_dir)
            if (
                result.returncode == 0
                and info is not None
                and info.status == "ready"
                and is_live_postgres(info.pid, self.pg_dir)
            ):
                self._port = port
                self.port_file.write_text(f"{port}\n")
                return info.pid
            server_log = read_tail(self.log_file, log_offset)
            if "could not bind" in server_log and attempt < _PORT_ATTEMPTS:
                log.warning("db.embedded.port_taken", data_dir=str(self.data_dir), port=port)
                clear_stale_server(self.pg_dir, self.data_dir)
                continue
            raise DatabaseError(
                f"The embedded PostgreSQL in {self.pg_dir} did not start "
                f"({bins.source} {bins.bin_dir}, PostgreSQL {bins.major}).\n"
                f"pg_ctl: {tail(result.stderr or result.stdout, 5)}\n"
                f"Server log {self.log_file} (last lines):\n{tail(server_log)}"
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _last_port(self) -> int:
        """The port of the last start if it is free again, else a new free one.

        Clients that outlive the server (a daemon riding out `db stop`) keep its URL, so the
        server comes back where they look for it unless something else took the port.
        """
        with contextlib.suppress(OSError, ValueError):
            last = int(self.port_file.read_text().strip())
            if port_is_free(last):
                return last
            log.warning("db.embedded.port_changed", data_dir=str(self.data_dir), taken=last)
        return free_port()

    def _rotate_log(self) -> None:
        """Keep one previous log: pg_ctl -l appends forever otherwise."""
        with contextlib.suppress(FileNotFoundError):
            if self.log_file.stat().st_size > _LOG_ROTATE_BYTES:
                self.log_file.replace(self.log_file.with_name(self.log_file.name + ".1"))
                log.info("db.embedded.log_rotated", log_file=str(self.log_file))

    async def _ensure_database(self) -> bool:
        """Connect as the superuser; create database ``dispatcher`` if missing (True if so)."""
        password = self._read_password()
        port = self.port
        try:
            created = await create_database(port, password)
        except asyncpg.InvalidPasswordError:
            raise DatabaseError(
                f"The embedded PostgreSQL on {HOST}:{port} rejected the password in "
                f"{self.password_file}. Restore that file, or move {self.pg_dir} aside to "
                "create a fresh cluster."
            ) from None
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            raise DatabaseError(
                f"Could not connect to the embedded PostgreSQL on {HOST}:{port} "
                f"({self.pg_dir}): {exc}"
            ) from None
        if created:
            log.info("db.embedded.database_created", data_dir=str(self.data_dir), port=port)
        return created

    def _read_password(self) -> str:
        try:
            password = self.password_file.read_text().strip()
        except FileNotFoundError:
            password = ""
        except OSError as exc:
            raise DatabaseError(f"Cannot read {self.password_file}: {exc.strerror}") from None
        if not password:
            raise DatabaseError(
                f"The password file {self.password_file} is missing or empty, so the embedded "
                f"cluster in {self.pg_dir} cannot be reached. Restore the file, or move "
                f"{self.pg_dir} aside to create a fresh cluster."
            )
        return password

    def _stop_by_signal(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)  # postgres: SIGINT = fast shutdown
        if not wait_gone([pid], _STOP_TIMEOUT_S):
            raise DatabaseError(f"The embedded PostgreSQL (pid {pid}) did not stop within 60 s.")
        log.info("db.embedded.stopped", data_dir=str(self.data_dir), pid=pid, via="SIGINT")


@contextlib.contextmanager
def temporary_cluster(
    base_dir: Path | None = None, *, bin_dir: Path | None = None
) -> Iterator[EmbeddedPostgres]:
    """A throwaway cluster (fsync off) in a new temp dir; stopped and deleted on exit.

    Meant for one Postgres per test session: ``with temporary_cluster() as pg: pg.dsn``.
    """
    root = Path(tempfile.mkdtemp(prefix="dpg-", dir=base_dir))
    cluster = EmbeddedPostgres(root, bin_dir=bin_dir, durable=False)
    try:
        cluster.start()
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
