"""CPU per sent message: the daemon (all its processes) and Postgres over the send span, next to
the bare aioboto3 loop of bench/baseline.py against the same simulator in the same run.

The daemon's figure counts only the span from its first to its last accepted send (the
simulator's clock, unix seconds): start-up (imports, connecting, the first GetSendQuota) and
the drain's end are not per-message costs. `TreeCpu` samples the CPU seconds of the `run`
process and its children (`run --processes N`) and of Postgres every `interval` seconds, and
interpolates them at the span's ends.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import psutil

from bench.baseline import send_all
from bench.messages import make_messages
from bench.services import REPO_ROOT

__all__ = ["ProcessTree", "TreeCpu", "bare_loop_child", "bare_loop_ms"]

REGION = "us-east-1"


class ProcessTree:
    """User + system CPU seconds of a process and its live descendants (0 once it is gone), for
    sampling many times a second: finding a tree's descendants reads every process of the
    machine (psutil's ppid map), so it is done once every `refresh` seconds, and each reading
    in between only reads the known processes' own CPU times. At 10 readings a second of three
    trees the full walk cost the benchmark ~15 % of a core, taken from the run it measures.

    `server=True` is for a server that forks a child per connection (Postgres): its direct
    children, plus the CPU of the children it has reaped (bench.services.tree_cpu's rule)."""

    def __init__(
        self,
        pid: int,
        *,
        server: bool = False,
        refresh: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pid = pid
        self._server = server
        self._refresh = refresh
        self._clock = clock
        self._procs: list[psutil.Process] = []
        self._found_at: float | None = None

    def __call__(self) -> float:
        now = self._clock()
        if self._found_at is None or now - self._found_at >= self._refresh:
            try:
                root = psutil.Process(self._pid)
                self._procs = [root, *root.children(recursive=not self._server)]
            except psutil.Error:
                self._procs = []
            self._found_at = now
        total = 0.0
        for i, proc in enumerate(self._procs):
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
                if self._server and i == 0:  # the root's reaped children
                    total += t.children_user + t.children_system
        return total


class TreeCpu:
    """CPU seconds of named sources, sampled against wall-clock time while a run lasts."""

    def __init__(self, sources: dict[str, Callable[[], float | None]], interval: float = 0.1):
        self._sources = sources
        self._interval = interval
        self._times: list[float] = []
        self._readings: dict[str, list[float]] = {name: [] for name in sources}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tree-cpu")

    async def stop(self) -> None:
        """Stop sampling, with one last sample: a daemon that exits within a sampling interval
        of its last send would otherwise leave the send span's end uncovered (a process that
        is gone reads as its last sample)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._sample()

    async def _run(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(self._interval)

    def _sample(self) -> None:
        now = time.time()
        values = {}
        for name, read in self._sources.items():
            value = read()
            if value is None:
                return
            # A child that exits takes its CPU out of the tree: readings never go back.
            previous = self._readings[name][-1] if self._readings[name] else 0.0
            values[name] = max(value, previous)
        self._times.append(now)
        for name, value in values.items():
            self._readings[name].append(value)

    def between(self, name: str, start: float, end: float) -> float | None:
        """CPU seconds `name` spent from `start` to `end` (unix seconds), interpolated."""
        if len(self._times) < 2 or start < self._times[0] or end > self._times[-1]:
            return None
        return self._at(name, end) - self._at(name, start)

    def _at(self, name: str, when: float) -> float:
        times, values = self._times, self._readings[name]
        i = bisect.bisect_left(times, when)
        if i == 0:
            return values[0]
        t0, t1 = times[i - 1], times[i]
        v0, v1 = values[i - 1], values[i]
        return v0 + (v1 - v0) * ((when - t0) / (t1 - t0) if t1 > t0 else 1.0)


async def bare_loop_ms(endpoint_url: str, messages: int, concurrency: int) -> dict[str, Any]:
    """CPU ms per message of bench/baseline.py's loop (this process) against the simulator."""
    batch = make_messages(messages)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    run = await send_all(endpoint_url, REGION, batch, concurrency)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if run.failed:
        raise RuntimeError(f"bare aioboto3 loop: {run.failed} of {messages} sends failed")
    return {
        "messages": messages,
        "concurrency": concurrency,
        "cpu_ms_per_msg": 1000.0 * cpu / messages,
        "msgs_per_s": messages / wall,
    }


async def bare_loop_child(endpoint_url: str, messages: int, concurrency: int) -> dict[str, Any]:
    """`bare_loop_ms` in a process of its own on uvloop, as the `dispatcher` CLI runs: this
    benchmark's own loop (sampling, the simulator's API) stays out of the figure."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.cpu", endpoint_url, str(messages), str(concurrency),
        stdout=asyncio.subprocess.PIPE, cwd=str(REPO_ROOT),
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bare aioboto3 loop exited {proc.returncode}")
    return json.loads(out)  # type: ignore[no-any-return]


if __name__ == "__main__":
    import uvloop

    url, count, tasks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(uvloop.run(bare_loop_ms(url, count, tasks))))
