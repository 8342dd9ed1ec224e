"""The keys applications use at the doors: an id and a secret, limited to senders and a priority.

A key's secret is never stored. It is derived from a master key kept outside Postgres
(``HMAC-SHA256(master, id)``): Postgres keeps its SHA-256 to check a password-style login
(SMTP AUTH, HTTP Basic), and the SES-compatible endpoint re-derives the secret to recompute an
AWS Signature V4, which needs the secret itself. A database dump alone lets nobody in.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

from dispatcher.domain.validate import parse_mailbox
from dispatcher.errors import ConfigError, InputError

__all__ = [
    "ApiKey",
    "KeyStore",
    "MasterKey",
    "check_sender_pattern",
    "master_key_path",
]

ID_PREFIX = "DK"
ID_CHARS = 18  # base32: 90 bits; with the prefix 20 characters, like an AWS access key id
SECRET_CHARS = 40  # like an AWS secret access key
MASTER_BYTES = 32


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as stored: what it may do. `senders` empty: any sender; `max_priority` None: any."""

    id: str
    name: str
    senders: tuple[str, ...] = ()
    max_priority: int | None = None
    created_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows_sender(self, address: str) -> bool:
        """Whether this key may send as `address` (a mailbox, display name allowed)."""
        if not self.senders:
            return True
        try:
            bare = parse_mailbox("from", address).address.lower()
        except InputError:
            return False
        return any(fnmatch.fnmatchcase(bare, pattern) for pattern in self.senders)

    def allows_priority(self, priority: int) -> bool:
        return self.max_priority is None or priority <= self.max_priority


def check_sender_pattern(text: str) -> str:
    """A sender pattern in stored form: `*@shop.example`, `news@shop.example`, or a bare domain
    (`shop.example`, meaning any address at it); InputError says what is accepted."""
    pattern = text.strip().lower()
    if not pattern or any(c.isspace() or ord(c) < 32 for c in pattern):
        raise InputError(
            f"--from {text!r} is not a sender pattern; give e.g. '*@shop.example', "
            "'news@shop.example' or 'shop.example'"
        )
    if "@" not in pattern:
        pattern = f"*@{pattern}"
    local, _, domain = pattern.rpartition("@")
    if not local or not domain or "@" in local or "*" in domain.lstrip("*."):
        raise InputError(
            f"--from {text!r} is not a sender pattern; give e.g. '*@shop.example', "
            "'news@shop.example' or 'shop.example' (a * may stand for the local part or "
            "start the domain, as in '*@*.shop.example')"
        )
    return pattern


def master_key_path(master_file: Path | None, data_dir: Path) -> Path:
    """Where the master key lives: keys.master_file, else keys.master under the data dir."""
    return master_file if master_file is not None else data_dir / "keys.master"


class MasterKey:
    """The master key every key's secret is derived from (a file, 0600, made on first use)."""

    __slots__ = ("_key", "path")

    def __init__(self, path: Path, key: bytes) -> None:
        self.path = path
        self._key = key

    @classmethod
    def load(cls, path: Path, *, create: bool) -> MasterKey:
        """Read the file; make it first when `create` and it is not there."""
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            if not create:
                raise ConfigError(
                    f"keys: the master key file {path} does not exist; create the keys with "
                    "`dispatcher keys create` on this host, or copy the file from the host "
                    "that did (or point keys.master_file at it)"
                ) from None
            return cls._create(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"keys: cannot read the master key file {path}: {exc}") from None
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(key) != MASTER_BYTES:
            raise ConfigError(
                f"keys: {path} is not a master key ({MASTER_BYTES * 2} hex digits); restore "
                "the original file (every key's secret depends on it)"
            )
        return cls(path, key)

    @classmethod
    def _create(cls, path: Path) -> MasterKey:
        key = secrets.token_bytes(MASTER_BYTES)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use that one
            return cls.load(path, create=False)
        except OSError as exc:
            raise ConfigError(f"keys: cannot create the master key file {path}: {exc}") from None
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(key.hex() + "\n")
        return cls(path, key)

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for one other use (e.g. unsubscribe tokens), never a key id's secret."""
        # Key ids are "DK" + base32, so a purpose with a ':' can never collide with one.
        return hmac.new(self._key, f"purpose:{purpose}".encode(), hashlib.sha256).digest()

    def secret_for(self, key_id: str) -> str:
        """The key's secret: 40 characters of [A-Za-z0-9_-]."""
        digest = hmac.new(self._key, key_id.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii")[:SECRET_CHARS]


def _sha256(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


def _new_id() -> str:
    raw = base64.b32encode(secrets.token_bytes(15)).decode("ascii")
    return ID_PREFIX + raw[:ID_CHARS]


def new_key_id(master: MasterKey) -> str:
    """A fresh key id whose secret does not start with "-", which command-line tools such as
    swaks would take for one of their options (existing keys keep their secrets)."""
    while (key_id := _new_id()) and master.secret_for(key_id).startswith("-"):
        pass
    return key_id


def _key_of(row: asyncpg.Record) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        senders=tuple(row["senders"]),
        max_priority=row["max_priority"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


_COLUMNS = "id, name, senders, max_priority, created_at, revoked_at"


class KeyStore:
    """Keys in Postgres (dispatcher.api_keys)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(
        self,
        master: MasterKey,
        name: str,
        *,
        senders: Sequence[str] = (),
        max_priority: int | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once: only its hash is stored)."""
        if not name.strip() or len(name) > 200 or any(ord(c) < 32 for c in name):
            raise InputError("a key's name is 1 to 200 printable characters, e.g. shop-web")
        patterns = tuple(dict.fromkeys(check_sender_pattern(s) for s in senders))
        if max_priority is not None and not -32768 <= max_priority <= 32767:
            raise InputError(f"--max-priority must be between -32768 and 32767, got {max_priority}")
        key_id = new_key_id(master)
        secret = master.secret_for(key_id)
        row = await self._pool.fetchrow(
            f"INSERT INTO dispatcher.api_keys (id, name, secret_sha256, senders, max_priority) "
            f"VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}",
            key_id,
            name.strip(),
            _sha256(secret),
            list(patterns),
            max_priority,
        )
        return _key_of(row), secret

    async def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM dispatcher.api_keys "
            "WHERE $1 OR revoked_at IS NULL ORDER BY created_at, id",
            include_revoked,
        )
        return [_key_of(r) for r in rows]

    async def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke the key (at once, for every door); None if there is no such key."""
        row = await self._pool.fetchrow(
            f"UPDATE dispatcher.api_keys SET revoked_at = coalesce(revoked_at, now()) "
            f"WHERE id = $1 RETURNING {_COLUMNS}",
            key_id,
        )
        return None if row is None else _key_of(row)

    async def get(self, key_id: str) -> ApiKey | None:
        """The active key with this id, or None (unknown or revoked)."""
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM dispatcher.api_keys WHERE id = $1 AND revoked_at IS NULL",
            key_id,
        )
        return None if row is None else _key_of(row)

    async def authenticate(self, key_id: str, secret: str) -> ApiKey | None:
        """The active key if `secret` is its secret, else None (compared in constant time)."""
        if len(key_id) > 64 or len(secret) > 256:
            return None
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS}, secret_sha256 FROM dispatcher.api_keys "
            "WHERE id = $1 AND revoked_at IS NULL",
            key_id,
        )
        given = _sha256(secret)
        if row is None:
            hmac.compare_digest(given, given)  # the same work for an unknown id
            return None
        if not hmac.compare_digest(given, bytes(row["secret_sha256"])):
            return None
        return _key_of(row)
