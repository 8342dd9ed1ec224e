"""SMTP submission as applications use it: Python's smtplib (and swaks) over STARTTLS with AUTH,
against `dispatcher run`, real Postgres and the SES simulator. Messages arrive once and byte for
byte, a `250` survives SIGKILL, and a Postgres outage answers `451` until it is back."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import smtplib
import socket
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import pytest

from dispatcher.db.embedded import EmbeddedPostgres
from dispatcher.doors.tls import SELF_SIGNED_NAME
from dispatcher.queue.repository import Queue
from tests.support.cli import cli_env, fetch, run_cli, start_cli, stop_cli
from tests.support.dispatch import eventually
from tests.support.sim import SimFactory
from tests.support.smtp import client, mail

SESSIONS = 4  # concurrent smtplib sessions
PER_SESSION = 50  # messages each: 200 in all


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def listening(log: Path, after: int = 0) -> None:
    """Wait until the daemon logged smtp.listening (after byte `after` of its log)."""

    async def up() -> bool:
        return '"smtp.listening"' in (await asyncio.to_thread(log.read_text))[after:]

    await eventually(up, limit=60)


async def new_key(env: dict[str, str], name: str, pattern: str) -> tuple[str, str]:
    made = await run_cli(env, "keys", "create", name, "--from", pattern, "--json")
    assert made.code == 0, made
    key = json.loads(made.out)
    return key["id"], key["secret"]


def message_id(raw: bytes) -> str:
    return str(BytesHeaderParser().parsebytes(raw, headersonly=True)["Message-ID"])


def submit_batch(
    port: int, cafile: Path, user: str, password: str, n: int, tag: str
) -> dict[str, tuple[bytes, list[str]]]:
    """One session sending `n` messages; every 5th has an attachment, every 7th a Bcc-only
    recipient; returns what was sent by Message-ID."""
    sent: dict[str, tuple[bytes, list[str]]] = {}
    smtp = client("127.0.0.1", port, cafile, user, password)
    try:
        for i in range(n):
            attach = os.urandom(3000) if i % 5 == 0 else None
            body = f"message {tag}-{i}\n.a line that starts with a dot\n"
            raw = mail(
                "Shop <news@example.com>",
                f"{tag}-{i}@example.com",
                f"{tag} {i}",
                body,
                attach=attach,
            )
            rcpts = [f"{tag}-{i}@example.com"] + (
                [f"hidden-{tag}-{i}@example.com"] if i % 7 == 0 else []
            )
            assert smtp.sendmail("news@example.com", rcpts, raw) == {}
            sent[message_id(raw)] = (raw, rcpts)
    finally:
        smtp.quit()
    return sent


async def test_smtplib_200_messages_once_byte_for_byte_through_sigkill_and_an_outage(
    own_cluster: EmbeddedPostgres, tmp_path: Path, sim_process: SimFactory
) -> None:
    dsn = own_cluster.dsn
    async with Queue.connect(dsn, max_size=1, migrate=True):
        pass
    port = free_port()
    data = tmp_path / "cli"
    data.mkdir()
    cafile = data / SELF_SIGNED_NAME
    async with sim_process(max_send_rate=100, max_24_hour_send=-1) as sim:
        env = cli_env(
            data,
            dsn=dsn,
            endpoint_url=sim.endpoint_url,
            DISPATCHER_SMTP__ENABLED="true",
            DISPATCHER_SMTP__LISTEN_PORT=str(port),
            DISPATCHER_QUEUE__LEASE_SECONDS="3",
            DISPATCHER_QUEUE__HEARTBEAT_SECONDS="1",
        )
        user, password = await new_key(env, "shop", "*@example.com")
        log = tmp_path / "run.log"
        proc = await start_cli(env, "run", output=log)
        try:
            await listening(log)
            sent: dict[str, tuple[bytes, list[str]]] = {}
            with ThreadPoolExecutor(SESSIONS) as pool:
                loop = asyncio.get_running_loop()
                batches = [
                    loop.run_in_executor(
                        pool, submit_batch, port, cafile, user, password, PER_SESSION, f"s{k}"
                    )
                    for k in range(SESSIONS)
                ]
                for done in await asyncio.gather(*batches):
                    sent.update(done)
            assert len(sent) == SESSIONS * PER_SESSION

            def refusals() -> dict[str, Any]:
                seen: dict[str, Any] = {}
                try:
                    client("127.0.0.1", port, cafile, user, password + "x")
                except smtplib.SMTPAuthenticationError as exc:
                    seen["wrong"] = exc.smtp_code
                smtp = client("127.0.0.1", port, cafile, user, password)
                try:
                    smtp.sendmail(
                        "boss@other.example", ["a@example.com"], b"Subject: x\r\n\r\nx\r\n"
                    )
                except smtplib.SMTPSenderRefused as exc:
                    seen["mail_from"] = exc.smtp_code
                spoof = mail("boss@other.example", "a@example.com", "x", "x")
                try:
                    smtp.sendmail("news@example.com", ["a@example.com"], spoof)
                except smtplib.SMTPDataError as exc:
                    seen["from_header"] = exc.smtp_code
                smtp.quit()
                return seen

            assert await asyncio.to_thread(refusals) == {
                "wrong": 535,
                "mail_from": 553,
                "from_header": 550,
            }

            async def arrived(n: int) -> None:
                async def check() -> bool:
                    return int((await sim.stats())["accepted"]) >= n

                await eventually(check, limit=90, step=0.2)

            # SIGKILL right after the 250, while all sending is held (no job is claimed: the
            # daemon cannot have sent it yet); committed, so sent after the restart
            await arrived(len(sent))
            await fetch(dsn, "INSERT INTO dispatcher.sending_hold (reason) VALUES ('test')")
            last = mail("news@example.com", "kill@example.com", "after 250", "x")
            smtp = await asyncio.to_thread(client, "127.0.0.1", port, cafile, user, password)
            await asyncio.to_thread(smtp.sendmail, "news@example.com", ["kill@example.com"], last)
            proc.kill()
            await proc.wait()
            smtp.close()
            jobs = await fetch(
                dsn,
                "SELECT j.state::text AS state FROM dispatcher.jobs j "
                "JOIN dispatcher.messages m USING (id) WHERE 'kill@example.com' = ANY(m.to_addrs)",
            )
            assert [j["state"] for j in jobs] == ["queued"]
            sent[message_id(last)] = (last, ["kill@example.com"])
            size = log.stat().st_size
            proc = await start_cli(env, "run", output=log)
            await listening(log, size)
            resumed = await run_cli(env, "resume", "--force")
            assert resumed.code == 0, resumed
            await arrived(len(sent))

            # Postgres stopped: 451 (a logged-in session, and a new login), then accepted
            down = mail("news@example.com", "outage@example.com", "outage", "x")
            smtp = await asyncio.to_thread(client, "127.0.0.1", port, cafile, user, password)
            await asyncio.to_thread(own_cluster.stop)

            def during_outage() -> list[int]:
                codes = []
                for session in (smtp, client("127.0.0.1", port, cafile, user, password)):
                    try:
                        session.sendmail("news@example.com", ["outage@example.com"], down)
                        codes.append(250)
                    except smtplib.SMTPDataError as exc:
                        codes.append(exc.smtp_code)
                    session.close()
                return codes

            assert await asyncio.to_thread(during_outage) == [451, 451]
            await asyncio.to_thread(own_cluster.start)

            def after_outage() -> bool:
                try:
                    with client("127.0.0.1", port, cafile, user, password) as again:
                        again.sendmail("news@example.com", ["outage@example.com"], down)
                    return True
                except (smtplib.SMTPException, OSError):
                    return False

            async def accepted() -> bool:
                return await asyncio.to_thread(after_outage)

            await eventually(accepted, limit=60, step=0.5)
            sent[message_id(down)] = (down, ["outage@example.com"])

            await arrived(len(sent))
            await asyncio.sleep(1)  # a duplicate would arrive now
            received = await sim.messages(body=True)
        finally:
            code = await stop_cli(proc) if proc.returncode is None else proc.returncode
    assert code == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
    by_id = Counter(message_id(base64.b64decode(m["raw"])) for m in received)
    assert sorted(by_id) == sorted(sent) and set(by_id.values()) == {1}, by_id.most_common(3)
    for m in received:
        raw = base64.b64decode(m["raw"])
        body, rcpts = sent[message_id(raw)]
        assert raw == body  # byte for byte
        assert sorted(m["to"] + m["cc"] + m["bcc"]) == sorted(rcpts)  # Bcc-only ones too
        assert m["from"] == "news@example.com"


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
async def test_swaks_submits_over_starttls_with_auth(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    port = free_port()
    async with sim_process() as sim:
        env = cli_env(
            tmp_path,
            dsn=pg_dsn,
            endpoint_url=sim.endpoint_url,
            DISPATCHER_SMTP__ENABLED="true",
            DISPATCHER_SMTP__LISTEN_PORT=str(port),
        )
        user, password = await new_key(env, "ops", "example.com")
        log = tmp_path / "run.log"
        proc = await start_cli(env, "run", output=log)
        try:
            await listening(log)
            swaks = [
                "swaks", "--server", f"127.0.0.1:{port}", "--tls", "--auth", "LOGIN",
                "--auth-user", user, "--auth-password", password,
                "--from", "ops@example.com", "--to", "someone@example.com",
                "--header", "Subject: from swaks", "--body", "sent by swaks",
            ]  # fmt: skip
            done = await asyncio.create_subprocess_exec(
                *swaks, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            out = (await asyncio.wait_for(done.communicate(), 60))[0].decode(errors="replace")
            assert done.returncode == 0, out
            assert "<~  250 2.0.0 queued as" in out and "STARTTLS" in out, out
            wrong = await asyncio.create_subprocess_exec(
                *[a if a != password else password + "x" for a in swaks],
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            bad = (await asyncio.wait_for(wrong.communicate(), 60))[0].decode(errors="replace")
            assert "535 5.7.8" in bad and wrong.returncode != 0, bad

            async def arrived() -> bool:
                return len(await sim.messages()) == 1

            await eventually(arrived, limit=30)
        finally:
            code = await stop_cli(proc)
        received = await sim.messages()
    assert code == 0
    assert received[0]["subject"] == "from swaks" and received[0]["to"] == ["someone@example.com"]
