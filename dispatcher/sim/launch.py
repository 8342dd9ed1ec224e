"""Start the simulator for a caller and stop it after: in a child process as users run it
(`python -m dispatcher.sim`), or in this event loop with its live state open to the caller.
The demo, the benchmarks and the tests all start it here."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dispatcher.sim.cli import flags_for
from dispatcher.sim.server import READY_PREFIX, SimServer
from dispatcher.sim.settings import SimSettings

# The child imports the dispatcher this process runs, installed or not.
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class SimulatorStartError(RuntimeError):
    """The simulator did not start; the text says what it said or how long it was given."""


@dataclass(frozen=True, slots=True)
class RunningSimulator:
    """Where a started simulator listens, and what it is: a child's pid or the live server."""

    endpoint_url: str
    settings: SimSettings  # as asked for (a child applies --sandbox's limits on top)
    pid: int | None = None
    server: SimServer | None = None


@asynccontextmanager
async def start_simulator(
    *,
    in_process: bool = False,
    start_timeout: float = 30.0,
    stop_timeout: float = 5.0,
    **settings: Any,
) -> AsyncIterator[RunningSimulator]:
    """The simulator on a free loopback port with these SimSettings fields; stopped on exit.

    A child process gets them as its command-line flags and is sent SIGTERM on exit (SIGKILL
    after `stop_timeout`); a bad setting raises here, before any process starts.
    """
    asked = SimSettings(**settings)
    if in_process:
        async with SimServer(asked) as server:
            yield RunningSimulator(server.endpoint_url, asked, server=server)
        return
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatcher.sim",
        "--host=127.0.0.1",
        "--port=0",
        *flags_for(settings),
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), start_timeout)
        except TimeoutError:
            raise SimulatorStartError(
                f"the simulator printed no ready line within {start_timeout:g} s"
            ) from None
        text = line.decode(errors="replace").strip()
        if not text.startswith(READY_PREFIX):
            code = await proc.wait()
            raise SimulatorStartError(
                f"the simulator did not start (exit code {code}, it printed {text!r})"
            )
        yield RunningSimulator(text.removeprefix(READY_PREFIX), asked, pid=proc.pid)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), stop_timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if proc.stdout is not None:
            with contextlib.suppress(Exception):
                await proc.stdout.read()  # whatever it wrote after the ready line
