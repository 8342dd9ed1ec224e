"""How many SendEmail requests per second the SES simulator answers on one core.

    python -m bench.sim_throughput [--seconds S] [--connections C] [--api v2|v1|both]

The simulator runs as `python -m dispatcher.sim` in its own process (one event loop, so one
core), with no rate limit, no daily quota and zero latency. This process drives it over C
keep-alive connections with a prebuilt request (no SigV4 signing, which the simulator does not
check), so the client is not what is measured. Two figures:

- `wall_rps`: requests answered per wall-clock second (both processes running; with the
  default `--client raw`, a minimal HTTP/1.1 client on asyncio streams, or `--client aiohttp`);
- `per_core_rps`: requests per CPU-second the simulator process spent, i.e. what it would
  answer with one core to itself. The target is >= 5,000 SendEmail/s.

Results: printed, and written to bench/results/sim_throughput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from dispatcher.sim.launch import start_simulator
from dispatcher.sim.provision import setup_account

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results" / "sim_throughput.json"
TARGET_RPS = 5000.0
WARMUP_SECONDS = 1.0

V2_BODY = json.dumps(
    {
        "FromEmailAddress": "bench@example.com",
        "Destination": {"ToAddresses": ["success@simulator.amazonses.com"]},
        "Content": {
            "Simple": {
                "Subject": {"Data": "Benchmark"},
                "Body": {"Text": {"Data": "A short body, as most transactional mail is."}},
            }
        },
        "EmailTags": [{"Name": "dispatcher_id", "Value": "1"}],
    }
).encode()
V1_BODY = urlencode(
    {
        "Action": "SendEmail",
        "Version": "2010-12-01",
        "Source": "bench@example.com",
        "Destination.ToAddresses.member.1": "success@simulator.amazonses.com",
        "Message.Subject.Data": "Benchmark",
        "Message.Body.Text.Data": "A short body, as most transactional mail is.",
        "Tags.member.1.Name": "dispatcher_id",
        "Tags.member.1.Value": "1",
    }
).encode()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc; psutil elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
    except OSError:
        import psutil

        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)


@asynccontextmanager
async def simulator() -> AsyncIterator[tuple[str, int]]:
    async with start_simulator(max_send_rate=1e9, max_24_hour_send=-1) as sim:
        assert sim.pid is not None
        await setup_account(sim.endpoint_url, identities=("example.com",))  # as a user would
        yield sim.endpoint_url, sim.pid


async def _worker(
    http: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    until: float,
    counts: list[int],
) -> None:
    loop = asyncio.get_running_loop()
    ok = errors = 0
    while loop.time() < until:
        async with http.post(url, data=body, headers=headers) as resp:
            await resp.read()
            if resp.status == 200:
                ok += 1
            else:
                errors += 1
    counts[0] += ok
    counts[1] += errors


async def _raw_worker(
    host: str, port: int, request: bytes, until: float, counts: list[int]
) -> None:
    """One keep-alive connection speaking just enough HTTP/1.1: far cheaper than a client
    library, so the client's CPU stays small next to the server's."""
    reader, writer = await asyncio.open_connection(host, port)
    loop = asyncio.get_running_loop()
    ok = errors = 0
    try:
        while loop.time() < until:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if head.startswith(b"HTTP/1.1 200"):
                ok += 1
            else:
                errors += 1
    finally:
        writer.close()
        await writer.wait_closed()
    counts[0] += ok
    counts[1] += errors


async def _drive(
    client: str, endpoint: str, api: str, until: float, connections: int, counts: list[int]
) -> None:
    if api == "v2":
        path, body, ctype = "/v2/email/outbound-emails", V2_BODY, "application/json"
    else:
        path, body, ctype = "/", V1_BODY, "application/x-www-form-urlencoded"
    if client == "raw":
        parts = urlsplit(endpoint)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        await asyncio.gather(
            *(_raw_worker(host, port, request, until, counts) for _ in range(connections))
        )
        return
    connector = aiohttp.TCPConnector(limit=connections)
    headers = {"Content-Type": ctype}
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(
            *(
                _worker(http, endpoint + path, body, headers, until, counts)
                for _ in range(connections)
            )
        )


async def measure(
    endpoint: str, pid: int, api: str, seconds: float, connections: int, client: str
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    warm = [0, 0]
    await _drive(client, endpoint, api, loop.time() + WARMUP_SECONDS, connections, warm)
    counts = [0, 0]
    cpu_before = _cpu_seconds(pid)
    started = time.perf_counter()
    await _drive(client, endpoint, api, loop.time() + seconds, connections, counts)
    elapsed = time.perf_counter() - started
    cpu = _cpu_seconds(pid) - cpu_before
    ok, errors = counts
    return {
        "api": api,
        "client": client,
        "requests": ok,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "wall_rps": round(ok / elapsed, 1),
        "sim_cpu_seconds": round(cpu, 3),
        "sim_cpu_us_per_request": round(cpu / ok * 1e6, 1) if ok else None,
        "per_core_rps": round(ok / cpu, 1) if cpu > 0 else None,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    apis = ["v2", "v1"] if args.api == "both" else [args.api]
    runs: list[dict[str, Any]] = []
    try:
        import uvloop  # noqa: F401

        server_loop = "uvloop"
    except ImportError:
        server_loop = "asyncio"
    for api in apis:
        async with simulator() as (endpoint, pid):  # a fresh simulator per API
            runs.append(
                await measure(endpoint, pid, api, args.seconds, args.connections, args.client)
            )
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "server_loop": server_loop,
        "connections": args.connections,
        "target_rps": TARGET_RPS,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sim_throughput")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per API")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--api", choices=("v2", "v1", "both"), default="both")
    parser.add_argument(
        "--client",
        choices=("raw", "aiohttp"),
        default="raw",
        help="raw: minimal HTTP/1.1 over asyncio streams (default); aiohttp: its client",
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.connections < 1:
        parser.error("--seconds must be > 0 and --connections >= 1")
    result = asyncio.run(main_async(args))
    for run in result["runs"]:
        verdict = "ok" if (run["per_core_rps"] or 0) >= TARGET_RPS else "BELOW TARGET"
        print(
            f"SendEmail {run['api']}: {run['wall_rps']:,.0f} req/s wall, "
            f"{run['per_core_rps'] or 0:,.0f} req/s per simulator core "
            f"({run['sim_cpu_us_per_request']} us CPU/request, {run['requests']} requests, "
            f"{run['errors']} errors) [{verdict}, target {TARGET_RPS:,.0f}]"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"written to {RESULTS.relative_to(REPO_ROOT)}")
    failed = any((r["per_core_rps"] or 0) < TARGET_RPS or r["errors"] for r in result["runs"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
