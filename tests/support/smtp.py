"""SMTP submission for tests: a door served in this event loop on a test database, keys made as
`dispatcher keys create` makes them, and smtplib clients (run in a thread: smtplib blocks)."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import make_msgid
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

from dispatcher.config import Config
from dispatcher.doors.keys import ApiKey, KeyStore, MasterKey
from dispatcher.doors.smtp import serve_smtp
from dispatcher.doors.tls import SELF_SIGNED_NAME


@dataclass(frozen=True, slots=True)
class Door:
    """A running SMTP door: its address, the CA file to pin, and the pool under it."""

    host: str
    port: int
    cafile: Path
    pool: asyncpg.Pool
    keys: KeyStore
    master: MasterKey

    async def key(self, name: str, *senders: str) -> tuple[ApiKey, str]:
        return await self.keys.create(self.master, name, senders=senders)


@asynccontextmanager
async def smtp_door(dsn: str, data_dir: Path, **smtp: object) -> AsyncIterator[Door]:
    """`[smtp]` served in this loop on port 0, against `dsn`; `smtp` overrides its settings."""
    base = Config()
    cfg = replace(
        base,
        database=replace(base.database, data_dir=data_dir),
        smtp=replace(base.smtp, enabled=True, listen_port=0, **smtp),  # type: ignore[arg-type]
    )
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    try:
        keys = KeyStore(pool)
        master = MasterKey.load(data_dir / "keys.master", create=True)
        async with serve_smtp(cfg, pool, keys) as (host, port):
            yield Door(host, port, data_dir / SELF_SIGNED_NAME, pool, keys, master)
    finally:
        await pool.close()


def client(host: str, port: int, cafile: Path, user: str | None, password: str) -> smtplib.SMTP:
    """An smtplib session over STARTTLS that checks the certificate, logged in when `user`."""
    smtp = smtplib.SMTP(host, port, timeout=30)
    try:
        smtp.starttls(context=ssl.create_default_context(cafile=str(cafile)))
        if user is not None:
            smtp.login(user, password)
    except BaseException:
        smtp.close()
        raise
    return smtp


def mail(sender: str, to: str, subject: str, body: str, *, attach: bytes | None = None) -> bytes:
    """A message as an application builds it with `email` (CRLF, as it goes over SMTP)."""
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg.set_content(body)
    if attach is not None:
        msg.add_attachment(attach, maintype="application", subtype="octet-stream", filename="a.bin")
    return msg.as_bytes()
