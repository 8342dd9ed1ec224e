"""Intake through the doors: messages/s committed by SMTP and the HTTP API, next to `enqueue`'s.

    python -m bench.intake [--messages N] [--concurrency C] [--quick]

One throwaway Postgres, the simulator in its own process, and one `dispatcher run` child with
`[api]` and `[smtp]` enabled (the doors are served by the daemon, as in production; the
simulator's rate is 1 recipient/s so the daemon's sending takes next to no CPU from the doors).
Each side queues N small messages (one recipient, a text body) on a fresh database, in turn:

- enqueue: `dispatcher enqueue FILE` of N JSON lines (one child process, its start included);
- http: N `POST /v1/messages` of one message each, C at a time (aiohttp, keep-alive), each with
  an `Idempotency-Key`, HTTP Basic with a key made by `dispatcher keys create`;
- http batch: the same N as arrays of 1,000 in one request (one transaction) each;
- smtp: C sessions (Python's smtplib, STARTTLS + AUTH PLAIN once per session), N messages
  between them, each answered 250 only after its commit.

A side counts only after the database holds all N (rows checked). Prints messages/s and the ratio
to enqueue's, writes bench/results/intake.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import smtplib
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]

from bench.harness import RESULTS, BenchError, Child, cli_env, machine_facts, run_bench, run_cli
from bench.services import Databases, run_simulator, throwaway_postgres
from dispatcher.obs.logging import configure_logging

SENDER = "bench@example.com"
BATCH = 1000  # messages per HTTP batch request
SIDES = ("enqueue", "http", "http_batch", "smtp")
READY_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def message(side: str, i: int) -> dict[str, Any]:
    return {
        "from": SENDER,
        "to": [f"success+{side}{i}@simulator.amazonses.com"],
        "subject": f"intake {i}",
        "text": f"Message {i} of the intake benchmark.\n",
    }


async def committed(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        n: int = await conn.fetchval("SELECT count(*) FROM dispatcher.messages")
        return n
    finally:
        await conn.close()


async def wait_listening(port: int, child: Child) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        done = child.poll()
        if done is not None:
            done.check()  # it exited: raises with its output
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise BenchError(f"the daemon did not listen on {port} within {READY_TIMEOUT:.0f} s")


async def enqueue_side(env: dict[str, str], work: Path, n: int) -> float:
    path = work / "intake.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps(message("e", i)) + "\n")
    began = time.perf_counter()
    (await run_cli(env, work, "enqueue", str(path))).check()
    return time.perf_counter() - began


async def http_side(url: str, auth: dict[str, str], n: int, concurrency: int) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=auth) as http:

        async def client() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                headers = {"Idempotency-Key": f"bench-{i}"}
                async with http.post(url, json=message("h", i), headers=headers) as resp:
                    if resp.status not in (200, 201):
                        raise BenchError(f"POST -> {resp.status}: {await resp.text()}")

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return time.perf_counter() - began


async def http_batch_side(url: str, auth: dict[str, str], n: int) -> float:
    async with aiohttp.ClientSession(headers=auth) as http:
        began = time.perf_counter()
        for start in range(0, n, BATCH):
            body = [message("b", i) for i in range(start, min(n, start + BATCH))]
            async with http.post(url, json=body) as resp:
                if resp.status not in (200, 201):
                    raise BenchError(f"batch POST -> {resp.status}: {await resp.text()}")
        return time.perf_counter() - began


def smtp_session(port: int, user: str, password: str, numbers: range) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the daemon's self-signed certificate
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        smtp.starttls(context=context)
        smtp.login(user, password)
        for i in numbers:
            fields = message("s", i)
            msg = EmailMessage()
            msg["From"] = fields["from"]
            msg["To"] = fields["to"][0]
            msg["Subject"] = fields["subject"]
            msg.set_content(fields["text"])
            smtp.send_message(msg)


async def smtp_side(port: int, user: str, password: str, n: int, concurrency: int) -> float:
    share = -(-n // concurrency)
    ranges = [range(s, min(n, s + share)) for s in range(0, n, share)]
    began = time.perf_counter()
    await asyncio.gather(
        *(asyncio.to_thread(smtp_session, port, user, password, r) for r in ranges)
    )
    return time.perf_counter() - began


async def one_side(
    side: str, dbs: Databases, sim: Any, work: Path, n: int, concurrency: int
) -> dict[str, Any]:
    dsn = await dbs.create()
    api_port, smtp_port = free_port(), free_port()
    env = cli_env(
        dsn,
        sim,
        work,
        DISPATCHER_API__ENABLED="true",
        DISPATCHER_API__LISTEN_PORT=str(api_port),
        DISPATCHER_SMTP__ENABLED="true",
        DISPATCHER_SMTP__LISTEN_PORT=str(smtp_port),
        DISPATCHER_LOG__LEVEL="warning",
    )
    made = (await run_cli(env, work, "keys", "create", "bench", "--json")).check()
    key = json.loads(next(line for line in made.output.splitlines() if line.startswith("{")))
    daemon = Child(["run"], env, work)
    try:
        await wait_listening(api_port, daemon)
        await wait_listening(smtp_port, daemon)
        url = f"http://127.0.0.1:{api_port}/v1/messages"
        basic = base64.b64encode(f"{key['id']}:{key['secret']}".encode()).decode()
        auth = {"Authorization": f"Basic {basic}"}
        if side == "enqueue":
            seconds = await enqueue_side(env, work, n)
        elif side == "http":
            seconds = await http_side(url, auth, n, concurrency)
        elif side == "http_batch":
            seconds = await http_batch_side(url, auth, n)
        else:
            seconds = await smtp_side(smtp_port, key["id"], key["secret"], n, concurrency)
        rows = await committed(dsn)
        if rows != n:
            raise BenchError(f"{side}: {rows} messages committed, expected {n}")
    finally:
        daemon.kill()
        await daemon.wait()
        await dbs.drop(dsn)
    return {"seconds": round(seconds, 3), "messages_per_s": round(n / seconds, 1)}


async def main_async(args: argparse.Namespace) -> int:
    configure_logging("warning", "console")
    n, concurrency = args.messages, args.concurrency
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp, throwaway_postgres() as dbs:
        work = Path(tmp)
        await dbs.make_template()
        pg_version = await dbs.server_version()
        async with run_simulator(max_send_rate=1.0) as sim:
            rows: dict[str, dict[str, Any]] = {}
            for side in SIDES:
                print(f"{side}: {n:,} messages ...", file=sys.stderr)
                rows[side] = await one_side(side, dbs, sim, work, n, concurrency)
    base = rows["enqueue"]["messages_per_s"]
    for row in rows.values():
        row["ratio_to_enqueue"] = round(row["messages_per_s"] / base, 3)
    print(f"\nintake of {n:,} messages, {concurrency} concurrent clients (http, smtp):")
    print(f"{'side':<14}{'messages/s':>12}{'seconds':>10}{'/ enqueue':>11}")
    for side, row in rows.items():
        print(
            f"{side:<14}{row['messages_per_s']:>12,.0f}{row['seconds']:>10.2f}"
            f"{row['ratio_to_enqueue']:>11.3f}"
        )
    result = {
        "benchmark": "intake",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.intake " + " ".join(sys.argv[1:]),
        "machine": machine_facts(False, pg_version),
        "messages": n,
        "concurrency": concurrency,
        "sides": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "intake.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="5,000 messages")
    args = parser.parse_args(argv)
    if args.quick:
        args.messages = 5_000
    return run_bench(main_async(args), "intake benchmark failed")


if __name__ == "__main__":
    raise SystemExit(main())
