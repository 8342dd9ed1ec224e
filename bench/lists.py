"""The campaign the benchmarks send: its recipient list, templates and `campaign create` line."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from bench.harness import BenchError, Finished

__all__ = [
    "HTML",
    "TEXT",
    "UNSUBSCRIBE",
    "address",
    "create_args",
    "created",
    "write_list",
    "write_templates",
]

HTML = """<html><body>
<p>Hello {{ name }},</p>
<p>Our autumn news: a short paragraph of the kind a newsletter carries, long enough to look like
mail and short enough to keep the benchmark about the dispatcher, not about rendering.</p>
<p><a href="https://example.com/news">Read more</a></p>
</body></html>
"""
TEXT = "Hello {{ name }},\n\nOur autumn news. Read more: https://example.com/news\n"
UNSUBSCRIBE = "https://example.com/u?e={{ email|urlencode }}&c={{ campaign_id }}"


def address(i: int) -> str:
    return f"success+{i}@simulator.amazonses.com"


def write_list(path: Path, n: int) -> Path:
    """A CSV of n recipients (email, name), written in pieces."""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,name\n")
        for start in range(0, n, 10_000):
            out.write(
                "".join(f"{address(i)},Person {i}\n" for i in range(start, min(n, start + 10_000)))
            )
    return path


def write_templates(work: Path) -> tuple[Path, Path]:
    html, text = work / "template.html", work / "template.txt"
    html.write_text(HTML, encoding="utf-8")
    text.write_text(TEXT, encoding="utf-8")
    return html, text


def create_args(name: str, recipients: Path, html: Path, text: Path) -> list[str]:
    return [
        "campaign", "create", "--name", name, "--from", "news@example.com",
        "--subject", "Hello {{ name }}", "--template", str(html), "--text-template", str(text),
        "--unsubscribe-url", UNSUBSCRIBE, "--recipients", str(recipients), "--json",
    ]  # fmt: skip


def created(done: Finished, n: int) -> int:
    """The campaign id from `create --json`, after checking all n rows were imported."""
    payload: dict[str, Any] | None = None
    for line in done.output.splitlines():
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict) and "imported" in obj:
                payload = obj
    if payload is None:
        raise BenchError(f"`campaign create --json` printed no result:\n{done.output[-2000:]}")
    if payload["imported"] != n or payload["rejected"]:
        raise BenchError(
            f"campaign create imported {payload['imported']} of {n}, "
            f"rejected {len(payload['rejected'])}: {payload['rejected'][:3]}"
        )
    return int(payload["id"])
