"""What a subcommand's `set_defaults(func=...)` names: a coroutine from (arguments, config) to
the exit code; `main` has the one call site."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from dispatcher import app
from dispatcher.config import Config

if TYPE_CHECKING:
    from dispatcher.queue.repository import Queue

Command = Callable[[argparse.Namespace, Config], Coroutine[Any, Any, int]]
QueueCommand = Callable[[argparse.Namespace, Config, "Queue"], Coroutine[Any, Any, int]]


def with_queue(action: QueueCommand) -> Command:
    """The command that runs `action` on a queue opened for it, and closes the queue after."""

    async def command(args: argparse.Namespace, cfg: Config) -> int:
        async with app.open_queue(cfg) as queue:
            return await action(args, cfg, queue)

    return command
