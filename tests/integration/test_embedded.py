"""The embedded PostgreSQL cluster, against real server binaries (pgserver's or the system's)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import psutil
import pytest

from dispatcher.db.embedded import EmbeddedPostgres, temporary_cluster
from dispatcher.db.pg_binaries import SERVICE_USER, find_binaries
from dispatcher.errors import DatabaseError
from tests.support.pg import server_dir

REPO = Path(__file__).resolve().parents[2]


def postmasters(pg_dir: Path) -> list[int]:
    """Live postgres processes serving pg_dir whose parent is not one of them."""
    procs: dict[int, int] = {}
    for proc in psutil.process_iter(["name", "ppid"]):
        try:
            if proc.info["name"] != "postgres" or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if Path(proc.cwd()) == pg_dir:
                procs[proc.pid] = proc.info["ppid"]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return [pid for pid, ppid in procs.items() if ppid not in procs]


def force_stop(data_dir: Path) -> None:
    """Finalizer: stop politely, then kill whatever still runs on the cluster."""
    pg_dir = data_dir.resolve() / "pg"
    if pg_dir.is_dir():
        with contextlib.suppress(DatabaseError):
            EmbeddedPostgres(data_dir).stop()
    for pid in postmasters(pg_dir):
        os.kill(pid, signal.SIGKILL)


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


async def query(dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with server_dir() as base:
        path = base / "data"
        yield path
        force_stop(path)


@pytest.fixture(scope="module")
def shared() -> Iterator[EmbeddedPostgres]:
    """One durable cluster for the tests that stop, kill and reuse it."""
    with server_dir() as base:
        path = base / "data"
        try:
            cluster = EmbeddedPostgres(path)
            cluster.start()
            yield cluster
        finally:
            force_stop(path)


async def test_start_gives_a_working_private_server(
    shared: EmbeddedPostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = await shared.open()  # reuse of the fixture's server

    assert re.fullmatch(r"postgresql://dispatcher:[^@]+@127\.0\.0\.1:\d+/dispatcher", dsn)
    assert dsn == shared.dsn
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT current_user, current_database(), host(inet_server_addr()),"
            " current_setting('fsync') AS fsync,"
            " current_setting('synchronous_commit') AS sync,"
            " current_setting('max_connections') AS max_conn,"
            " current_setting('listen_addresses') AS listen"
        )
    finally:
        await conn.close()
    assert tuple(row) == ("dispatcher", "dispatcher", "127.0.0.1", "on", "on", "200", "127.0.0.1")

    password = shared.password_file.read_text().strip()
    assert password in dsn
    assert password not in capsys.readouterr().out  # never logged
    st = shared.password_file.stat()
    assert (st.st_mode & 0o777, st.st_uid) == (0o600, os.geteuid())
    if os.geteuid() == 0:  # postgres refuses root: the cluster belongs to the service user
        assert shared.pg_dir.owner() == SERVICE_USER
    assert shared.log_file.is_file()


async def test_second_instance_reuses_the_running_server(shared: EmbeddedPostgres) -> None:
    before = shared.status()

    other = EmbeddedPostgres(shared.data_dir)
    dsn = await other.open()

    assert dsn == shared.dsn
    assert other.port == before.port
    assert postmasters(shared.pg_dir) == [before.pid]
    assert await query(dsn, "SELECT 1") == 1


async def test_stop_then_start_keeps_data(shared: EmbeddedPostgres) -> None:
    await query(shared.dsn, "CREATE TABLE kept AS SELECT 'hello'::text AS v")

    await asyncio.to_thread(shared.stop)
    assert not shared.is_running()
    assert postmasters(shared.pg_dir) == []
    await asyncio.to_thread(shared.stop)  # stopping a stopped server is a no-op

    dsn = await shared.open()
    assert shared.is_running()
    assert await query(dsn, "SELECT v FROM kept") == "hello"


async def test_a_restart_keeps_the_port_unless_something_else_took_it(
    shared: EmbeddedPostgres,
) -> None:
    port = shared.port
    await asyncio.to_thread(shared.stop)
    await shared.open()
    assert shared.port == port  # where clients that rode out the stop look for it

    await asyncio.to_thread(shared.stop)
    with socket.create_server(("127.0.0.1", port)):  # someone else listens there now
        dsn = await shared.open()
    assert shared.port != port
    assert await query(dsn, "SELECT 1") == 1


async def test_sigkilled_postmaster_is_restarted_and_committed_data_survives(
    shared: EmbeddedPostgres,
) -> None:
    await query(shared.dsn, "CREATE TABLE crash AS SELECT 42 AS v")
    old = shared.status()
    assert old.pid is not None
    os.kill(old.pid, signal.SIGKILL)
    assert wait_for(lambda: not shared.is_running(), timeout=5)
    assert (shared.pg_dir / "postmaster.pid").exists()  # stale, left behind by the crash

    dsn = await EmbeddedPostgres(shared.data_dir).open()

    new = shared.status()
    assert new.running and new.pid != old.pid
    assert postmasters(shared.pg_dir) == [new.pid]
    assert await query(dsn, "SELECT v FROM crash") == 42


async def test_open_recreates_a_dropped_database(shared: EmbeddedPostgres) -> None:
    """The daemon's start (open) checks the database on its own loop and re-creates it."""
    await shared.open()  # the server the earlier tests may have stopped
    postgres_db = shared.dsn.rsplit("/", 1)[0] + "/postgres"
    await query(postgres_db, 'DROP DATABASE "dispatcher" WITH (FORCE)')

    dsn = await EmbeddedPostgres(shared.data_dir).open()

    assert await query(dsn, "SELECT current_database()") == "dispatcher"


def test_password_file_missing_says_what_to_do(shared: EmbeddedPostgres) -> None:
    hidden = shared.password_file.with_name("pg-password.hidden")
    shared.password_file.rename(hidden)
    try:
        with pytest.raises(DatabaseError, match="missing or empty") as err:
            EmbeddedPostgres(shared.data_dir).start()
        assert str(shared.password_file) in str(err.value)
    finally:
        hidden.rename(shared.password_file)


def test_concurrent_starts_end_with_one_server(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three processes and two threads start the same fresh data dir at once."""
    script = (
        "import sys; from pathlib import Path;"
        "from dispatcher.db.embedded import EmbeddedPostgres;"
        "print(EmbeddedPostgres(Path(sys.argv[1])).start())"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    thread_dsns: list[str] = []
    threads = [
        threading.Thread(target=lambda: thread_dsns.append(EmbeddedPostgres(data_dir).start()))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    outputs = [proc.communicate(timeout=60) for proc in procs]
    for thread in threads:
        thread.join(timeout=60)

    assert [proc.returncode for proc in procs] == [0, 0, 0], [err for _, err in outputs]
    dsns = {out.strip().splitlines()[-1] for out, _ in outputs} | set(thread_dsns)
    assert len(thread_dsns) == 2
    assert len(dsns) == 1
    assert len(postmasters(data_dir / "pg")) == 1
    logs = "".join(out for out, _ in outputs) + capsys.readouterr().out
    assert (logs.count("db.embedded.started"), logs.count("db.embedded.reused")) == (1, 4)


def test_missing_binaries_say_what_to_install(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    with pytest.raises(DatabaseError) as err:
        EmbeddedPostgres(data_dir, bin_dir=empty).start()

    message = str(err.value)
    assert str(empty) in message
    assert "pgserver" in message
    assert "PostgreSQL's server package" in message
    assert "DISPATCHER_DATABASE_URL" in message
    assert not (data_dir / "pg" / "PG_VERSION").exists()


def test_failed_start_shows_the_server_log(data_dir: Path) -> None:
    cluster = EmbeddedPostgres(data_dir, durable=False)
    cluster.start()
    cluster.stop()
    with (cluster.pg_dir / "postgresql.conf").open("a") as conf:
        conf.write("shared_buffers = 'lots'\n")

    with pytest.raises(DatabaseError, match="did not start") as err:
        cluster.start()

    assert 'invalid value for parameter "shared_buffers"' in str(err.value)
    assert not cluster.is_running()


def test_data_dir_that_cannot_be_created_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    with pytest.raises(DatabaseError, match="Cannot create the data directory"):
        EmbeddedPostgres(blocker / "data").start()


def test_foreign_directory_in_place_of_cluster_is_not_touched(data_dir: Path) -> None:
    (data_dir / "pg").mkdir(parents=True)
    (data_dir / "pg" / "notes.txt").write_text("mine")

    with pytest.raises(DatabaseError, match="holds no PostgreSQL cluster"):
        EmbeddedPostgres(data_dir).start()
    assert (data_dir / "pg" / "notes.txt").read_text() == "mine"


def _other_major_bin_dir() -> Path | None:
    bundled = find_binaries()
    for bin_dir in sorted(Path("/usr/lib/postgresql").glob("*/bin")):
        try:
            other = find_binaries(bin_dir)
        except DatabaseError:
            continue
        if other.major != bundled.major:
            return bin_dir
    return None


def test_cluster_of_another_major_version(data_dir: Path) -> None:
    old_bin = _other_major_bin_dir()
    if old_bin is None:
        pytest.skip("needs server binaries of a second major version in /usr/lib/postgresql")
    old = EmbeddedPostgres(data_dir, bin_dir=old_bin, durable=False)
    old.start()
    old.stop()
    old_major = find_binaries(old_bin).major
    new_bin = find_binaries().bin_dir

    with pytest.raises(DatabaseError) as err:
        EmbeddedPostgres(data_dir, bin_dir=new_bin).start()
    assert f"created by PostgreSQL {old_major}" in str(err.value)
    assert f"Install PostgreSQL {old_major}" in str(err.value)

    # Without an override the search picks the binaries that match the cluster.
    auto = EmbeddedPostgres(data_dir)
    auto.start()
    assert find_binaries(cluster_major=old_major).bin_dir == old_bin.resolve()
    assert auto.is_running()


async def test_temporary_cluster_is_cheap_and_cleans_up(tmp_path: Path) -> None:
    began = time.monotonic()
    with temporary_cluster(tmp_path) as cluster:
        elapsed = time.monotonic() - began
        assert await query(cluster.dsn, "SHOW fsync") == "off"
        root, pg_dir = cluster.data_dir, cluster.pg_dir
        assert len(postmasters(pg_dir)) == 1
    assert elapsed < 10
    assert not root.exists()
    assert postmasters(pg_dir) == []


async def test_interrupted_initdb_is_redone(data_dir: Path) -> None:
    """A crash during initdb leaves a half-built pg/ and the marker; start() rebuilds it."""
    (data_dir / "pg" / "base").mkdir(parents=True)
    (data_dir / "pg" / "PG_VERSION").write_text("16\n")
    (data_dir / "pg.init-incomplete").touch()
    cluster = EmbeddedPostgres(data_dir, durable=False)

    dsn = await cluster.open()

    assert await query(dsn, "SELECT current_database()") == "dispatcher"
    assert not cluster.init_marker.exists()
