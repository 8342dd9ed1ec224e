"""The SES simulator for tests: as a subprocess (as users run it) or in this event loop.

Register in tests/conftest.py with `pytest_plugins = ["tests.support.sim"]`, then:

    async def test_x(sim_process):
        async with sim_process(max_send_rate=5) as sim:
            async with aioboto3.Session().client("sesv2", **sim.client_kwargs()) as ses:
                ...
            assert len(await sim.messages()) == 1

The simulator is as strict as SES (verified senders, existing configuration sets, 1 request/s
on non-send actions). Every fixture sets up the account as a user would before the test starts:
CreateEmailIdentity for DEFAULT_IDENTITIES (or `identities=...`), the verification step
(POST /_sim/identities/NAME/verify) and CreateConfigurationSet for `configuration_sets=...`;
`sim.setup_account(...)` does the same later. `lenient=True` is for tests of leniency only.

`sim.admin(...)` reaches any /_sim/ route (identities, account state, subscriptions, ...), and
`async with sns_receiver() as rx:` is an SNS HTTP endpoint that records what it is sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aioboto3
import aiohttp
import pytest
from aiobotocore.config import AioConfig
from aiohttp import web
from botocore.exceptions import ClientError

from dispatcher.sim.launch import start_simulator
from dispatcher.sim.provision import setup_account
from dispatcher.sim.state import SimState

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0  # seconds for the subprocess to print its ready line
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL

SimFactory = Callable[..., AbstractAsyncContextManager["SimHandle"]]

# The senders most tests use: a verified domain covers every address in it.
DEFAULT_IDENTITIES: tuple[str, ...] = ("example.com",)


# What AWS exempts from its 1 request/s on API actions (botocore's method names).
_UNPACED = frozenset({"send_email", "send_raw_email", "send_templated_email"})


class Paced:
    """An aioboto3 SES client that calls each non-send action at most once a second, as AWS
    asks of every caller (the dispatcher's adapter paces itself the same way).

    The next call of an action waits until a second after the previous one was answered:
    SES counted that one on arrival, before its answer, so the gap it sees is at least 1 s.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._answered: dict[str, float] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name in _UNPACED or name.startswith("_") or not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            answered = self._answered.get(name)
            if answered is not None and (wait := answered + 1.0 - loop.time()) > 0:
                await asyncio.sleep(wait)
            try:
                return await attr(*args, **kwargs)
            finally:
                self._answered[name] = loop.time()

        return call


class SimHandle:
    """A running simulator: where it listens and async helpers for its /_sim/ API."""

    def __init__(
        self,
        endpoint_url: str,
        http: aiohttp.ClientSession,
        *,
        region: str = "us-east-1",
        state: SimState | None = None,
        pid: int | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self.state = state  # the live SimState when in-process, None for a subprocess
        self.pid = pid  # the subprocess's pid, None when in-process
        self._http = http

    def client_kwargs(self, *, retries: bool = False) -> dict[str, Any]:
        """Keyword arguments for `aioboto3.Session().client("ses" | "sesv2", **...)`.

        Without `retries`, botocore makes exactly one attempt, as the dispatcher wants it.
        """
        config = (
            None if retries else AioConfig(retries={"mode": "standard", "total_max_attempts": 1})
        )
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "config": config,
        }

    async def messages(self, *, body: bool = False) -> list[dict[str, Any]]:
        """Accepted messages, oldest first (bodies included with body=True)."""
        params = {"body": "1"} if body else {}
        return await self._call("GET", "/_sim/messages", params=params)  # type: ignore[no-any-return]

    async def stats(self) -> dict[str, Any]:
        return await self._call("GET", "/_sim/stats")  # type: ignore[no-any-return]

    async def reset(self) -> dict[str, Any]:
        return await self._call("POST", "/_sim/reset")  # type: ignore[no-any-return]

    async def config(self) -> dict[str, Any]:
        return await self._call("GET", "/_sim/config")  # type: ignore[no-any-return]

    async def configure(self, **settings: Any) -> dict[str, Any]:
        """Change SimSettings fields at runtime; answers the new settings."""
        return await self._call("POST", "/_sim/config", json=settings)  # type: ignore[no-any-return]

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        """Any /_sim/ call, e.g. admin("POST", "/_sim/identities", {"identity": "a.com"})."""
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        return await self._call(method, path, **kwargs)

    async def setup_account(
        self, *, identities: Sequence[str] = (), configuration_sets: Sequence[str] = ()
    ) -> None:
        """As a user would: CreateEmailIdentity (then the verification step) for each
        identity, CreateConfigurationSet for each set; paced to SES's 1 request/s."""
        await setup_account(
            self.endpoint_url,
            identities=identities,
            configuration_sets=configuration_sets,
            region=self.region,
        )

    async def verify(self, *identities: str) -> None:
        """Make identities (addresses or domains) verified, through the API as a user would."""
        await self.setup_account(identities=identities)

    async def create_identity(self, name: str) -> None:
        """CreateEmailIdentity only: the identity stays PENDING (unless auto_verify)."""
        await setup_account(self.endpoint_url, identities=(name,), region=self.region, verify=False)

    async def events(self) -> list[dict[str, Any]]:
        """The SES events generated so far (see /_sim/events)."""
        return await self._call("GET", "/_sim/events")  # type: ignore[no-any-return]

    async def record_events(self, record: bool = True) -> None:
        """Generate events even with no SNS subscriber and no file (to read them back)."""
        await self.admin("POST", "/_sim/events", {"record": record})

    async def certificate_pem(self) -> bytes:
        """The certificate the simulator signs SNS messages with: what a receiver pins."""
        async with self._http.get(self.endpoint_url + "/_sim/sns/certificate.pem") as resp:
            assert resp.status == 200, resp.status
            return await resp.read()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self._http.request(method, self.endpoint_url + path, **kwargs) as resp:
            payload = await resp.json()
            if resp.status != 200:
                raise AssertionError(f"{method} {path} -> {resp.status}: {payload}")
            return payload


def _faults_apart(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the settings to start with, the fault_* ones to switch on once the account is set up)."""
    faults = {k: v for k, v in settings.items() if k.startswith("fault_")}
    return {k: v for k, v in settings.items() if k not in faults}, faults


async def _set_up(
    handle: SimHandle,
    identities: Sequence[str],
    configuration_sets: Sequence[str],
    faults: dict[str, Any],
) -> SimHandle:
    """The account as a user set it up some time ago: its limits are full again (a reset).
    Faults start after that: set-up is not what a test of faults is about."""
    if identities or configuration_sets:
        await handle.setup_account(identities=identities, configuration_sets=configuration_sets)
        await handle.reset()
    if faults:
        await handle.configure(**faults)
    return handle


@asynccontextmanager
async def run_sim_process(
    *,
    identities: Sequence[str] = DEFAULT_IDENTITIES,
    configuration_sets: Sequence[str] = (),
    **settings: Any,
) -> AsyncIterator[SimHandle]:
    """`python -m dispatcher.sim --port 0 ...` in a child process, its account set up through
    the API; killed on exit."""
    plain, faults = _faults_apart(settings)
    async with (
        start_simulator(start_timeout=START_TIMEOUT, stop_timeout=STOP_TIMEOUT, **plain) as sim,
        aiohttp.ClientSession() as http,
    ):
        handle = SimHandle(sim.endpoint_url, http, region=sim.settings.region, pid=sim.pid)
        yield await _set_up(handle, identities, configuration_sets, faults)


@asynccontextmanager
async def run_sim_inprocess(
    *,
    identities: Sequence[str] = DEFAULT_IDENTITIES,
    configuration_sets: Sequence[str] = (),
    **settings: Any,
) -> AsyncIterator[SimHandle]:
    """The simulator on a free loopback port in this event loop, its account set up through
    the API; `.state` is the live SimState."""
    plain, faults = _faults_apart(settings)
    async with (
        start_simulator(in_process=True, **plain) as sim,
        aiohttp.ClientSession() as http,
    ):
        assert sim.server is not None
        handle = SimHandle(
            sim.endpoint_url, http, region=sim.settings.region, state=sim.server.state
        )
        yield await _set_up(handle, identities, configuration_sets, faults)


@pytest.fixture
def sim_process() -> SimFactory:
    """Factory: `async with sim_process(max_send_rate=...) as sim:` runs a simulator process."""
    return run_sim_process


@pytest.fixture
def sim_inprocess() -> SimFactory:
    """Factory: `async with sim_inprocess(max_send_rate=...) as sim:` runs one in this loop."""
    return run_sim_inprocess


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    """An in-process simulator with SES's default limits (14/s, 50 000/day), example.com
    verified."""
    async with run_sim_inprocess() as handle:
        yield handle


class SnsReceiver:
    """An HTTP endpoint on loopback that records every SNS POST (headers and JSON body)."""

    def __init__(self, status: int = 200) -> None:
        self.url = ""
        self.status = status  # what to answer; a test may change it to make deliveries fail
        self.posts: list[tuple[dict[str, str], dict[str, Any]]] = []
        self._arrived = asyncio.Condition()

    async def _handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        async with self._arrived:
            self.posts.append((dict(request.headers), body))
            self._arrived.notify_all()
        return web.Response(status=self.status)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [body for _, body in self.posts if body.get("Type") == kind]

    async def wait_for(
        self, kind: str, count: int = 1, within: float = 5.0
    ) -> list[dict[str, Any]]:
        """Wait (at most `within` seconds) until `count` POSTs of this Type have arrived."""
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(self.of_type(kind)) >= count)
        return self.of_type(kind)


@asynccontextmanager
async def sns_receiver(status: int = 200) -> AsyncIterator[SnsReceiver]:
    """`async with sns_receiver() as rx:` an SNS HTTP endpoint on a free loopback port."""
    receiver = SnsReceiver(status)
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver._handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        receiver.url = f"http://127.0.0.1:{port}/sns"
        yield receiver
    finally:
        await runner.cleanup()


@asynccontextmanager
async def clients(sim: SimHandle, *, paced: bool = False) -> AsyncIterator[tuple[Any, Any]]:
    """(ses, sesv2) clients on the simulator, one attempt per call (no botocore retries);
    `paced`: keeping to SES's 1 request/s on non-send actions."""
    session = aioboto3.Session()
    async with (
        session.client("ses", **sim.client_kwargs()) as v1,
        session.client("sesv2", **sim.client_kwargs()) as v2,
    ):
        yield (Paced(v1), Paced(v2)) if paced else (v1, v2)


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    """(code, message, HTTP status) of an SES error as botocore parsed it."""
    response: Any = exc.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )
