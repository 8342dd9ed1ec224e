"""Set up a simulated account as a user sets up SES: CreateEmailIdentity and
CreateConfigurationSet through the SES v2 API, then the step a user cannot script on AWS (the
link clicked, the DNS records found) through the simulator's POST /_sim/identities/NAME/verify.
The demo, the benchmarks and the tests all set their senders up here.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aioboto3
import aiohttp
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError

# SES allows each non-send action once a second; a second identity waits for its turn.
_THROTTLE_WAIT = 1.05  # seconds
_MAX_TRIES = 5
_ALREADY = ("AlreadyExistsException",)


async def setup_account(
    endpoint_url: str,
    *,
    identities: Iterable[str] = (),
    configuration_sets: Iterable[str] = (),
    region: str = "us-east-1",
    verify: bool = True,
) -> None:
    """Create each identity (verified unless `verify` is False) and configuration set.

    Idempotent: what exists already is left as it is (and an identity still verified).
    """
    session = aioboto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
    )
    config = AioConfig(retries={"mode": "standard", "total_max_attempts": 1})
    async with (
        session.client("sesv2", endpoint_url=endpoint_url, config=config) as ses,
        aiohttp.ClientSession() as http,
    ):
        for name in identities:
            await _paced(functools.partial(ses.create_email_identity, EmailIdentity=name))
            if verify:
                url = f"{endpoint_url}/_sim/identities/{name}/verify"
                async with http.post(url) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"POST {url} -> {resp.status}: {await resp.text()}")
        for set_name in configuration_sets:
            await _paced(
                functools.partial(ses.create_configuration_set, ConfigurationSetName=set_name)
            )


async def _paced(call: Callable[[], Awaitable[Any]]) -> None:
    """One API call, waiting out SES's 1 request/s; one that exists already is done."""
    for attempt in range(_MAX_TRIES):
        try:
            await call()
            return
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _ALREADY:
                return
            if code != "TooManyRequestsException" or attempt == _MAX_TRIES - 1:
                raise
        await asyncio.sleep(_THROTTLE_WAIT)
