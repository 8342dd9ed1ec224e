"""Many `dispatcher` commands in one child process, each as a user would see it.

Starting Python for each of hundreds of commands would take minutes, so one child (the main
thread of its own process, as the CLI expects) imports the CLI once and calls `main(argv)` per
command. Each command's stdout and stderr are captured at the file-descriptor level, so logs,
warnings and anything a library prints are caught too; an exception that escapes `main` is
printed as the interpreter would (a traceback, exit 1); a command still running after
`--limit` seconds is stopped by SIGALRM and reported as hung (exit -1).

    results = await run_batch(env, [["cancel", "1"], ["in-doubt", "list", "--limit", "-1"]])

Arguments are strings as Python decodes them from argv: a byte that is not UTF-8 arrives as a
lone surrogate (`"\\udcff"` for b"\\xff"), and travels to the child as JSON, which keeps it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.cli import REPO_ROOT, CliResult


class Hung(Exception):
    """Raised by SIGALRM in the child: a command outlived its limit."""


@dataclass(frozen=True, slots=True)
class _Captured:
    code: int
    out: str
    err: str


def _alarm(signum: int, frame: Any) -> None:
    raise Hung


def _run_one(argv: list[str], limit: float) -> _Captured:
    from dispatcher.cli.main import main

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        except Hung:
            code = -1
        except BaseException:  # what the interpreter would print: the point of the check
            traceback.print_exc()
            code = 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        out.seek(0)
        err.seek(0)
        return _Captured(
            code, out.read().decode(errors="replace"), err.read().decode(errors="replace")
        )


def _child(commands_file: str, results_file: str, limit: float) -> None:
    signal.signal(signal.SIGALRM, _alarm)
    commands = json.loads(Path(commands_file).read_text(encoding="utf-8"))
    # One line per command as it ends: if the batch is killed, the file shows how far it got.
    with Path(results_file).open("w", encoding="utf-8") as results:
        for argv in commands:
            results.write(json.dumps({"argv": argv}) + "\n")
            results.flush()
            got = _run_one(argv, limit)
            results.write(json.dumps({"code": got.code, "out": got.out, "err": got.err}) + "\n")
            results.flush()


async def run_batch(
    env: dict[str, str],
    commands: list[list[str]],
    *,
    workdir: Path,
    limit: float = 10.0,
    total: float = 110.0,
) -> list[CliResult]:
    """Run ``commands`` one after another in one child process; their results in order."""
    commands_file = workdir / "batch-commands.json"
    results_file = workdir / "batch-results.json"
    commands_file.write_text(json.dumps(commands), encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.cli_batch",
        str(commands_file),
        str(results_file),
        str(limit),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        cwd=str(workdir),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), total)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        done = results_file.read_text(encoding="utf-8").splitlines()
        last = json.loads(done[-1]).get("argv") if done else None
        raise AssertionError(
            f"the batch of {len(commands)} commands outlived {total} s; "
            f"{len(done) // 2} done, the last one started: {last!a}"
        ) from None
    assert proc.returncode == 0, (proc.returncode, out.decode(), err.decode())
    lines = [json.loads(line) for line in results_file.read_text(encoding="utf-8").splitlines()]
    return [
        CliResult(tuple(started["argv"]), ended["code"], ended["out"], ended["err"])
        for started, ended in zip(lines[::2], lines[1::2], strict=True)
    ]


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], float(sys.argv[3]))
