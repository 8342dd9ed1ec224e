"""Issue 18 item 1, must show: an account at 50/s with google capped at 5/s and a campaign of
mixed domains. Google's lane stays at or under 5/s (the simulator's record of accepted sends),
the other providers together use the rest of the account rate, nothing is throttled, and the
non-google recipients finish long before the google ones; with one daemon and with two. A
company domain whose MX is Google's (Workspace) counts as google, found by an MX lookup
against a small DNS server."""

from __future__ import annotations

import asyncio
import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from tests.support.cli import cli_env, run_cli, start_cli
from tests.support.dns_server import dns_server
from tests.support.sim import SimFactory

ACCOUNT_RATE = 50.0
GOOGLE_RATE = 5.0
HTML = '<p>Hello {{ name }}</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
# 48 google recipients (gmail.com, googlemail.com and a Google Workspace company found by its
# MX), 192 at other providers (shipped ones, a company on its own MX, a domain without MX).
DOMAINS = [
    *["gmail.com"] * 3,
    "googlemail.com",
    *["outlook.com"] * 7,
    *["yahoo.com"] * 5,
    *["naver.com"] * 4,
    "workspace.example",
    *["shop.example"] * 3,
    "nomx.example",
]
GOOGLE = {"gmail.com", "googlemail.com", "workspace.example"}


def recipients(tmp_path: Path) -> tuple[Path, list[str]]:
    addresses: list[str] = []
    i = 0
    while len(addresses) < 240:
        for domain in DOMAINS:
            addresses.append(f"r{i}@{domain}")
            i += 1
    path = tmp_path / "list.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows(
            [("email", "name"), *((a, f"P{i}") for i, a in enumerate(addresses))]
        )
    return path, addresses


def max_in_window(stamps: list[float], width: float) -> int:
    """The most sends in any window of `width` seconds."""
    best, start = 0, 0
    for end in range(len(stamps)):
        while stamps[end] - stamps[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.mark.parametrize("daemons", [1, 2])
async def test_google_capped_at_5_per_second_does_not_hold_up_the_rest(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory, daemons: int
) -> None:
    listing, addresses = recipients(tmp_path)
    template = tmp_path / "template.html"
    template.write_text(HTML, encoding="utf-8")
    zone = {
        ("workspace.example", "MX"): ["1 aspmx.l.google.com.", "5 alt1.aspmx.l.google.com."],
        ("shop.example", "MX"): ["10 mx.shop.example."],
    }
    config = tmp_path / "dispatcher.toml"
    config.write_text('[[providers]]\nname = "google"\nrate = 5.0\n', encoding="utf-8")
    async with dns_server(zone) as ns, sim_process(max_send_rate=ACCOUNT_RATE) as sim:
        env = cli_env(
            tmp_path,
            dsn=pg_dsn,
            endpoint_url=sim.endpoint_url,
            DISPATCHER_CONFIG=str(config),
            DISPATCHER_LANES__NAMESERVERS=ns.address,
        )
        made = await run_cli(
            env,
            "campaign",
            "create",
            "--name",
            "mixed",
            "--from",
            "news@example.com",
            "--subject",
            "Hello {{ name }}",
            "--template",
            str(template),
            "--recipients",
            str(listing),
            "--unsubscribe-url",
            "https://x.example/u?e={{ email|urlencode }}",
        )
        assert made.code == 0, made
        campaign_id = int(made.out.splitlines()[0])
        assert (await run_cli(env, "campaign", "start", str(campaign_id))).code == 0
        procs = [
            await start_cli(env, "run", "--drain", output=tmp_path / f"d{i}.log")
            for i in range(daemons)
        ]
        try:
            codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), 60)
        finally:
            for p in procs:
                if p.returncode is None:
                    p.kill()
        logs = "\n".join((tmp_path / f"d{i}.log").read_text()[-3000:] for i in range(daemons))
        assert codes == [0] * daemons, logs
        received = await sim.messages()
        stats = await sim.stats()
        status = await run_cli(env, "status", "--json")

    by_address = {m["to"][0]: m["accepted_at"] for m in received}
    assert sorted(by_address) == sorted(addresses)  # everyone, once
    assert Counter(m["to"][0] for m in received).most_common(1)[0][1] == 1
    google = sorted(t for a, t in by_address.items() if a.split("@")[1] in GOOGLE)
    others = sorted(t for a, t in by_address.items() if a.split("@")[1] not in GOOGLE)
    start = min(google[0], others[0])
    google_rate = (len(google) - 1) / (google[-1] - google[0])
    others_rate = (len(others) - 1) / (others[-1] - others[0])
    summary = (
        f"{daemons} daemon(s): google {len(google)} at {google_rate:.2f}/s, most in 1 s "
        f"{max_in_window(google, 1.0)}, in 5 s {max_in_window(google, 5.0)}, done at "
        f"+{google[-1] - start:.1f} s; others "
        f"{len(others)} at {others_rate:.1f}/s, done at +{others[-1] - start:.1f} s; "
        f"throttled {stats['throttled']}"
    )
    print(summary)
    # The lane admits at most 5/s over any stretch of sending (tests/unit/test_lanes.py, with a
    # moved clock), plus what each process's lane bucket holds: one send, and a late one made up
    # for within its slack (0.2 s of its rate). What the simulator stamps also carries each
    # request's trip through a loaded machine: a few percent on a 10-second span. So over the
    # whole span, and over any 5 s, one more send per daemon at most (a run with two daemons saw
    # 50 sends in 9.24 s: 49 intervals against 5/s x 9.24 s x 1.05 + 2 = 50.5).
    span = google[-1] - google[0]
    assert len(google) - 1 <= GOOGLE_RATE * span * 1.05 + daemons, summary
    assert max_in_window(google, 5.0) <= 5 * GOOGLE_RATE + daemons, summary
    assert max_in_window(google, 1.0) <= GOOGLE_RATE + 2, summary
    # (the account's own bucket allows half a second of burst after an idle spell, as SES does)
    assert max_in_window(sorted(by_address.values()), 1.0) <= ACCOUNT_RATE * 1.5 + 1, summary
    # The others use the rest of the account rate (45/s), far above google's 5/s.
    assert others_rate >= 0.6 * (ACCOUNT_RATE - GOOGLE_RATE), summary
    assert stats["throttled"] == 0, summary
    assert others[-1] < google[-1] - 3.0, summary  # the rest finished long before google

    assert status.code == 0, status
    lanes = {lane["provider"]: lane for lane in json.loads(status.out)["lanes"]}
    assert lanes["google"]["rate"] == GOOGLE_RATE
    assert lanes["google"]["sent_today"] == len(google)
    assert lanes["google"]["waiting"] == 0 and lanes["google"]["backed_off"] is None


async def test_a_spent_daily_cap_holds_only_that_providers_mail(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    """google capped at 10 a day: 10 go, the rest wait for tomorrow (a drain ends: they are
    scheduled), and the other providers' mail all goes."""
    addresses = [f"g{i}@gmail.com" for i in range(25)] + [f"y{i}@yahoo.com" for i in range(25)]
    config = tmp_path / "dispatcher.toml"
    config.write_text('[[providers]]\nname = "google"\ndaily_cap = 10\n', encoding="utf-8")
    lines = "\n".join(
        json.dumps({"from": "news@example.com", "to": [a], "subject": "Hi", "text": "Hello"})
        for a in addresses
    )
    async with sim_process(max_send_rate=200) as sim:
        env = cli_env(
            tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url, DISPATCHER_CONFIG=str(config)
        )
        queued = await run_cli(env, "enqueue", "-", stdin=lines.encode())
        assert queued.code == 0, queued
        drain = await run_cli(env, "run", "--drain")
        assert drain.code == 0, drain
        received = [m["to"][0] for m in await sim.messages()]
        status = await run_cli(env, "status", "--json")
        text = await run_cli(env, "status")
    assert sum(a.endswith("@gmail.com") for a in received) == 10, drain
    assert sum(a.endswith("@yahoo.com") for a in received) == 25, drain
    assert "15 scheduled for later" in drain.err, drain
    lanes = {lane["provider"]: lane for lane in json.loads(status.out)["lanes"]}
    google = lanes["google"]
    assert (google["daily_cap"], google["sent_today"], google["waiting"]) == (10, 10, 15)
    assert google["cap_left"] == 0
    assert lanes["yahoo"]["sent_today"] == 25 and lanes["yahoo"]["rate"] is None
    assert any(
        line.split()[:1] == ["google"] and "cap 10/day" in line and "waiting       15" in line
        for line in text.out.splitlines()
    ), text.out
