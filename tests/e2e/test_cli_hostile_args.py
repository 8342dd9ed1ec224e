"""Every subcommand, fed hostile arguments: one line and a non-zero exit, never a traceback.

The commands are found by walking the argparse parser, so a new subcommand or option is
covered without touching this test. Each probe takes a command with plausible values in every
slot and puts one hostile value in one slot; all probes run in one child process
(tests/support/cli_batch.py), so the few hundred of them take seconds, not minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dispatcher.cli.main import build_parser
from tests.support.cli import CliResult, cli_env, run_cli
from tests.support.cli_batch import run_batch
from tests.support.sim import SimHandle

HUGE = "99999999999999999999"  # more than a bigint holds
NOT_UTF8 = b"x\xffy".decode("utf-8", "surrogateescape")  # b"x\xffy" as Python reads argv
MISSING = "/nonexistent/dir/x.csv"

# Probes left out as (command or None for any, option, value or None for any), and why: an
# empty --host listens on every interface, which a test must not open; `run --processes` with a
# huge number is refused by its own cap (item 8, tests/e2e/test_cli_processes.py), and where that
# cap is missing it starts workers by the thousand: not a probe to run blind.
LEFT_ALONE = {(None, "--host", None), ("run", "--processes", HUGE)}
# A command that serves (`sim`, and any later door with a --port) runs until stopped once its
# flags pass: probes give it a port that is taken (the test's own simulator), so a probe it
# accepts ends at once with "cannot listen" instead of serving.
BUSY_PORT = "--port"


@dataclass(frozen=True, slots=True)
class Slot:
    """Where a value goes: a positional (flag None) or an option that takes one, and its place
    in the plausible command line (None: an optional option, left out of it)."""

    flag: str | None
    action: argparse.Action
    at: int | None

    @property
    def numeric(self) -> bool:
        kind = self.action.type
        return kind in (int, float) or getattr(kind, "numeric", False)

    def set(self, base: list[str], value: str) -> list[str]:
        """``base`` with this slot set to ``value``; `--opt=-1`, so a leading `-` is a value."""
        if self.flag is None:
            assert self.at is not None
            # After `--` a value that starts with "-" is a positional, not an option.
            head = ["--"] if value.startswith("-") else []
            return [*base[: self.at], *head, value, *base[self.at + 1 :]]
        given = f"{self.flag}={value}"
        if self.at is None:
            return [*base, given]
        return [*base[: self.at], given, *base[self.at + 2 :]]


def leaf_parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(command words, parser) for every command that runs something."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, child in subs[0].choices.items():
        yield from leaf_parsers(child, (*path, name))


def plausible(action: argparse.Action, tmp: Path) -> str:
    """A value the slot would accept, so a probe tests only its one hostile value."""
    if action.choices:
        return str(next(iter(action.choices)))
    if action.type in (int, float) or getattr(action.type, "numeric", False):
        return "1"
    if action.type is Path or str(action.metavar).upper() in ("FILE", "PATH"):
        return str(tmp / "plausible.txt")
    return "x@example.com"


def slots_of(
    parser: argparse.ArgumentParser, tmp: Path, busy_port: int
) -> tuple[list[str], list[Slot]]:
    """A plausible command line for ``parser`` (positionals and required options filled, one
    member of each required exclusive group) and every slot a value can go in."""
    base: list[str] = []
    slots: list[Slot] = []
    groups_done: set[int] = set()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        group = next(
            (g for g in parser._mutually_exclusive_groups if action in g._group_actions), None
        )
        if group is not None and id(group) in groups_done:
            continue  # one member of an exclusive group at a time
        needed = action.required or (group is not None and group.required)
        if group is not None:
            groups_done.add(id(group))
        flag = action.option_strings[0] if action.option_strings else None
        if action.nargs == 0:  # a flag
            if needed and flag is not None:
                base.append(flag)
            continue
        if flag is None:
            slots.append(Slot(None, action, len(base)))
            base.append(plausible(action, tmp))
        elif flag == BUSY_PORT:
            slots.append(Slot(flag, action, len(base)))
            base += [flag, str(busy_port)]
        elif needed:
            slots.append(Slot(flag, action, len(base)))
            base += [flag, plausible(action, tmp)]
        else:
            slots.append(Slot(flag, action, None))
    return base, slots


def commands(tmp: Path, busy_port: int) -> Iterator[tuple[list[str], Slot | None, str]]:
    """(argv, the slot made hostile or None, the hostile value) for every probe."""
    hostile = (HUGE, "-1", "", NOT_UTF8, MISSING, str(tmp))
    for path, parser in leaf_parsers(build_parser()):
        base, slots = slots_of(parser, tmp, busy_port)
        for slot in slots:
            for value in hostile:
                if {(c, slot.flag, v) for c in (path[0], None) for v in (value, None)} & LEFT_ALONE:
                    continue
                yield [*path, *slot.set(base, value)], slot, value
        # Every command, even one with nothing to fill, meets one hostile argument.
        yield [*path, *base, NOT_UTF8], None, NOT_UTF8


def definitely_bad(slot: Slot | None, value: str) -> bool:
    """A value no command may accept in this slot (others may be fine, e.g. a -1 priority)."""
    if value == NOT_UTF8:
        return True
    return slot is not None and slot.numeric and value in (HUGE, "", MISSING)


async def test_every_subcommand_answers_hostile_arguments_with_one_line(
    pg_dsn: str, sim: SimHandle, tmp_path: Path
) -> None:
    (tmp_path / "plausible.txt").write_text("x@example.com\n")
    probes = list(commands(tmp_path, urlsplit(sim.endpoint_url).port or 0))
    env = cli_env(tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url)

    results = await run_batch(env, [argv for argv, _, _ in probes], workdir=tmp_path)

    failures: list[str] = []
    for (argv, slot, value), result in zip(probes, results, strict=True):
        problem = _problem(result, definitely_bad(slot, value))
        if problem:
            failures.append(f"{argv!a}: {problem}\n{_tail(result)}")
    top = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert {argv[0] for argv, _, _ in probes} == set(top.choices)  # every command is probed
    assert not failures, f"{len(failures)} of {len(probes)} probes:\n" + "\n".join(failures)


def _problem(result: CliResult, bad: bool) -> str | None:
    if "Traceback" in result.err:
        return "a traceback"
    if result.code == -1:
        return "still running after its limit"
    if bad and result.code == 0:
        return "accepted"
    if result.code != 0 and not result.messages:
        return f"exit {result.code} without a line that says why"
    errors = [m for m in result.messages if ": error: " in m or m.startswith("dispatcher-sim: ")]
    per_line = all(": line " in m for m in result.messages)  # enqueue, import: one per bad line
    if result.code == 2 and len(errors) != 1 and not per_line:
        return f"exit 2 with {len(errors)} error lines instead of one"
    return None


def _tail(result: CliResult) -> str:
    lines = result.err.strip().splitlines()[-3:]
    return "    exit " + str(result.code) + ": " + " | ".join(lines)


async def test_an_output_path_in_a_missing_directory_and_a_latin1_import_are_one_line(
    pg_dsn: str, tmp_path: Path
) -> None:
    env = cli_env(tmp_path, dsn=pg_dsn)
    (tmp_path / "list.csv").write_text("email\nx@example.com\n")
    (tmp_path / "t.html").write_text('<p>Hi</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>')
    created = await run_cli(
        env, "campaign", "create", "--name", "n", "--from", "news@example.com",
        "--subject", "Hi", "--template", "t.html", "--recipients", "list.csv",
        "--unsubscribe-url", "https://x.example/u?e={{ email|urlencode }}", cwd=tmp_path,
    )  # fmt: skip
    assert created.code == 0, created
    campaign_id = created.out.splitlines()[0]
    (tmp_path / "latin1.csv").write_bytes(
        "email\nok@example.com\nmüller@example.com\n".encode("latin-1")
    )

    report = await run_cli(env, "campaign", "report", campaign_id, "--csv", MISSING)
    imported = await run_cli(env, "suppression", "import", str(tmp_path / "latin1.csv"))

    assert (report.code, report.messages) == (
        2,
        [f"dispatcher: error: cannot write {MISSING}: No such file or directory"],
    ), report
    assert imported.code == 2, imported
    assert imported.messages == [
        f"dispatcher: error: {tmp_path / 'latin1.csv'}: line 3 is not UTF-8 (byte 0xfc); "
        "save the file as UTF-8"
    ], imported
    listed = await run_cli(env, "suppression", "list")
    assert listed.out == ""  # all or nothing: the good line before it is not imported either


async def test_a_reader_that_leaves_early_gets_no_traceback(pg_dsn: str, tmp_path: Path) -> None:
    env = cli_env(tmp_path, dsn=pg_dsn)
    many = "".join(f"reader{i}@example.com\n" for i in range(20_000))
    imported = await run_cli(env, "suppression", "import", "-", stdin=many.encode())
    assert imported.code == 0, imported
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", f"set -o pipefail; {sys.executable} -m dispatcher.cli.main "
        "suppression export | head -1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=tmp_path,
    )  # fmt: skip

    out, err = await asyncio.wait_for(proc.communicate(), 60)

    assert out == b"address,reason,created_at\r\n"
    assert b"Traceback" not in err and b"Exception ignored" not in err, err
    assert proc.returncode == 141, err  # as `cat` would end, for `set -o pipefail`
