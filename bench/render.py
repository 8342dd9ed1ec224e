"""What rendering one campaign recipient costs: CSS inlined once per template vs per copy.

    python -m bench.render [--recipients 2000] [--rounds 5]

For each template (the benchmarks' plain campaign, a small one with a <style> rule, a
newsletter with 12 and with 40 products: <style> rules, layout tables, an {% if %} and a loop),
the same recipients are rendered by `CompiledCampaign.render` two ways in alternating rounds:
``per copy`` (every recipient's HTML rendered, then its CSS inlined: the code before issue 19)
and ``once`` (the template's CSS inlined when the campaign is compiled; a recipient costs the
Jinja renders). Both are checked to give the same message for every recipient, or the benchmark
fails. Reported: CPU ms per recipient (this process's CPU time, median of the rounds), the
ratio, and the compile time of each. Writes bench/results/render.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bench.harness import RESULTS
from dispatcher.campaigns.render import CampaignContent, CompiledCampaign, Rendered
from tests.support.templates import PLAIN, SMALL, newsletter

UNSUBSCRIBE = "https://example.com/u?e={{ email|urlencode }}&c={{ campaign_id }}"
TEMPLATES: dict[str, str] = {
    "plain (bench.rate's)": PLAIN,
    "small <style>": SMALL,
    "newsletter 12 products": newsletter(12),
    "newsletter 40 products": newsletter(40),
}
TIERS = ("gold", "silver", "")


def recipients(n: int) -> list[tuple[dict[str, str], str]]:
    """Varied variables (names with markup characters, empty values) and addresses."""
    out = []
    for i in range(n):
        variables = {
            "name": f"Person {i}",
            "first_name": ("Zoë", "Jo & Al", '"Bo"', "")[i % 4] + str(i),
            "last_name": "O'Neil" if i % 3 else "Smith",
            "city": "Lyon <centre>" if i % 5 == 0 else "Paris",
            "tier": TIERS[i % 3],
            "code": f"C{i:05d}",
        }
        out.append((variables, f"p{i}@example.com"))
    return out


def compile_(html: str, once: bool) -> tuple[CompiledCampaign, float]:
    content = CampaignContent(
        subject="News for {{ first_name }}",
        html=html,
        text="Hello {{ first_name }}, our news: https://example.com/news",
        unsubscribe_url=UNSUBSCRIBE,
    )
    began = time.perf_counter()
    compiled = CompiledCampaign(content, inline_once_ok=once)
    return compiled, (time.perf_counter() - began) * 1000


def render_all(
    campaign: CompiledCampaign, people: list[tuple[dict[str, str], str]]
) -> tuple[float, list[Rendered]]:
    """CPU ms per recipient, and the messages."""
    out = []
    began = time.process_time()
    for i, (variables, email) in enumerate(people):
        out.append(campaign.render(variables, email=email, campaign_id=7, message_id=i))
    return (time.process_time() - began) * 1000 / len(people), out


def one_template(name: str, html: str, n: int, rounds: int) -> dict[str, Any]:
    once, once_ms = compile_(html, True)
    each, each_ms = compile_(html, False)
    if once.inlined_per_recipient is not None:
        print(f"  note: {name} is inlined per copy: {once.inlined_per_recipient}")
    people = recipients(n)
    ms: dict[str, list[float]] = {"per copy": [], "once": []}
    for r in range(rounds):
        order = [("per copy", each), ("once", once)]
        if r % 2:
            order.reverse()
        messages = {}
        for label, campaign in order:
            cost, messages[label] = render_all(campaign, people)
            ms[label].append(cost)
        if messages["once"] != messages["per copy"]:
            raise SystemExit(f"bench.render: {name}: the two ways rendered different messages")
    per_copy, once_median = statistics.median(ms["per copy"]), statistics.median(ms["once"])
    return {
        "template": name,
        "html_bytes": len(html.encode()),
        "inlined_once": once.inlined_per_recipient is None,
        "cpu_ms_per_recipient": {"per copy": per_copy, "once": once_median},
        "rounds_ms": ms,
        "ratio_once_to_per_copy": once_median / per_copy,
        "compile_ms": {"per copy": each_ms, "once": once_ms},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.render",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--recipients", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    results = []
    print(f"{'template':<24} {'bytes':>6} {'per copy':>9} {'once':>7} {'ratio':>6}  compile ms")
    for name, html in TEMPLATES.items():
        r = one_template(name, html, args.recipients, args.rounds)
        results.append(r)
        cost, compile_ms = r["cpu_ms_per_recipient"], r["compile_ms"]
        print(
            f"{name:<24} {r['html_bytes']:>6} {cost['per copy']:>9.3f} {cost['once']:>7.3f} "
            f"{r['ratio_once_to_per_copy']:>6.2f}  {compile_ms['per copy']:.1f} -> "
            f"{compile_ms['once']:.1f}"
        )
    print("(CPU ms per recipient, median of rounds; ratio = once / per copy)")
    out = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.render " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {"recipients": args.recipients, "rounds": args.rounds},
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "render.json"
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
