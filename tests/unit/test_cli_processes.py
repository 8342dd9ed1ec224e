"""`dispatcher run --processes`: a count, or `auto` for one per core; anything else is refused."""

from __future__ import annotations

import argparse
import os

import pytest

from dispatcher.cli.processes import process_count


def test_a_count_or_auto() -> None:
    assert process_count("1") == 1
    assert process_count("3") == 3
    assert process_count("auto") == process_count("AUTO") == max(1, os.cpu_count() or 1)


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5", ""])
def test_anything_else_says_what_is_accepted(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"whole number >= 1, or 'auto'"):
        process_count(text)
