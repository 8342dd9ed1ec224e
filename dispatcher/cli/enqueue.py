"""`dispatcher enqueue FILE`: JSON lines into the queue, every line accounted for.

Each bad line is reported by number and skipped; the good ones are queued in chunks, each one
statement (all of it committed or none). SIGINT or SIGTERM stops the import after the chunk in
hand and the summary says what was committed. Lines without an idempotency key get one from
their content (jsonl.DefaultKeys), so running the same command again queues only what is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import asyncpg  # type: ignore[import-untyped]

from dispatcher import app
from dispatcher.cli.jsonl import (
    DEFAULT_PREFIX,
    MAX_LINE_BYTES,
    MAX_PREFIX,
    MIB,
    BadLine,
    DefaultKeys,
    capped_lines,
    parse_lines,
)
from dispatcher.cli.progress import counted
from dispatcher.config import Config
from dispatcher.domain.jobs import NewMessage
from dispatcher.errors import InputError

CHUNK = 5000  # lines per statement: what an interrupt may have to wait for (well under 1 s)
# ... or fewer, once their bodies and attachments reach this: a chunk is held in memory (its
# attachments twice, decoded and built into MIME) until it is committed.
CHUNK_BYTES = 64 * MIB

# What a message can raise that is about the message (not the database being away): the driver
# refusing a value (UnicodeEncodeError is a ValueError), Postgres refusing it, our validation.
_REFUSED = (InputError, asyncpg.DataError, ValueError, OverflowError)

EPILOG = f"""\
Bad lines are reported by number on stderr and skipped; the rest is queued; exit 2 if a line was
bad. A line without "idempotency_key" gets PREFIX:HASH:N, HASH from the message's content and N
counting identical lines in the input, so enqueueing the same file (or the file with bad lines
fixed, or lines added) again queues nothing twice. The keys are kept: identical content enqueued
again later, from any file or stdin, is also skipped (reported as already queued) unless you
give another --idempotency-prefix, e.g. a date. Stdin (-) gets the same keys as a file would.
A line longer than {MAX_LINE_BYTES // MIB} MiB is reported and skipped unread (SES takes at
most 40 MiB a message). SIGINT/SIGTERM stop after the chunk in hand ({CHUNK} lines), print what
was committed, and exit 130/143; run the same command again to queue the rest. (Reading stdin, a
signal takes effect once the chunk has been read: a writer that stops writing should close its
end.)
"""


def idempotency_prefix(text: str) -> str:
    """`--idempotency-prefix`: non-empty, and short enough to leave room for the hash."""
    if not text or len(text) > MAX_PREFIX or not text.isprintable():
        raise argparse.ArgumentTypeError(
            f"give 1 to {MAX_PREFIX} printable characters, e.g. 2026-11-28 or newsletter-42"
        )
    return text


def add_parser(sub: Any) -> None:
    enqueue = sub.add_parser(
        "enqueue",
        help="queue messages from JSON lines (FILE or - for stdin)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    enqueue.add_argument("file", metavar="FILE")
    enqueue.add_argument(
        "--idempotency-prefix",
        type=idempotency_prefix,
        default=DEFAULT_PREFIX,
        metavar="PREFIX",
        help=f"starts the key given to lines without one (default {DEFAULT_PREFIX!r})",
    )
    enqueue.set_defaults(func=cmd_enqueue)


@dataclass(slots=True)
class Tally:
    """What happened to the lines so far."""

    queued: int = 0
    existing: int = 0
    bad: list[BadLine] = field(default_factory=list)
    committed_through: int = 0  # every line up to this one is queued or reported

    def summary(self) -> str:
        text = f"queued {self.queued} message(s)"
        if self.existing:
            text += f"; {self.existing} already queued under the same idempotency key"
        if self.bad:
            text += f"; {len(self.bad)} bad line(s) skipped (fix and enqueue them again)"
        return text


class _Stop:
    """The first SIGINT/SIGTERM, noted for the import loop to act on between chunks."""

    __slots__ = ("signum",)

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum


@contextlib.contextmanager
def _signals(stop: _Stop) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not on Windows, and not outside the main thread: then a signal interrupts as usual.
        with contextlib.suppress(NotImplementedError, ValueError, RuntimeError):
            loop.add_signal_handler(sig, stop, int(sig))
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _open(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        # A CLI reading its own input file: blocking here stalls nothing else.
        return Path(path).open("rb")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _weight(msg: NewMessage) -> int:
    """Roughly what a message holds in memory until its chunk is committed."""
    attached = sum(len(a.content) for a in msg.attachments)
    return attached + len(msg.text or "") + len(msg.html or "")


def _report(path: str, bad: BadLine, tally: Tally) -> None:
    tally.bad.append(bad)
    print(f"{path}: line {bad.line}: {bad.error}", file=sys.stderr)


async def _commit(queue: Any, chunk: list[tuple[int, NewMessage]], tally: Tally, path: str) -> None:
    """Queue a chunk in one statement; if the database refuses it, line by line to find why."""
    if not chunk:
        return
    try:
        results = await queue.enqueue_many([msg for _, msg in chunk])
    except _REFUSED:
        # Parsing let through something only the database (or its driver) refuses; the chunk
        # was not written. One at a time names the line and keeps the rest.
        for number, msg in chunk:
            try:
                (result,) = await queue.enqueue_many([msg])
            except _REFUSED as exc:
                reason = str(exc).removeprefix("message 0: ")
                _report(path, BadLine(number, f"refused: {reason}"), tally)
                continue
            tally.queued += result.created
            tally.existing += not result.created
        return
    created = sum(1 for r in results if r.created)
    tally.queued += created
    tally.existing += len(results) - created


async def cmd_enqueue(args: argparse.Namespace, cfg: Config) -> int:
    path: str = args.file
    stream = _open(path)
    tally = Tally()
    stop = _Stop()
    interrupted = failed = True
    try:
        with _signals(stop):
            async with app.open_queue(cfg) as queue:
                chunk: list[tuple[int, NewMessage]] = []
                last = held = 0
                lines = capped_lines(stream)
                parsed = parse_lines(lines, DefaultKeys(args.idempotency_prefix))
                for last, item in counted(parsed, "queuing", unit="line"):
                    if item is None:
                        # Dropping an overlong line (maybe /dev/zero): let a signal in, and
                        # stop here if one came, with what is in hand queued.
                        await asyncio.sleep(0)
                        if stop.signum is None:
                            continue
                        await _commit(queue, chunk, tally, path)
                        chunk, tally.committed_through = [], last
                        break
                    if isinstance(item, BadLine):
                        _report(path, item, tally)
                    else:
                        chunk.append((last, item))
                        held += _weight(item)
                    if len(chunk) >= CHUNK or held >= CHUNK_BYTES:
                        await _commit(queue, chunk, tally, path)
                        chunk, tally.committed_through, held = [], last, 0
                        # A signal is seen here, where the loop had control: between chunks.
                        if stop.signum is not None:
                            break
                else:
                    if chunk:
                        await _commit(queue, chunk, tally, path)
                    tally.committed_through = last
                    interrupted = False
        failed = False
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
        if failed and tally.committed_through:
            # An error is on its way to the user: say first what is queued for good.
            print(f"{tally.summary()} (through line {tally.committed_through})")
    if interrupted and stop.signum is not None:
        name = signal.Signals(stop.signum).name
        print(f"{tally.summary()} (through line {tally.committed_through})")
        print(
            f"{name}: stopped after line {tally.committed_through}; the lines after it were not "
            "read. Run the same command again to queue them: the lines already queued are "
            "recognised by their idempotency keys and skipped.",
            file=sys.stderr,
        )
        return 128 + stop.signum
    print(tally.summary())
    return 2 if tally.bad else 0
