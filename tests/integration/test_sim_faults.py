"""Latency and injected faults as a client sees them through aioboto3, changed at runtime."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aioboto3
import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from dispatcher.domain.outcome import Outcome
from dispatcher.ses.classify import classify_error
from tests.support.sim import SimFactory, SimHandle, error_of

SIMPLE = {"Simple": {"Subject": {"Data": "Hello"}, "Body": {"Text": {"Data": "Hi there"}}}}
V1_MESSAGE = {"Subject": {"Data": "Hello"}, "Body": {"Text": {"Data": "Hi there"}}}


@asynccontextmanager
async def clients(sim: SimHandle, **config: Any) -> AsyncIterator[tuple[Any, Any]]:
    kwargs = sim.client_kwargs()
    kwargs["config"] = AioConfig(retries={"mode": "standard", "total_max_attempts": 1}, **config)
    session = aioboto3.Session()
    async with session.client("ses", **kwargs) as v1, session.client("sesv2", **kwargs) as v2:
        yield v1, v2


async def v2_send(v2: Any, to: str = "a@example.com") -> Any:
    return await v2.send_email(
        FromEmailAddress="s@example.com", Destination={"ToAddresses": [to]}, Content=SIMPLE
    )


async def v1_send(v1: Any) -> Any:
    return await v1.send_email(
        Source="s@example.com", Destination={"ToAddresses": ["a@example.com"]}, Message=V1_MESSAGE
    )


async def test_lognormal_latency_has_a_median_and_a_tail(sim_inprocess: SimFactory) -> None:
    # The distribution itself is checked exactly in the unit tests (seeded); here: a send
    # takes about the median, and not always the same time.
    async with sim_inprocess(max_send_rate=1000) as sim, clients(sim) as (_, v2):
        await v2_send(v2)  # connection set up outside the measurement
        await sim.configure(latency_ms=50, latency_model="lognormal", latency_p99_ms=250)
        loop = asyncio.get_running_loop()
        durations = []
        for _ in range(12):
            started = loop.time()
            await v2_send(v2)
            durations.append(loop.time() - started)
    assert 0.025 < statistics.median(durations) < 0.5
    assert max(durations) > 1.3 * min(durations)  # a distribution, not a constant


@pytest.mark.parametrize(
    ("setting", "code", "status"),
    [("fault_500_rate", "InternalFailure", 500), ("fault_503_rate", "ServiceUnavailable", 503)],
)
async def test_http_5xx_faults_on_v1_and_v2_are_transient(
    sim_inprocess: SimFactory, setting: str, code: str, status: int
) -> None:
    async with sim_inprocess() as sim, clients(sim) as (v1, v2):
        await sim.configure(**{setting: 1.0})
        with pytest.raises(ClientError) as v2_exc:
            await v2_send(v2)
        with pytest.raises(ClientError) as v1_exc:
            await v1_send(v1)
        with pytest.raises(ClientError) as other:
            await v2.get_account()  # any API request, not only sends
        stats = await sim.stats()  # /_sim/ is never faulted
        await sim.configure(**{setting: 0.0})
        await v2_send(v2)
    assert error_of(v2_exc)[::2] == (code, status)
    assert error_of(v1_exc)[::2] == (code, status)
    # The query API names the side at fault; botocore's typed error dict has no "Type" key.
    assert dict(v1_exc.value.response["Error"]).get("Type") == "Receiver"
    assert error_of(other)[2] == status
    assert classify_error(*error_of(v2_exc)) is Outcome.TRANSIENT
    assert classify_error(*error_of(v1_exc)) is Outcome.TRANSIENT
    assert stats["faults"] == 3 and stats["accepted"] == 0


async def test_connection_reset(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess(fault_reset_rate=1.0, identities=()) as sim, clients(sim) as (_, v2):
        # botocore reports a reset as ConnectionClosedError or EndpointConnectionError,
        # depending on when the client notices.
        with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
            await v2_send(v2)
        await sim.configure(fault_reset_rate=0.0)
        await sim.verify("example.com")  # set up once the faults are over
        await v2_send(v2)  # the client recovers on a new connection
        stats = await sim.stats()
    assert stats["faults"] == 1 and stats["accepted"] == 1


async def test_a_response_that_never_comes_times_out_and_stopping_is_prompt(
    sim_inprocess: SimFactory,
) -> None:
    loop = asyncio.get_running_loop()
    async with (
        sim_inprocess(fault_timeout_rate=1.0, fault_timeout_seconds=60, identities=()) as sim,
        clients(sim, read_timeout=0.3, connect_timeout=1) as (_, v2),
    ):
        started = loop.time()
        with pytest.raises(ReadTimeoutError):
            await v2_send(v2)
        waited = loop.time() - started
        held = asyncio.ensure_future(v2_send(v2))  # still held when the simulator stops
        await asyncio.sleep(0.05)
        stopping = loop.time()
    stopped_in = loop.time() - stopping
    with pytest.raises((ReadTimeoutError, ConnectionClosedError)):
        await held
    assert 0.29 <= waited < 2.0
    assert stopped_in < 5.0  # a held request does not keep the server from stopping


async def test_throttle_rate_and_storms_answer_rate_exceeded(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess(max_send_rate=1000) as sim, clients(sim) as (v1, v2):
        await sim.configure(fault_throttle_rate=1.0)
        with pytest.raises(ClientError) as v2_exc:
            await v2_send(v2)
        with pytest.raises(ClientError) as v1_exc:
            await v1_send(v1)
        await sim.configure(fault_throttle_rate=0.0)
        await sim.admin("POST", "/_sim/storm", {"seconds": 0.6})
        with pytest.raises(ClientError) as storm_exc:
            await v2_send(v2)
        quota = await v1.get_send_quota()  # a storm throttles sends only
        await asyncio.sleep(0.65)
        await v2_send(v2)
        stats = await sim.stats()
    assert error_of(v2_exc) == ("TooManyRequestsException", "Maximum sending rate exceeded.", 429)
    assert error_of(v1_exc) == ("Throttling", "Maximum sending rate exceeded.", 400)
    assert error_of(storm_exc)[0] == "TooManyRequestsException"
    assert quota["MaxSendRate"] == 1000.0
    assert stats["throttled"] == 3 and stats["accepted"] == 1


async def test_fault_flags_reach_the_process(sim_process: SimFactory) -> None:
    async with sim_process(fault_503_rate=1.0, latency_ms=5, sandbox=False, identities=()) as sim:
        config = await sim.config()
        async with clients(sim) as (_, v2):
            with pytest.raises(ClientError) as exc:
                await v2_send(v2)
    assert config["fault_503_rate"] == 1.0 and config["latency_ms"] == 5.0
    assert error_of(exc)[2] == 503
