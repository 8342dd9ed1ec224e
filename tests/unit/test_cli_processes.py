"""`dispatcher run --processes`: a count, or `auto` for one per core; anything else is refused."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import pytest

from dispatcher.cli.processes import (
    PARENT_PID_ENV,
    check_connections,
    check_cores,
    process_count,
)
from dispatcher.errors import InputError


def test_a_count_or_auto() -> None:
    assert process_count("1") == 1
    assert process_count("3") == 3
    assert process_count("auto") == process_count("AUTO") == max(1, os.cpu_count() or 1)


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
