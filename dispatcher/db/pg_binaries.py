"""The embedded Postgres's server binaries: finding initdb/pg_ctl/postgres of the right version,
and running them (as an unprivileged service user when the dispatcher runs as root)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from dispatcher.db.pg_host import tail, user_name
from dispatcher.errors import DatabaseError

__all__ = [
    "SERVICE_USER",
    "PgBinaries",
    "RunAs",
    "chown_tree",
    "ensure_traversable",
    "find_binaries",
    "run_tool",
    "server_user",
    "service_user",
]

log = structlog.get_logger()

SERVICE_USER = "dispatcher-pg"
"""System user the server runs as when the dispatcher runs as root (postgres refuses root)."""

_REQUIRED = ("initdb", "pg_ctl", "postgres")
_HOW_TO_FIX = (
    "Install the Python dependency 'pgserver' (pip install pgserver, it bundles PostgreSQL), "
    "or PostgreSQL's server package (e.g. apt install postgresql), "
    "or set DISPATCHER_DATABASE_URL to use an existing PostgreSQL server."
)


@dataclass(frozen=True, slots=True)
class PgBinaries:
    """A directory holding initdb, pg_ctl and postgres of one major version."""

    bin_dir: Path
    major: str
    source: str  # "bin_dir argument", "pgserver", "PATH" or "system"


@dataclass(frozen=True, slots=True)
class RunAs:
    """The unprivileged account the server runs as when we are root."""

    name: str
    uid: int
    gid: int


def find_binaries(
    override: Path | None = None,
    *,
    cluster_major: str | None = None,
    run_as: RunAs | None = None,
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
            ensure_traversable(bin_dir, run_as)
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


def _probe_major(bin_dir: Path, run_as: RunAs | None) -> str:
    """Major version of bin_dir/postgres, run as the server user to prove it can run it."""
    who = f" as user {run_as.name}" if run_as is not None else ""
    try:
        result = run_tool([str(bin_dir / "postgres"), "--version"], run_as, timeout=30)
    except OSError as exc:
        raise DatabaseError(f"cannot run {bin_dir / 'postgres'}{who}: {exc.strerror}") from None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", result.stdout)
    if result.returncode != 0 or match is None:
        raise DatabaseError(
            f"{bin_dir / 'postgres'} --version failed{who}: {tail(result.stderr, 3)}"
        )
    major = int(match.group(1))
    return str(major) if major >= 10 else f"{major}.{match.group(2)}"


# --- root: an unprivileged account and a path it can walk ---------------------------------------


def server_user(pg_dir: Path) -> RunAs | None:
    """Who runs the server of ``pg_dir``: None (us) unless we are root; else the owner of the
    cluster, or the service user."""
    euid = os.geteuid()
    owner = pg_dir.stat().st_uid if pg_dir.exists() else None
    if euid != 0:
        if owner is not None and owner != euid:
            raise DatabaseError(
                f"The embedded cluster {pg_dir} belongs to {user_name(owner)}, but "
                f"the dispatcher runs as {user_name(euid)}. Run it as that user (or root), "
                "or choose another data directory."
            )
        return None
    if owner is not None and owner != 0:
        try:
            entry = pwd.getpwuid(owner)
            return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)
        except KeyError:
            return RunAs(str(owner), owner, pg_dir.stat().st_gid)
    run_as = service_user()
    if owner == 0:  # a directory we created as root earlier (e.g. init interrupted)
        chown_tree(pg_dir, run_as)
    return run_as


def service_user() -> RunAs:
    """dispatcher-pg, created once with useradd; ``nobody`` if that is not possible."""
    with contextlib.suppress(KeyError):
        entry = pwd.getpwnam(SERVICE_USER)
        return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)
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
            return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)
        reason = tail(result.stderr, 2) or f"useradd exited {result.returncode}"
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        raise DatabaseError(
            "PostgreSQL refuses to run as root and no unprivileged user could be created "
            f"({reason}). Create the system user {SERVICE_USER}, run the dispatcher as a normal "
            "user, or set DISPATCHER_DATABASE_URL."
        ) from None
    log.warning("db.embedded.user_fallback", user="nobody", reason=reason)
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)


def ensure_traversable(path: Path, run_as: RunAs) -> None:
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


def chown_tree(root: Path, run_as: RunAs) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chown(dirpath, run_as.uid, run_as.gid)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), run_as.uid, run_as.gid)


# --- running a tool ------------------------------------------------------------------------------


def run_tool(
    argv: list[str],
    run_as: RunAs | None,
    *,
    timeout: float,
    new_session: bool = False,
    stdin_text: str = "",
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool, as run_as if given, with libpq's PG* variables removed."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    identity: dict[str, Any] = {}
    if run_as is not None:
        identity = {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}
    try:
        return subprocess.run(
            argv,
            input=stdin_text,  # "" is an empty stdin, like /dev/null
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
