"""The baseline: the plain aioboto3 send loop a user would write, with none of the adapter's tuning.

One `sesv2` client, SDK retries off (one attempt per call, as the dispatcher makes), C tasks
pulling from one shared iterator, each awaiting `send_email` in turn. It keeps botocore's
defaults that `SesAdapter` changes on purpose (parameter validation on, the structured
User-Agent), so the ratio shows what the dispatcher costs and saves next to "just call SES".
The request has the same shape as the dispatcher's: Simple content (subject + text, UTF-8),
one To address and one tag with the message's number.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from bench.messages import FROM_ADDR, TO_ADDR, BenchMessage

BASELINE_TAG = "bench_id"


@dataclass(frozen=True, slots=True)
class BaselineRun:
    """What one baseline run did."""

    sent: int
    failed: int


async def send_all(
    endpoint_url: str, region: str, messages: Sequence[BenchMessage], concurrency: int
) -> BaselineRun:
    """Send every message through one client with `concurrency` tasks; never raises for SES."""
    config = AioConfig(
        retries={"mode": "standard", "total_max_attempts": 1},
        max_pool_connections=concurrency,
    )
    sent = failed = 0
    session = aioboto3.Session()
    async with session.client(
        "sesv2",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=config,
    ) as ses:
        numbers = iter(range(len(messages)))

        async def worker() -> None:
            nonlocal sent, failed
            for i in numbers:
                msg = messages[i]
                try:
                    await ses.send_email(
                        FromEmailAddress=FROM_ADDR,
                        Destination={"ToAddresses": [TO_ADDR]},
                        Content={
                            "Simple": {
                                "Subject": {"Data": msg.subject, "Charset": "UTF-8"},
                                "Body": {"Text": {"Data": msg.text, "Charset": "UTF-8"}},
                            }
                        },
                        EmailTags=[{"Name": BASELINE_TAG, "Value": str(i)}],
                    )
                except (ClientError, BotoCoreError):
                    failed += 1
                    continue
                sent += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return BaselineRun(sent, failed)
