"""The simulator accepts a burst of new connections at once, as a sender opening its pool makes.

bench.rate at 3,000/s opened hundreds of connections in a second; with an accept queue of 1,024
the kernel dropped the overflow's handshakes, those requests stalled past the dispatcher's
15 s read timeout and their mail ended in doubt (451 of 30,000), which SES never causes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import resource
import socket
from pathlib import Path

import pytest

from dispatcher.sim.server import SimServer

BURST = 1500  # more than the old queue of 1,024


def _somaxconn() -> int:
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return 0


async def test_a_burst_of_connections_is_accepted_at_once() -> None:
    if _somaxconn() < BURST:
        pytest.skip(f"net.core.somaxconn below {BURST}: the kernel caps any accept queue there")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * BURST + 200  # both ends of every connection live in this process
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"needs {need} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    socks: list[socket.socket] = []
    try:
        async with SimServer() as sim:
            # No await between the connects: the server cannot accept while they arrive, so
            # all of them wait in the kernel's accept queue, as in a busy simulator.
            for _ in range(BURST):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                socks.append(s)
                code = s.connect_ex((sim.host, sim.port))
                assert code in (0, errno.EINPROGRESS), errno.errorcode.get(code, code)
            # A handshake the kernel dropped is retried after 1 s at the earliest.
            for _ in range(40):
                if sim.open_connections() == BURST:
                    break
                await asyncio.sleep(0.02)
            assert sim.open_connections() == BURST
    finally:
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()
