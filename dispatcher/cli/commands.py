"""What a subcommand's `set_defaults(func=...)` names: a coroutine from (arguments, config) to
the exit code; `main` has the one call site."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine
from typing import Any

from dispatcher import app
from dispatcher.config import Config

Command = Callable[[argparse.Namespace, Config], Coroutine[Any, Any, int]]
StoresCommand = Callable[[argparse.Namespace, Config, app.Stores], Coroutine[Any, Any, int]]


def with_stores(action: StoresCommand) -> Command:
    """The command that runs `action` on the stores opened for it, and closes them after."""

    async def command(args: argparse.Namespace, cfg: Config) -> int:
        async with app.open_stores(cfg) as stores:
            return await action(args, cfg, stores)

    return command
