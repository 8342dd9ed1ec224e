"""What the operating system says about an embedded cluster: its postmaster.pid, live server
processes, free ports, the data dir's lock, and small private-file helpers."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from dispatcher.errors import DatabaseError

__all__ = [
    "HOST",
    "PidFile",
    "clear_stale_server",
    "free_port",
    "is_live_postgres",
    "locked",
    "port_is_free",
    "read_pid_file",
    "read_tail",
    "tail",
    "user_name",
    "wait_gone",
    "write_private",
]

log = structlog.get_logger()

HOST = "127.0.0.1"
_LOCK_TIMEOUT_S = 180.0  # longer than one full start, so a waiter normally gets its turn


@dataclass(frozen=True, slots=True)
class PidFile:
    """The fields of PGDATA/postmaster.pid we use (line 1 pid, line 4 port, line 8 status)."""

    pid: int
    port: int | None
    status: str


@contextlib.contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Exclusive flock on ``lock_file``: one process at a time inits, starts or stops."""
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise DatabaseError(
            f"Cannot open the lock file {lock_file}: {exc.strerror}. Choose a writable "
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
                        f"Another process has held {lock_file} for more than "
                        f"{_LOCK_TIMEOUT_S:.0f} s; is a dispatcher stuck starting the "
                        "embedded database?"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def clear_stale_server(pg_dir: Path, data_dir: Path) -> None:
    """After a crash: end orphaned backends, drop a postmaster.pid whose process is gone.

    postgres itself ignores a pid file whose pid is dead, but not one whose pid is a zombie
    or was reused, and it refuses to start while old backends still hold shared memory.
    """
    orphans = postgres_pids_in(pg_dir)
    if orphans:
        deadline = time.monotonic() + 3.0  # backends exit by themselves once they notice
        while orphans and time.monotonic() < deadline:
            time.sleep(0.05)
            orphans = postgres_pids_in(pg_dir)
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if orphans:
            log.warning("db.embedded.orphans_killed", data_dir=str(data_dir), pids=orphans)
            wait_gone(orphans, 5.0)
    pid_file = pg_dir / "postmaster.pid"
    info = read_pid_file(pg_dir)
    if pid_file.exists():
        pid_file.unlink()
        for lock in pg_dir.glob(".s.PGSQL.*"):
            lock.unlink(missing_ok=True)
        log.warning(
            "db.embedded.stale_pid_removed",
            data_dir=str(data_dir),
            old_pid=info.pid if info is not None else None,
        )


def read_pid_file(pg_dir: Path) -> PidFile | None:
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
    return PidFile(pid=pid, port=port, status=status)


def is_live_postgres(pid: int, pg_dir: Path) -> bool:
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


def postgres_pids_in(pg_dir: Path) -> list[int]:
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


def wait_gone(pids: list[int], timeout: float) -> bool:
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Can a server listen on this port? (SO_REUSEADDR as postgres: TIME_WAIT does not count.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


# --- small helpers -------------------------------------------------------------------------------


def write_private(path: Path, text: str) -> None:
    """Write atomically, mode 0600, owned by the calling user."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_tail(path: Path, offset: int = 0, limit: int = 64 * 1024) -> str:
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(offset, size - limit))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
