"""What the aioboto3 client costs per SendEmail, and what the adapter's client settings save.

The same send loop and the same requests (`SesAdapter.build_request`) through three clients, in
alternating rounds against one simulator in its own process:

- ``defaults``: botocore's defaults (one attempt per call, as everywhere here);
- ``no-validation``: ``parameter_validation=False`` (the request is built from typed fields and
  SES validates it again);
- ``fixed-ua``: also a fixed User-Agent (botocore rebuilds its structured one per request);
- ``adapter``: also the sends signed by `SendSigner` instead of botocore's signer, i.e. the
  client `SesAdapter.open` builds with ``ses.client = "botocore"``;
- ``lean``: `dispatcher/ses/lean.py`, the sends as one signed HTTP/1.1 POST each (the default,
  ``ses.client = "lean"``).

CPU per message is this process's CPU time over the messages sent (the simulator's is not
counted). Reported: the median of each variant over the rounds and its ratio to ``defaults``.

    .venv/bin/python -m bench.client [--messages 2000] [--rounds 3] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioCredentials as Credentials
from botocore.exceptions import BotoCoreError, ClientError

from bench.harness import RESULTS, event_loop_runner
from bench.messages import FROM_ADDR, TO_ADDR, make_messages
from bench.services import run_simulator
from dispatcher.domain.message import OutgoingMessage
from dispatcher.ses.adapter import SesAdapter, adapter_config
from dispatcher.ses.lean import LeanSes
from dispatcher.ses.settings import SesSettings
from dispatcher.ses.signing import SendSigner

REGION = "us-east-1"
VARIANTS = ("defaults", "no-validation", "fixed-ua", "adapter", "lean")


def client_config(variant: str, concurrency: int) -> AioConfig:
    settings = SesSettings(max_pool_connections=concurrency)
    if variant in ("fixed-ua", "adapter", "lean"):
        return adapter_config(settings)
    config = AioConfig(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        max_pool_connections=concurrency,
    )
    if variant == "no-validation":
        config = config.merge(AioConfig(parameter_validation=False))
    return config


async def one_round(
    endpoint_url: str, variant: str, requests: Sequence[dict[str, Any]], concurrency: int
) -> dict[str, float]:
    """Send every request through a fresh client of this variant; CPU and wall per message."""
    session = aioboto3.Session()
    async with AsyncExitStack() as stack:
        client = session.client(
            "sesv2",
            endpoint_url=endpoint_url,
            region_name=REGION,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            config=client_config(variant, concurrency),
        )
        ses: Any = await stack.enter_async_context(client)
        creds = Credentials("bench", "bench")  # as given to the client above
        if variant == "adapter":
            SendSigner(creds, REGION).register(ses.meta.events)
        if variant == "lean":
            lean = LeanSes.open(
                endpoint_url,
                creds,
                REGION,
                user_agent="bench",
                model=ses.meta.service_model,
                error_class=ses.exceptions.from_code,
                connect_timeout=5.0,
                read_timeout=15.0,
                max_connections=concurrency,
            )
            ses = await stack.enter_async_context(lean)
        await ses.send_email(**requests[0])  # connection set up and first-call caches warm
        numbers = iter(range(1, len(requests)))
        failed = 0

        async def worker() -> None:
            nonlocal failed
            for i in numbers:
                try:
                    await ses.send_email(**requests[i])
                except (ClientError, BotoCoreError):
                    failed += 1

        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    n = len(requests) - 1
    if failed:
        raise RuntimeError(f"{variant}: {failed} of {n} sends failed")
    return {"cpu_ms_per_msg": cpu / n * 1000, "msgs_per_s": n / wall}


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    async with run_simulator() as sim, SesAdapter.open(SesSettings(region=REGION)) as adapter:
        template = OutgoingMessage(id=0, from_addr=FROM_ADDR, to=(TO_ADDR,))
        requests = [
            adapter.build_request(replace(template, id=i, subject=m.subject, text=m.text))
            for i, m in enumerate(make_messages(args.messages))
        ]
        rounds: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
        for r in range(args.rounds):
            # Alternate the order so no variant always runs first (warm caches, a noisy moment).
            order = VARIANTS if r % 2 == 0 else tuple(reversed(VARIANTS))
            for variant in order:
                rounds[variant].append(
                    await one_round(sim.endpoint_url, variant, requests, args.concurrency)
                )
    summary: dict[str, Any] = {}
    base = statistics.median(x["cpu_ms_per_msg"] for x in rounds["defaults"])
    for variant in VARIANTS:
        cpu = statistics.median(x["cpu_ms_per_msg"] for x in rounds[variant])
        rate = statistics.median(x["msgs_per_s"] for x in rounds[variant])
        summary[variant] = {
            "cpu_ms_per_msg": round(cpu, 4),
            "cpu_vs_defaults": round(cpu / base, 3),
            "msgs_per_s": round(rate, 1),
            "rounds": rounds[variant],
        }
    return {
        "benchmark": "client",
        "messages_per_round": args.messages,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "uvloop": args.uvloop,
        "variants": summary,
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"aioboto3 SendEmail client cost ({result['messages_per_round']} msgs x "
        f"{result['rounds']} rounds, concurrency {result['concurrency']}, medians)",
        f"{'client':<15}{'CPU ms/msg':>12}{'vs defaults':>13}{'msgs/s':>10}",
    ]
    for name, v in result["variants"].items():
        lines.append(
            f"{name:<15}{v['cpu_ms_per_msg']:>12.3f}{v['cpu_vs_defaults']:>13.3f}"
            f"{v['msgs_per_s']:>10.0f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.client", description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=2000, help="per variant and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--uvloop", action=argparse.BooleanOptionalAction, default=True)
    args = p.parse_args(argv)
    if args.messages < 2 or args.rounds < 1 or args.concurrency < 1:
        p.error("--messages must be >= 2, --rounds and --concurrency >= 1")
    result = event_loop_runner(args.uvloop)(bench(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "client.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
