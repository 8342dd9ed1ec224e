"""`dispatcher run --processes`: a count, or `auto` for as many as the rate needs (at most one
per core); anything else is refused."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import pytest

from dispatcher.cli.processes import (
    AUTO,
    PARENT_PID_ENV,
    check_connections,
    check_cores,
    process_count,
    processes_for,
)
from dispatcher.errors import InputError


def test_a_count_or_auto() -> None:
    assert process_count("1") == 1
    assert process_count("3") == 3
    assert process_count("auto") == process_count("AUTO") == AUTO


def test_auto_is_one_process_per_thousand_of_the_rate_at_most_one_per_core() -> None:
    assert processes_for([14.0], cores=64) == 1  # not a process per core for a small account
    assert processes_for([1000.0], cores=64) == 1
    assert processes_for([1000.5], cores=64) == 2
    assert processes_for([3000.0], cores=2) == 2
    assert processes_for([600.0, 600.0], cores=8) == 2  # the accounts' rates add up
    assert processes_for([50_000.0], cores=4) == 4
    assert processes_for([], cores=4) == processes_for([0.0], cores=4) == 1


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5", ""])
def test_anything_else_says_what_is_accepted(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"whole number >= 1, or 'auto'"):
        process_count(text)


def test_at_most_four_per_core() -> None:
    check_cores(8, 2)
    with pytest.raises(InputError, match=r"--processes 9 is too many for 2 core\(s\): at most 8"):
        check_cores(9, 2)


def test_no_more_than_postgres_has_connections_for() -> None:
    check_connections(3, per_process=12, free=36, max_connections=100)
    with pytest.raises(InputError, match=r"only 36 of max_connections 100 are free: use "):
        check_connections(4, per_process=12, free=36, max_connections=100)


def test_an_orphan_that_does_not_stop_ends_at_its_deadline() -> None:
    """A child whose parent is gone, stuck however it may be, is ended `deadline` s later."""
    code = (
        "import asyncio\n"
        "from dispatcher.cli.processes import watch_parent\n"
        "async def main():\n"
        "    stop = asyncio.Event()\n"
        "    watch_parent(stop, 0.5)\n"
        "    await stop.wait()\n"
        "    await asyncio.Event().wait()  # stuck: never stops by itself\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, PARENT_PID_ENV: "1"}  # 'started by pid 1', which is not our parent
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], env=env, timeout=30, check=False)
    assert done.returncode == 1
    assert time.monotonic() - began < 10
