"""The dashboard as an operator uses it, in a real headless chromium (Debian's, driven by
playwright): opened during a running campaign of a real `dispatcher run` with `[api]` enabled,
its numbers move, one click pauses the campaign (the database says paused, the simulator gets
no more of its mail), another resolves an in-doubt message; a screenshot is kept. With
`[[providers]]` configured, the page shows each provider lane (issue 18 item 1), and with
several `[[accounts]]` each account (item 4)."""

from __future__ import annotations

import asyncio
import base64
import csv
import json
import re
import shutil
import socket
from pathlib import Path

import aiohttp
import pytest

from tests.support.cli import cli_env, fetch, run_cli, start_cli, stop_cli
from tests.support.dispatch import eventually
from tests.support.sim import SimFactory

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"  # ignored by git
RECIPIENTS = 400  # at 8/s the campaign outlasts the test
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def basic(key_id: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def make_key(env: dict[str, str], name: str, *limits: str) -> tuple[str, str]:
    made = await run_cli(env, "keys", "create", name, *limits, "--json")
    assert made.code == 0, made
    key = json.loads(made.out)
    return str(key["id"]), str(key["secret"])


async def make_campaign(env: dict[str, str], tmp_path: Path) -> int:
    recipients = tmp_path / "list.csv"
    with recipients.open("w", newline="", encoding="utf-8") as out:
        rows = [(f"success+{i}@simulator.amazonses.com", f"P{i}") for i in range(RECIPIENTS)]
        csv.writer(out).writerows([("email", "name"), *rows])
    template = tmp_path / "template.html"
    template.write_text('<p>Hi {{ name }} <a href="{{ unsubscribe_url }}">unsubscribe</a></p>')
    made = await run_cli(
        env,
        "campaign",
        "create",
        "--name",
        "spring news",
        "--from",
        "news@example.com",
        "--subject",
        "Hello {{ name }}",
        "--template",
        str(template),
        "--recipients",
        str(recipients),
        "--unsubscribe-url",
        "https://x.example/u?e={{ email|urlencode }}",
    )
    assert made.code == 0, made
    campaign_id = int(made.out.splitlines()[0])
    started = await run_cli(env, "campaign", "start", str(campaign_id))
    assert started.code == 0, started
    return campaign_id


async def in_doubt_message(env: dict[str, str], dsn: str, tmp_path: Path) -> int:
    """One message left in doubt, as a daemon killed mid-send leaves it (its recovery's state)."""
    line = json.dumps(
        {
            "from": "alerts@example.com",
            "to": ["ops@example.com"],
            "subject": "<b>disk full</b>",  # shown as text, not markup
            "text": "x",
            "send_after": "2099-01-01T00:00:00Z",
        }
    )
    jsonl = tmp_path / "alert.jsonl"
    jsonl.write_text(line + "\n", encoding="utf-8")
    queued = await run_cli(env, "enqueue", str(jsonl))
    assert queued.code == 0, queued
    (row,) = await fetch(
        dsn,
        "UPDATE dispatcher.jobs SET state = 'unknown', last_outcome = 'in_doubt', "
        "last_error = 'connection reset after the request was sent' "
        "WHERE campaign_id IS NULL RETURNING id",
    )
    return int(row["id"])


async def test_dashboard_shows_a_running_campaign_and_pauses_it_by_a_click(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    from playwright.async_api import async_playwright, expect

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with sim_process(max_send_rate=8, max_24_hour_send=5000) as sim:
        env = cli_env(
            tmp_path,
            dsn=pg_dsn,
            endpoint_url=sim.endpoint_url,
            DISPATCHER_API__ENABLED="true",
            DISPATCHER_API__LISTEN_PORT=str(port),
        )
        key_id, secret = await make_key(env, "ops")
        limited = await make_key(env, "shop", "--from", "*@shop.example.com")
        campaign_id = await make_campaign(env, tmp_path)
        doubt_id = await in_doubt_message(env, pg_dsn, tmp_path)
        daemon = await start_cli(env, "run", output=tmp_path / "run.log")
        try:

            async def campaign_sent() -> int:
                (row,) = await fetch(
                    pg_dsn,
                    "SELECT count(*) AS n FROM dispatcher.jobs WHERE campaign_id = $1 "
                    "AND state = 'sent'",
                    campaign_id,
                )
                return int(row["n"])

            async def sending() -> bool:
                assert daemon.returncode is None, (tmp_path / "run.log").read_text()
                return await campaign_sent() >= 5

            await eventually(sending, limit=30, step=0.2)

            # Who may open it, and what a cross-site page cannot do with the browser's key.
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/ui/") as resp:
                    assert resp.status == 401
                    assert resp.headers["WWW-Authenticate"].startswith("Basic")
                async with http.get(f"{base}/ui/state.json", headers=basic(*limited)) as resp:
                    assert resp.status == 403
                    assert "without --from" in (await resp.json())["error"]
                pause_url = f"{base}/ui/api/campaigns/{campaign_id}/pause"
                async with http.post(pause_url, headers=basic(key_id, secret)) as resp:
                    assert resp.status == 403  # no X-Dispatcher-Action: a form could send it
                forged = basic(key_id, secret) | {
                    "X-Dispatcher-Action": "1",
                    "Origin": "https://evil.example",
                }
                async with http.post(pause_url, headers=forged) as resp:
                    assert resp.status == 403
            assert (await fetch(pg_dsn, "SELECT state::text FROM dispatcher.campaigns"))[0][
                0
            ] == "running"

            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
                try:
                    context = await browser.new_context(
                        http_credentials={"username": key_id, "password": secret},
                        viewport={"width": 1200, "height": 1000},
                    )
                    page = await context.new_page()
                    problems: list[str] = []
                    page.on("pageerror", lambda exc: problems.append(str(exc)))
                    await page.goto(f"{base}/ui/")
                    row = page.locator(f'#campaigns tr[data-campaign="{campaign_id}"]')
                    await expect(row).to_contain_text("spring news")
                    await expect(row).to_contain_text("running")

                    # The numbers move: the sent count grows between two reads.
                    sent_cell = row.locator("td.sent")
                    first = int((await sent_cell.inner_text()).replace(",", ""))
                    await page.wait_for_function(
                        "([sel, n]) => Number(document.querySelector(sel).textContent"
                        ".replace(/,/g, '')) > n",
                        arg=[f'#campaigns tr[data-campaign="{campaign_id}"] td.sent', first],
                        timeout=10_000,
                    )
                    await expect(page.locator("#rate-achieved")).not_to_have_text("0")
                    await expect(page.locator("#chart polyline.achieved")).to_have_attribute(
                        "points",
                        re.compile(r"\d.* \d"),  # a line of at least two points
                    )
                    await expect(page.locator("#quota")).to_contain_text("of 5,000 used")
                    await expect(page.locator("#in-doubt")).to_contain_text("<b>disk full</b>")
                    await expect(page.locator("#lanes-card")).to_be_hidden()  # no [[providers]]

                    # Pause by a click: paused in the database, and its mail stops.
                    await row.locator('button[data-action="pause"]').click()
                    await expect(page.locator("#notice")).to_have_text(
                        f"campaign {campaign_id} paused"
                    )
                    (state,) = await fetch(
                        pg_dsn,
                        "SELECT state::text AS s FROM dispatcher.campaigns WHERE id = $1",
                        campaign_id,
                    )
                    assert state["s"] == "paused"
                    await expect(row).to_contain_text("paused by operator")
                    await expect(row.locator('button[data-action="resume"]')).to_be_visible()

                    shot = tmp_path / "dashboard.png"
                    await page.screenshot(path=str(shot), full_page=True)

                    # Resolve the in-doubt message as sent, by a click.
                    doubt = page.locator("#in-doubt tr", has_text="disk full")
                    await doubt.locator('button[data-action="sent"]').click()
                    await expect(page.locator("#notice")).to_have_text(
                        f"message {doubt_id} recorded as sent"
                    )
                    await expect(page.locator("#in-doubt")).not_to_contain_text("disk full")
                    await expect(page.locator("#in-doubt-total")).to_have_text("(0)")
                    assert not problems, problems
                finally:
                    await browser.close()

            # Sends on the wire at the click may still land; after that, none.
            await asyncio.sleep(1.0)
            settled, accepted = await campaign_sent(), (await sim.stats())["accepted"]
            await asyncio.sleep(2.0)
            assert (await sim.stats())["accepted"] == accepted
            assert await campaign_sent() == settled < RECIPIENTS
            (doubt,) = await fetch(
                pg_dsn, "SELECT state::text AS s FROM dispatcher.jobs WHERE id = $1", doubt_id
            )
            assert doubt["s"] == "sent"
            code = await stop_cli(daemon, limit=30)
        finally:
            if daemon.returncode is None:
                daemon.kill()
                await daemon.wait()
    assert code == 0, (tmp_path / "run.log").read_text()[-3000:]
    ARTIFACTS.mkdir(exist_ok=True)
    kept = ARTIFACTS / "dashboard.png"
    shutil.copyfile(shot, kept)
    print(f"dashboard screenshot: {kept}")


async def test_dashboard_shows_each_provider_lane_when_providers_are_configured(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    from playwright.async_api import async_playwright, expect

    port = free_port()
    config = tmp_path / "dispatcher.toml"
    lines = [
        json.dumps(
            {"from": "a@example.com", "to": [f"r{i}@gmail.com"], "subject": "s", "text": "x"}
        )
        for i in range(3)
    ]
    jsonl = tmp_path / "gmail.jsonl"
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    async with sim_process(max_send_rate=20) as sim:
        # Two SES accounts (issue 18 item 4); the lanes shown are the first (default) one's,
        # whatever its name.
        config.write_text(
            '[[providers]]\nname = "google"\nrate = 5.0\ndaily_cap = 1000\n\n'
            '[[accounts]]\nname = "brand-a"\n\n'
            '[[accounts]]\nname = "brand-b"\nregion = "eu-west-1"\n'
            f'endpoint_url = "{sim.endpoint_url}"\n',
            encoding="utf-8",
        )
        env = cli_env(
            tmp_path,
            dsn=pg_dsn,
            endpoint_url=sim.endpoint_url,
            DISPATCHER_CONFIG=str(config),
            DISPATCHER_API__ENABLED="true",
            DISPATCHER_API__LISTEN_PORT=str(port),
        )
        key_id, secret = await make_key(env, "ops")
        assert (await run_cli(env, "enqueue", str(jsonl))).code == 0
        daemon = await start_cli(env, "run", output=tmp_path / "run.log")
        try:

            async def all_sent() -> bool:
                assert daemon.returncode is None, (tmp_path / "run.log").read_text()
                rows = await fetch(pg_dsn, "SELECT state::text AS s FROM dispatcher.jobs")
                return [r["s"] for r in rows] == ["sent"] * 3

            await eventually(all_sent, limit=30, step=0.2)
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
                try:
                    context = await browser.new_context(
                        http_credentials={"username": key_id, "password": secret}
                    )
                    page = await context.new_page()
                    problems: list[str] = []
                    page.on("pageerror", lambda exc: problems.append(str(exc)))
                    await page.goto(f"http://127.0.0.1:{port}/ui/")
                    await expect(page.locator("#lanes-card")).to_be_visible()
                    google = page.locator('#lanes tr[data-provider="google"]')
                    cells = google.locator("td")
                    await expect(cells).to_have_text(
                        ["google", "5/s", re.compile(r"^1,000 \([\d,]+ left\)$"), "3", "no"],
                        timeout=10_000,
                    )
                    brand_b = page.locator('#accounts tr[data-account="brand-b"] td')
                    await expect(brand_b.nth(1)).to_have_text("eu-west-1")
                    await expect(brand_b.nth(4)).to_have_text("0")  # queued: mail went to brand-a
                    await expect(brand_b.nth(5)).to_have_text("sending")
                    assert not problems, problems
                finally:
                    await browser.close()
            code = await stop_cli(daemon, limit=30)
        finally:
            if daemon.returncode is None:
                daemon.kill()
                await daemon.wait()
    assert code == 0, (tmp_path / "run.log").read_text()[-3000:]
