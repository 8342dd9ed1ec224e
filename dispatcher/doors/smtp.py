"""SMTP submission (`[smtp]`), on aiosmtpd: STARTTLS, AUTH PLAIN/LOGIN with a key (id as the
user name, secret as the password), then each message queued through `intake.accept` as SES Raw
content, byte for byte, to the envelope's recipients. `250` only after the commit.

Sessions are bounded by accepting connections ourselves: at `max_sessions` open sessions this
process stops calling accept(), so more clients wait in the listen backlog (or are served by
another process of `run --processes`, which shares the socket)."""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import hashlib
import ipaddress
import logging
import socket
import time
import warnings
from base64 import b64decode
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, AnyStr

import asyncpg  # type: ignore[import-untyped]
import structlog
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session, _Missing

from dispatcher.config import Config
from dispatcher.doors import sockets
from dispatcher.doors.intake import ACQUIRE_TIMEOUT, Forbidden, Unavailable, accept, is_unavailable
from dispatcher.doors.keys import ApiKey, KeyStore
from dispatcher.doors.smtp_rules import (
    header_sender_refusal,
    mail_from_refusal,
    rcpt_refusal,
    reply,
    submission,
)
from dispatcher.doors.tls import ServerCert, server_cert
from dispatcher.errors import InputError

__all__ = ["SmtpDoor", "serve_smtp"]

log = structlog.get_logger()

HANDSHAKE_TIMEOUT = 30.0  # seconds for an implicit-TLS client to finish its handshake
COMMAND_TIMEOUT = 300.0  # seconds a session may stay silent (RFC 5321 4.5.3.2's minimum)
SHUTDOWN_GRACE = 10.0  # seconds a stopping door lets messages being committed get their reply
KNOWN_KEYS = 1000  # recent logins remembered to let AUTH through while Postgres is down
KNOWN_FOR = 3600.0  # seconds such a login is trusted without Postgres
UNAVAILABLE = reply(451, "4.3.0", "the queue is unreachable (database down); try again later")
NO_AUTH = reply(530, "5.7.0", "authentication required: AUTH with a key's id and secret")
INTERNAL = reply(451, "4.3.0", "internal error, nothing was queued; try again later")


def _loopback(peer: Any) -> bool:
    try:
        return ipaddress.ip_address(str(peer[0]).split("%")[0]).is_loopback
    except (ValueError, TypeError, IndexError):
        return False


class SmtpDoor:
    """The aiosmtpd handler: authenticates keys and turns each envelope into a queued message."""

    def __init__(self, pool: asyncpg.Pool, keys: KeyStore) -> None:
        self._pool = pool
        self._keys = keys
        # (key id, SHA-256 of the secret) -> (key, when): logins that succeeded recently, so a
        # client reconnecting during an outage gets `451` at DATA (retry) rather than a login
        # failure. DATA reads the key again before queuing, so a revoked key queues nothing.
        self._known: OrderedDict[tuple[str, bytes], tuple[ApiKey, float]] = OrderedDict()
        self._committing = 0  # DATA commands between `accept` and their reply
        self._idle = asyncio.Event()
        self._idle.set()

    async def settled(self, limit: float) -> None:
        """Wait (up to `limit` s) until no message is being committed: at shutdown, a client
        then gets the `250` of what was committed instead of a dropped connection."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), limit)

    # --- AUTH ------------------------------------------------------------------------------

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        """RFC 4616: `\\0user\\0password`, in the command or after an empty challenge."""
        blob = await self._initial_or_challenge(server, args, "")
        if blob is None:
            return AuthResult(success=False, handled=True)
        parts = blob.split(b"\0")
        if len(parts) != 3:
            await server.push("501 5.5.2 AUTH PLAIN takes base64 of authzid NUL user NUL password")
            return AuthResult(success=False, handled=True)
        return await self._login(server, parts[1], parts[2])

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        """The user name (in the command or asked for), then the password."""
        user = await self._initial_or_challenge(server, args, "Username:")
        if user is None:
            return AuthResult(success=False, handled=True)
        password = await server.challenge_auth("Password:")
        if password is MISSING or not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        return await self._login(server, user, password)

    async def _initial_or_challenge(
        self, server: SMTP, args: list[str], challenge: str
    ) -> bytes | None:
        if len(args) > 1:
            if args[1] == "=":  # RFC 4954: an empty initial response
                return b""
            try:
                return b64decode(args[1].encode("ascii", "replace"), validate=True)
            except (binascii.Error, ValueError):
                await server.push("501 5.5.2 the AUTH argument is not base64")
                return None
        answer = await server.challenge_auth(challenge)
        return answer if isinstance(answer, bytes) else None

    async def _login(self, server: SMTP, user: bytes, password: bytes) -> AuthResult:
        key_id = user.decode("utf-8", "replace").strip()
        secret = password.decode("utf-8", "replace")
        known = (key_id, hashlib.sha256(password).digest())
        try:
            async with asyncio.timeout(ACQUIRE_TIMEOUT):
                key = await self._keys.authenticate(key_id, secret)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            cached = self._known.get(known)
            if cached is not None and time.monotonic() - cached[1] < KNOWN_FOR:
                return AuthResult(success=True, auth_data=cached[0])
            log.warning("smtp.auth_unavailable", key_id=key_id[:64], error=str(exc))
            await server.push(
                reply(454, "4.7.0", "temporary authentication failure (database down); retry")
            )
            return AuthResult(success=False, handled=True)
        if key is None:
            log.info(
                "smtp.auth_failed",
                key_id=key_id[:64],
                peer=str(server.session.peer if server.session else None),
            )
            await server.push(
                reply(535, "5.7.8", "authentication failed: give a key's id and its secret")
            )
            return AuthResult(success=False, handled=True)
        self._known[known] = (key, time.monotonic())
        self._known.move_to_end(known)
        while len(self._known) > KNOWN_KEYS:
            self._known.popitem(last=False)
        return AuthResult(success=True, auth_data=key)

    # --- the envelope ----------------------------------------------------------------------

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        key = session.auth_data
        if not isinstance(key, ApiKey):  # aiosmtpd's auth_required answers before this
            return NO_AUTH
        refusal = mail_from_refusal(key, address)
        if refusal is not None:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = rcpt_refusal(len(envelope.rcpt_tos), address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        key = session.auth_data
        if not isinstance(key, ApiKey):
            return NO_AUTH
        raw = envelope.original_content
        mail_from = envelope.mail_from
        if not isinstance(raw, bytes) or mail_from is None:
            return INTERNAL
        try:  # the key as it is now: revoked or narrowed since this session logged in
            async with asyncio.timeout(ACQUIRE_TIMEOUT):
                current = await self._keys.get(key.id)
        except Exception as exc:
            if is_unavailable(exc):
                return UNAVAILABLE
            raise
        if current is None:
            return reply(554, "5.7.8", f"key {key.id} was revoked; nothing was queued")
        key = current
        refusal = header_sender_refusal(key, raw)
        if refusal is not None:
            return refusal
        self._committing += 1
        self._idle.clear()
        try:
            queued = await accept(
                self._pool, key, [submission(key, mail_from, envelope.rcpt_tos, raw)]
            )
        except Unavailable as exc:
            log.warning("smtp.unavailable", key_id=key.id, error=str(exc))
            return UNAVAILABLE
        except Forbidden as exc:
            return reply(550, "5.7.1", str(exc))
        except InputError as exc:
            return reply(554, "5.6.0", f"message refused: {exc}")
        finally:
            self._committing -= 1
            if not self._committing:
                self._idle.set()
        done = queued[0]
        log.info("smtp.queued", key_id=key.id, message_id=done.id, created=done.created)
        again = "" if done.created else " (already queued: a resend of the same message)"
        return f"250 2.0.0 queued as {done.id}{again}"

    async def handle_exception(self, error: Exception) -> str:
        """Anything unforeseen: logged, and the client told to retry (nothing was queued)."""
        if is_unavailable(error):
            return UNAVAILABLE
        log.error("smtp.error", error=repr(error))
        return INTERNAL


class _Session(SMTP):
    """One connection; tells the door when it ends, so its slot is free again."""

    def __init__(self, handler: SmtpDoor, on_close: Callable[[_Session], None], **kw: Any) -> None:
        super().__init__(handler, **kw)
        self._on_close: Callable[[_Session], None] | None = on_close

    async def push(self, status: AnyStr) -> None:
        """aiosmtpd's own size refusals, given their enhanced status code and a reason."""
        if isinstance(status, str) and status.startswith("552 Error:"):
            limit = self.data_size_limit
            status = reply(552, "5.3.4", f"the message is larger than {limit:,} bytes, the limit")
        await super().push(status)

    async def challenge_auth(
        self,
        challenge: str | bytes,
        encode_to_b64: bool = True,
        log_client_response: bool = False,
    ) -> _Missing | bytes:
        """aiosmtpd's AUTH prompt, with an answer longer than the line limit refused as such:
        asyncio's readline raises ValueError (the line already dropped), which aiosmtpd would
        hand on as an unforeseen error (451 internal error)."""
        try:
            return await super().challenge_auth(challenge, encode_to_b64, log_client_response)
        except ValueError as exc:
            if "limit" not in str(exc):  # "Separator is found, but chunk is longer than limit"
                raise
            await self.push(reply(500, "5.5.6", "the authentication answer is too long"))
            return MISSING

    def connection_lost(self, error: Exception | None) -> None:
        try:
            super().connection_lost(error)
        finally:
            done, self._on_close = self._on_close, None
            if done is not None:
                done(self)


class _Server:
    """The accept loops: one session per connection, at most `max_sessions` at once across the
    STARTTLS port and the implicit-TLS one."""

    def __init__(self, cfg: Config, door: SmtpDoor, cert: ServerCert) -> None:
        self._cfg = cfg
        self._door = door
        self._cert = cert
        self._slots = asyncio.Semaphore(cfg.smtp.max_sessions)
        self._live: set[_Session] = set()
        self._starting: set[asyncio.Task[None]] = set()  # TLS handshakes under way
        self._hostname = socket.gethostname()  # aiosmtpd would ask DNS (getfqdn) per session

    def _closed(self, session: _Session) -> None:
        if session in self._live:
            self._live.discard(session)
            self._slots.release()

    def _session(self, peer: Any, implicit_tls: bool) -> _Session:
        clear_ok = self._cfg.smtp.auth_on_loopback_without_tls and _loopback(peer)
        with warnings.catch_warnings():
            # aiosmtpd warns of AUTH without TLS: it does not see TLS that began before SMTP
            # (implicit TLS), and the clear text is allowed only from loopback, when configured.
            warnings.simplefilter("ignore")
            session = _Session(
                self._door,
                self._closed,
                hostname=self._hostname,
                data_size_limit=self._cfg.smtp.max_message_bytes,
                decode_data=False,
                tls_context=None if implicit_tls else self._cert.context,
                auth_required=True,
                auth_require_tls=not (implicit_tls or clear_ok),
                timeout=COMMAND_TIMEOUT,
            )
        self._live.add(session)
        return session

    async def run(self, sock: socket.socket, *, implicit_tls: bool) -> None:
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        while True:
            await self._slots.acquire()
            try:
                conn, peer = await loop.sock_accept(sock)
            except OSError as exc:  # e.g. out of file descriptors: wait, do not spin
                self._slots.release()
                log.warning("smtp.accept_failed", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            except BaseException:
                self._slots.release()
                raise
            # A task: a TLS handshake must not hold up the next accept.
            task = asyncio.create_task(self._start(loop, conn, peer, implicit_tls))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _start(
        self, loop: asyncio.AbstractEventLoop, conn: socket.socket, peer: Any, implicit_tls: bool
    ) -> None:
        session = self._session(peer, implicit_tls)
        try:
            await loop.connect_accepted_socket(
                lambda: session,
                sock=conn,
                ssl=self._cert.context if implicit_tls else None,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT if implicit_tls else None,
            )
        except Exception as exc:  # a failed TLS handshake, a reset: this client only
            log.info("smtp.connect_failed", peer=str(peer), error=repr(exc))
            conn.close()
            self._closed(session)

    def close_sessions(self) -> None:
        for task in list(self._starting):
            task.cancel()
        for session in list(self._live):
            if session.transport is not None:
                session.transport.close()


@asynccontextmanager
async def serve_smtp(
    cfg: Config, pool: asyncpg.Pool, keys: KeyStore
) -> AsyncIterator[tuple[str, int]]:
    """Serve SMTP submission on the `smtp` socket (and `smtps`, implicit TLS, when configured)
    until exit; yields the STARTTLS address."""
    cert, made = server_cert("smtp", cfg.smtp.tls_cert, cfg.smtp.tls_key, cfg.database.data_dir)
    if cert.self_signed:
        log.info(
            "smtp.certificate",
            self_signed=True,
            made=made,
            path=str(cert.cert_file),
            sha256=cert.fingerprint,
        )
    # aiosmtpd logs every connection and command through `mail.log`; ours are the events above.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    door = SmtpDoor(pool, keys)
    server = _Server(cfg, door, cert)
    doors = [(sockets.Listen("smtp", cfg.smtp.listen_host, cfg.smtp.listen_port), False)]
    if cfg.smtp.implicit_tls_port is not None:
        doors.append(
            (sockets.Listen("smtps", cfg.smtp.listen_host, cfg.smtp.implicit_tls_port), True)
        )
    async with contextlib.AsyncExitStack() as stack:
        first: tuple[str, int] | None = None
        for listen, implicit_tls in doors:
            sock, shared = sockets.open_socket(listen)
            stack.callback(sock.close)
            host, port = sock.getsockname()[:2]
            first = first or (host, port)
            task = asyncio.create_task(
                server.run(sock, implicit_tls=implicit_tls), name=f"{listen.name}-accept"
            )
            stack.push_async_callback(_cancelled, task)
            log.info(
                f"{listen.name}.listening",
                host=host,
                port=port,
                shared=shared,
                tls_sha256=cert.fingerprint,
            )
        assert first is not None
        try:
            yield first
        finally:
            await stack.aclose()  # no new sessions
            await door.settled(SHUTDOWN_GRACE)
            server.close_sessions()


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
