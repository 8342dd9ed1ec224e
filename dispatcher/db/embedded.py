"""Embedded PostgreSQL: a private cluster under the data dir, used when no database URL is set.

The server outlives the process that started it (like a dev database): the CLI runs many times
and each run either reuses the running postmaster or starts it. Everything here is synchronous
(subprocess based); async callers go through ``asyncio.to_thread``.

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
import concurrent.futures
import contextlib
import fcntl
import importlib.util
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import asyncpg  # type: ignore[import-untyped]
import structlog

from dispatcher.errors import DatabaseError

__all__ = [
    "DATABASE",
    "HOST",
    "SERVICE_USER",
    "SUPERUSER",
    "EmbeddedPostgres",
    "EmbeddedStatus",
    "PgBinaries",
    "find_binaries",
    "temporary_cluster",
]

log = structlog.get_logger()

_T = TypeVar("_T")

HOST = "127.0.0.1"
SUPERUSER = "dispatcher"
DATABASE = "dispatcher"
SERVICE_USER = "dispatcher-pg"
"""System user the server runs as when the dispatcher runs as root (postgres refuses root)."""

_REQUIRED = ("initdb", "pg_ctl", "postgres")
_HOW_TO_FIX = (
    "Install the Python dependency 'pgserver' (pip install pgserver, it bundles PostgreSQL), "
    "or PostgreSQL's server package (e.g. apt install postgresql), "
    "or set DISPATCHER_DATABASE_URL to use an existing PostgreSQL server."
)
_START_TIMEOUT_S = 60
_STOP_TIMEOUT_S = 60
_LOCK_TIMEOUT_S = 180.0  # longer than one full start, so a waiter normally gets its turn
_LOG_ROTATE_BYTES = 10 * 1024 * 1024
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS; keep a margin
_PORT_ATTEMPTS = 3  # a free port can be taken between our probe and the postmaster's bind
# pg_ctl pastes -D/-l paths into a /bin/sh command line inside double quotes.
_SHELL_UNSAFE = re.compile(r'["$`\\\n]')

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


@dataclass(frozen=True, slots=True)
class PgBinaries:
    """A directory holding initdb, pg_ctl and postgres of one major version."""

    bin_dir: Path
    major: str
    source: str  # "bin_dir argument", "pgserver", "PATH" or "system"


@dataclass(frozen=True, slots=True)
class EmbeddedStatus:
    """What ``dispatcher db status`` would print."""

    data_dir: Path
    initialized: bool
    running: bool
    pid: int | None
    port: int | None


@dataclass(frozen=True, slots=True)
class _RunAs:
    """The unprivileged account the server runs as when we are root."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class _PidFile:
    """The fields of PGDATA/postmaster.pid we use (line 1 pid, line 4 port, line 8 status)."""

    pid: int
    port: int | None
    status: str


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
        """Reuse the server running on this data dir, or init/start it; return the DSN."""
        self._prepare_data_dir()
        with self._locked():
            running = self._running_postmaster()
            if running is not None:
                self._port = running.port
                self._ensure_database()
                log.info(
                    "db.embedded.reused",
                    data_dir=str(self.data_dir),
                    port=running.port,
                    pid=running.pid,
                )
                return self.dsn

            began = time.monotonic()
            run_as = self._run_as()
            if run_as is not None:
                _ensure_traversable(self.data_dir, run_as)
            if self.init_marker.exists():
                # The last initdb never finished, so pg_dir never held data: start over.
                log.warning("db.embedded.init_incomplete", data_dir=str(self.data_dir))
                shutil.rmtree(self.pg_dir, ignore_errors=True)
            cluster_major = self._cluster_major()
            bins = find_binaries(self._bin_dir, cluster_major=cluster_major, run_as=run_as)
            if cluster_major is None:
                self._initdb(bins, run_as)
            self._clear_stale_server()
            pid = self._start_server(bins, run_as)
            created = self._ensure_database()
            log.info(
                "db.embedded.started",
                data_dir=str(self.data_dir),
                port=self._port,
                pid=pid,
                version=bins.major,
                bin_dir=str(bins.bin_dir),
                run_as=run_as.name if run_as else None,
                database_created=created,
                seconds=round(time.monotonic() - began, 3),
            )
            return self.dsn

    def stop(self) -> None:
        """Stop the server (pg_ctl stop -m fast) if it is running; a no-op otherwise."""
        if not self.data_dir.is_dir():
            return
        with self._locked():
            self._port = None
            info = _read_pid_file(self.pg_dir)
            if info is None or not _is_live_postgres(info.pid, self.pg_dir):
                log.info("db.embedded.not_running", data_dir=str(self.data_dir))
                return
            run_as = self._run_as()
            try:
                bins = find_binaries(
                    self._bin_dir, cluster_major=self._cluster_major(), run_as=run_as
                )
            except DatabaseError:
                # No pg_ctl any more (e.g. pgserver uninstalled): SIGINT is fast shutdown.
                self._stop_by_signal(info.pid)
                return
            result = _run(
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
            if result.returncode != 0 and _is_live_postgres(info.pid, self.pg_dir):
                raise DatabaseError(
                    f"Could not stop the embedded PostgreSQL in {self.pg_dir} (pid {info.pid}): "
                    f"{_tail(result.stderr or result.stdout)}"
                )
            log.info("db.embedded.stopped", data_dir=str(self.data_dir), pid=info.pid)

    def restart(self) -> None:
        """pg_ctl restart -m fast: every connection is cut, the server comes back on its port."""
        with self._locked():
            info = _read_pid_file(self.pg_dir)
            if info is None or not _is_live_postgres(info.pid, self.pg_dir):
                raise DatabaseError(f"the embedded PostgreSQL in {self.pg_dir} is not running")
            run_as = self._run_as()
            bins = find_binaries(self._bin_dir, cluster_major=self._cluster_major(), run_as=run_as)
            result = _run(
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
                    f"{_tail(result.stderr or result.stdout)}"
                )
            log.info("db.embedded.restarted", data_dir=str(self.data_dir), old_pid=info.pid)

    def status(self) -> EmbeddedStatus:
        """Whether the cluster exists and a postmaster is serving it; takes no lock."""
        info = _read_pid_file(self.pg_dir)
        running = info is not None and _is_live_postgres(info.pid, self.pg_dir)
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
                f"{_user_name(os.geteuid())}. Choose a writable data directory or fix its "
                "permissions."
            )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive flock on data_dir/pg.lock: one process at a time inits, starts or stops."""
        try:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise DatabaseError(
                f"Cannot open the lock file {self.lock_file}: {exc.strerror}. Choose a writable "
                "data directory or fix its permissions."
            ) from None
        try:
            deadline = time.monotonic() + _LOCK_TIMEOUT_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise DatabaseError(
                            f"Another process has held {self.lock_file} for more than "
                            f"{_LOCK_TIMEOUT_S:.0f} s; is a dispatcher stuck starting the "
                            "embedded database?"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _running_postmaster(self) -> _PidFile | None:
        """The postmaster serving pg_dir once it is ready, or None if there is none."""
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            info = _read_pid_file(self.pg_dir)
            if info is None or not _is_live_postgres(info.pid, self.pg_dir):
                return None
            if info.status == "ready" and info.port is not None:
                return info
            # "starting" (crash recovery) or "stopping": wait for it to settle either way.
            if time.monotonic() > deadline:
                raise DatabaseError(
                    f"The embedded PostgreSQL in {self.pg_dir} (pid {info.pid}) has been "
                    f"'{info.status or 'starting'}' for {_START_TIMEOUT_S} s. Server log "
                    f"{self.log_file}:\n{_tail(_read_tail(self.log_file))}"
                )
            time.sleep(0.1)

    def _run_as(self) -> _RunAs | None:
        """None if we are not root; else the owner of the cluster, or the service user."""
        euid = os.geteuid()
        owner = self.pg_dir.stat().st_uid if self.pg_dir.exists() else None
        if euid != 0:
            if owner is not None and owner != euid:
                raise DatabaseError(
                    f"The embedded cluster {self.pg_dir} belongs to {_user_name(owner)}, but "
                    f"the dispatcher runs as {_user_name(euid)}. Run it as that user (or root), "
                    "or choose another data directory."
                )
            return None
        if owner is not None and owner != 0:
            try:
                entry = pwd.getpwuid(owner)
                return _RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)
            except KeyError:
                return _RunAs(str(owner), owner, self.pg_dir.stat().st_gid)
        run_as = _service_user()
        if owner == 0:  # a directory we created as root earlier (e.g. init interrupted)
            _chown_tree(self.pg_dir, run_as)
        return run_as

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

    def _initdb(self, bins: PgBinaries, run_as: _RunAs | None) -> None:
        began = time.monotonic()
        self.init_marker.touch(mode=0o600)  # removed once the cluster is complete
        self.pg_dir.mkdir(mode=0o700, exist_ok=True)
        if run_as is not None:
            os.chown(self.pg_dir, run_as.uid, run_as.gid)
        password = secrets.token_urlsafe(24)
        # Saved before initdb: a crash between the two must not leave a cluster nobody can log into.
        _write_private(self.password_file, password + "\n")
        # initdb reads the password from a file the server user can open; it lives only
        # for this call and outside pg_dir, which initdb needs empty.
        fd, pwfile_name = tempfile.mkstemp(prefix=".pg-pwfile-", dir=self.data_dir)
        pwfile = Path(pwfile_name)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(password + "\n")
            if run_as is not None:
                os.chown(pwfile, run_as.uid, run_as.gid)
            argv = [
                str(bins.bin_dir / "initdb"),
                "-D",
                str(self.pg_dir),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
            ]
            if not self._durable:
                argv.append("--no-sync")
            result = _run(argv, run_as, timeout=120)
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise DatabaseError(
                f"initdb failed for {self.pg_dir} ({bins.bin_dir}):\n"
                f"{_tail(result.stderr or result.stdout)}"
            )
        settings = {
            **_BASE_SETTINGS,
            **(_DURABLE_SETTINGS if self._durable else _EPHEMERAL_SETTINGS),
        }
        block = "\n# --- written by dispatcher (embedded) ---\n" + "".join(
            f"{name} = {value}\n" for name, value in settings.items()
        )
        with (self.pg_dir / "postgresql.conf").open("a") as conf:
            conf.write(block)
        self.log_file.parent.mkdir(mode=0o700, exist_ok=True)
        if run_as is not None:
            os.chown(self.log_file.parent, run_as.uid, run_as.gid)
        self.init_marker.unlink()
        log.info(
            "db.embedded.initialized",
            data_dir=str(self.data_dir),
            version=bins.major,
            durable=self._durable,
            seconds=round(time.monotonic() - began, 3),
        )

    def _clear_stale_server(self) -> None:
        """After a crash: end orphaned backends, drop a postmaster.pid whose process is gone.

        postgres itself ignores a pid file whose pid is dead, but not one whose pid is a zombie
        or was reused, and it refuses to start while old backends still hold shared memory.
        """
        orphans = _postgres_pids_in(self.pg_dir)
        if orphans:
            deadline = time.monotonic() + 3.0  # backends exit by themselves once they notice
            while orphans and time.monotonic() < deadline:
                time.sleep(0.05)
                orphans = _postgres_pids_in(self.pg_dir)
            for pid in orphans:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if orphans:
                log.warning("db.embedded.orphans_killed", data_dir=str(self.data_dir), pids=orphans)
                _wait_gone(orphans, 5.0)
        pid_file = self.pg_dir / "postmaster.pid"
        info = _read_pid_file(self.pg_dir)
        if pid_file.exists():
            pid_file.unlink()
            for lock in self.pg_dir.glob(".s.PGSQL.*"):
                lock.unlink(missing_ok=True)
            log.warning(
                "db.embedded.stale_pid_removed",
                data_dir=str(self.data_dir),
                old_pid=info.pid if info is not None else None,
            )

    def _start_server(self, bins: PgBinaries, run_as: _RunAs | None) -> int:
        """pg_ctl start on a free loopback port; returns the postmaster pid."""
        self.log_file.parent.mkdir(mode=0o700, exist_ok=True)
        if run_as is not None:
            os.chown(self.log_file.parent, run_as.uid, run_as.gid)
        self._rotate_log()
        socket_dir_ok = len(str(self.pg_dir / ".s.PGSQL.65535").encode()) <= _SOCKET_PATH_MAX
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port = self._last_port() if attempt == 1 else _free_port()
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
            result = _run(argv, run_as, timeout=_START_TIMEOUT_S + 15, new_session=True)
            info = _read_pid_file(self.pg_dir)
            if (
                result.returncode == 0
                and info is not None
                and info.status == "ready"
                and _is_live_postgres(info.pid, self.pg_dir)
            ):
                self._port = port
                self.port_file.write_text(f"{port}\n")
                return info.pid
            server_log = _read_tail(self.log_file, log_offset)
            if "could not bind" in server_log and attempt < _PORT_ATTEMPTS:
                log.warning("db.embedded.port_taken", data_dir=str(self.data_dir), port=port)
                self._clear_stale_server()
                continue
            raise DatabaseError(
                f"The embedded PostgreSQL in {self.pg_dir} did not start "
                f"({bins.source} {bins.bin_dir}, PostgreSQL {bins.major}).\n"
                f"pg_ctl: {_tail(result.stderr or result.stdout, 5)}\n"
                f"Server log {self.log_file} (last lines):\n{_tail(server_log)}"
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _last_port(self) -> int:
        """The port of the last start if it is free again, else a new free one.

        Clients that outlive the server (a daemon riding out `db stop`) keep its URL, so the
        server comes back where they look for it unless something else took the port.
        """
        with contextlib.suppress(OSError, ValueError):
            last = int(self.port_file.read_text().strip())
            if _port_is_free(last):
                return last
            log.warning("db.embedded.port_changed", data_dir=str(self.data_dir), taken=last)
        return _free_port()

    def _rotate_log(self) -> None:
        """Keep one previous log: pg_ctl -l appends forever otherwise."""
        with contextlib.suppress(FileNotFoundError):
            if self.log_file.stat().st_size > _LOG_ROTATE_BYTES:
                self.log_file.replace(self.log_file.with_name(self.log_file.name + ".1"))
                log.info("db.embedded.log_rotated", log_file=str(self.log_file))

    def _ensure_database(self) -> bool:
        """Connect as the superuser; create database ``dispatcher`` if missing (True if so)."""
        password = self._read_password()
        port = self.port
        try:
            created = _run_coroutine(lambda: _ensure_database_async(port, password))
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
        if not _wait_gone([pid], _STOP_TIMEOUT_S):
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


# --- binaries ------------------------------------------------------------------------------------


def find_binaries(
    override: Path | None = None,
    *,
    cluster_major: str | None = None,
    run_as: _RunAs | None = None,
) -> PgBinaries:
    """The first usable server binaries: ``override`` only if given, else pgserver's bundled
    build, then initdb on PATH, then the newest /usr/lib/postgresql/*/bin.

    With ``cluster_major`` (an existing cluster) only that major version qualifies.
    """
    candidates = [("bin_dir argument", override)] if override is not None else _candidates()
    found: list[str] = []  # "16 (pgserver /...)" of usable dirs of the wrong version
    problems: list[str] = []
    for source, bin_dir in candidates:
        if not all(os.access(bin_dir / name, os.X_OK) for name in _REQUIRED):
            if source == "bin_dir argument":
                problems.append(f"{bin_dir} (bin_dir argument) lacks {', '.join(_REQUIRED)}")
            continue
        if run_as is not None:
            _ensure_traversable(bin_dir, run_as)
        try:
            major = _probe_major(bin_dir, run_as)
        except DatabaseError as exc:
            problems.append(str(exc))
            continue
        if cluster_major is not None and major != cluster_major:
            found.append(f"PostgreSQL {major} ({source} {bin_dir})")
            continue
        return PgBinaries(bin_dir=bin_dir, major=major, source=source)
    if cluster_major is not None and found:
        raise DatabaseError(
            f"The embedded cluster was created by PostgreSQL {cluster_major}, but only "
            f"{', '.join(found)} is available, which cannot open it. Install PostgreSQL "
            f"{cluster_major}'s server binaries, or dump the data with that version and move "
            "the cluster directory aside so a new one is created."
        )
    detail = ("; ".join(problems) + ". ") if problems else ""
    raise DatabaseError(
        "No usable PostgreSQL server binaries (initdb, pg_ctl, postgres) were found for the "
        f"embedded database. {detail}{_HOW_TO_FIX}"
    )


def _candidates() -> list[tuple[str, Path]]:
    seen: set[Path] = set()
    out: list[tuple[str, Path]] = []

    def add(source: str, path: Path | None) -> None:
        if path is None:
            return
        with contextlib.suppress(OSError):
            path = path.resolve()
        if path not in seen and path.is_dir():
            seen.add(path)
            out.append((source, path))

    add("pgserver", _pgserver_bin_dir())
    on_path = shutil.which("initdb")
    # Resolved, so Debian's /usr/local/bin or pg_wrapper symlinks lead to the real bin dir.
    add("PATH", Path(on_path).resolve().parent if on_path else None)
    system = Path("/usr/lib/postgresql")
    if system.is_dir():
        versions = [p for p in system.iterdir() if re.fullmatch(r"\d+(\.\d+)?", p.name)]
        for version_dir in sorted(versions, key=lambda p: _version_key(p.name), reverse=True):
            add("system", version_dir / "bin")
    return out


def _pgserver_bin_dir() -> Path | None:
    """pgserver's bundled bin dir (its ``_commands.POSTGRES_BIN_PATH``), found without importing
    pgserver: the import loads platformdirs/fasteners and runs code we do not need."""
    try:
        spec = importlib.util.find_spec("pgserver")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _probe_major(bin_dir: Path, run_as: _RunAs | None) -> str:
    """Major version of bin_dir/postgres, run as the server user to prove it can run it."""
    who = f" as user {run_as.name}" if run_as is not None else ""
    try:
        result = _run([str(bin_dir / "postgres"), "--version"], run_as, timeout=30)
    except OSError as exc:
        raise DatabaseError(f"cannot run {bin_dir / 'postgres'}{who}: {exc.strerror}") from None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", result.stdout)
    if result.returncode != 0 or match is None:
        raise DatabaseError(
            f"{bin_dir / 'postgres'} --version failed{who}: {_tail(result.stderr, 3)}"
        )
    major = int(match.group(1))
    return str(major) if major >= 10 else f"{major}.{match.group(2)}"


# --- root: an unprivileged account and a path it can walk ---------------------------------------


def _service_user() -> _RunAs:
    """dispatcher-pg, created once with useradd; ``nobody`` if that is not possible."""
    with contextlib.suppress(KeyError):
        entry = pwd.getpwnam(SERVICE_USER)
        return _RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)
    useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
    reason = "useradd not found"
    if useradd is not None:
        result = subprocess.run(
            [
                useradd,
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        with contextlib.suppress(KeyError):  # also covers a concurrent useradd that won
            entry = pwd.getpwnam(SERVICE_USER)
            if result.returncode == 0:
                log.info("db.embedded.user_created", user=SERVICE_USER, uid=entry.pw_uid)
            return _RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)
        reason = _tail(result.stderr, 2) or f"useradd exited {result.returncode}"
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        raise DatabaseError(
            "PostgreSQL refuses to run as root and no unprivileged user could be created "
            f"({reason}). Create the system user {SERVICE_USER}, run the dispatcher as a normal "
            "user, or set DISPATCHER_DATABASE_URL."
        ) from None
    log.warning("db.embedded.user_fallback", user="nobody", reason=reason)
    return _RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _ensure_traversable(path: Path, run_as: _RunAs) -> None:
    """Give others o+x (never r or w) on each directory from / to path that run_as cannot
    enter; pgserver does the same. Logged, since it changes permissions outside data_dir."""
    for directory in [*reversed(path.parents), path]:
        st = directory.stat()
        if st.st_uid == run_as.uid:
            needed = stat.S_IXUSR
        elif st.st_gid == run_as.gid:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if st.st_mode & needed:
            continue
        try:
            directory.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
        except OSError as exc:
            raise DatabaseError(
                f"The PostgreSQL server user {run_as.name} cannot enter {directory}, and "
                f"adding o+x failed ({exc.strerror}). Allow others to traverse it "
                f"(chmod o+x {directory}) or choose a data directory under a public path."
            ) from None
        log.warning("db.embedded.traverse_granted", path=str(directory), added="o+x")


def _chown_tree(root: Path, run_as: _RunAs) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chown(dirpath, run_as.uid, run_as.gid)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), run_as.uid, run_as.gid)


# --- processes -----------------------------------------------------------------------------------


def _run(
    argv: list[str],
    run_as: _RunAs | None,
    *,
    timeout: float,
    new_session: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool, as run_as if given, with libpq's PG* variables removed."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    identity: dict[str, Any] = {}
    if run_as is not None:
        identity = {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}
    try:
        return subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd="/",  # our cwd may be closed to the server user (e.g. /root)
            env=env,
            start_new_session=new_session,  # Ctrl-C in the CLI must not reach the server
            **identity,
        )
    except subprocess.TimeoutExpired:
        raise DatabaseError(f"{Path(argv[0]).name} did not finish within {timeout:.0f} s") from None
    except PermissionError as exc:
        raise DatabaseError(f"Cannot run {argv[0]}: {exc.strerror}") from None


def _read_pid_file(pg_dir: Path) -> _PidFile | None:
    try:
        lines = (pg_dir / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise DatabaseError(f"Cannot read {pg_dir / 'postmaster.pid'}: {exc.strerror}") from None
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        return None  # being written right now, or garbage; either way not a usable server
    port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
    status = lines[7].strip() if len(lines) > 7 else ""
    return _PidFile(pid=pid, port=port, status=status)


def _is_live_postgres(pid: int, pg_dir: Path) -> bool:
    """True if pid is a running (not zombie) postgres process of this pg_dir."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else (the server user)
    proc = Path("/proc") / str(pid)
    if not proc.is_dir():  # no procfs (macOS): existence is all we can check
        return True
    try:
        if _is_zombie(proc) or (proc / "comm").read_text().strip() != "postgres":
            return False
    except OSError:
        return False
    try:
        return Path(os.readlink(proc / "cwd")) == pg_dir
    except OSError:
        return True  # cwd hidden from us; comm matched


def _is_zombie(proc: Path) -> bool:
    stat_line = (proc / "stat").read_text()
    return stat_line[stat_line.rfind(")") + 2 :][:1] in ("Z", "X")


def _postgres_pids_in(pg_dir: Path) -> list[int]:
    """Live postgres processes whose cwd is pg_dir (every server process chdirs there)."""
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return []
    pids: list[int] = []
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres" or _is_zombie(entry):
                continue
            if Path(os.readlink(entry / "cwd")) != pg_dir:
                continue
        except OSError:
            continue
        pids.append(int(entry.name))
    return pids


def _wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if _pid_alive(pid)]
        if not alive:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc") / str(pid)
    try:
        return not _is_zombie(proc)
    except OSError:
        return proc.exists()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    """Can a server listen on this port? (SO_REUSEADDR as postgres: TIME_WAIT does not count.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


# --- database --------------------------------------------------------------------------------


async def _ensure_database_async(port: int, password: str) -> bool:
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
    except asyncpg.DuplicateDatabaseError:
        return False
    finally:
        await conn.close()
    return True


def _run_coroutine(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine from sync code, even if this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


# --- small helpers -------------------------------------------------------------------------------


def _write_private(path: Path, text: str) -> None:
    """Write atomically, mode 0600, owned by the calling user."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _read_tail(path: Path, offset: int = 0, limit: int = 64 * 1024) -> str:
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(offset, size - limit))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
