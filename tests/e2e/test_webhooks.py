"""Issue 16's must-show: a webhook receiver that is down at first gets every event afterwards, in
order per message, each verified with the recipe in the README (its code block is run here, so
the README cannot drift from what the daemon signs)."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.support.cli import REPO_ROOT, cli_env, fetch, run_cli, start_cli, stop_cli
from tests.support.dispatch import eventually
from tests.support.moto import free_port
from tests.support.sim import SimFactory

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
SECRET = "e2e-webhook-secret-0123456789abcdef"
SIM = "simulator.amazonses.com"
# What each recipient makes of a message, as the receiver must see it.
EXPECTED = {
    f"success@{SIM}": ["queued", "sent", "delivered"],
    f"bounce@{SIM}": ["queued", "sent", "bounced"],
    f"complaint@{SIM}": ["queued", "sent", "delivered", "complained"],
}
RECIPIENTS = [f"success@{SIM}"] * 6 + [f"bounce@{SIM}"] * 3 + [f"complaint@{SIM}"] * 2


def readme_verify() -> Callable[[str, bytes, str], bool]:
    """The `verify` function of the README's Webhooks section, as a reader would paste it."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Webhooks\n") :]
    section = section[: section.index("\n## ", 1)]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    scope: dict[str, Any] = {}
    exec(compile(code, "README.md (Webhooks)", "exec"), scope)
    verify: Callable[[str, bytes, str], bool] = scope["verify"]
    return verify


class Receiver:
    """The application's webhook endpoint: records every POST with its raw body."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append((dict(request.headers), await request.read()))
        return web.Response(status=204)


async def test_a_receiver_down_at_first_gets_every_event_in_order_each_verified(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    verify = readme_verify()
    feedback_port, hook_port = free_port(), free_port()
    config = tmp_path / "dispatcher.toml"
    config.write_text(
        f"""
[feedback]
enabled = true
listen_port = {feedback_port}
allowed_topics = "{TOPIC}"

[[webhooks]]
url = "http://127.0.0.1:{hook_port}/hooks/mail"
secret = "{SECRET}"
timeout = 5.0
retry_base = 0.2
retry_max = 1.0
""",
        encoding="utf-8",
    )
    lines = "".join(
        json.dumps(
            {
                "from": "app@example.com",
                "to": [to],
                "subject": f"m{i}",
                "text": "hi",
                "idempotency_key": f"hook-{i}",
                "tags": {"order": f"o{i}"},
            }
        )
        + "\n"
        for i, to in enumerate(RECIPIENTS)
    )
    (tmp_path / "mail.jsonl").write_text(lines, encoding="utf-8")
    async with sim_process(max_send_rate=50) as sim:
        env = cli_env(
            tmp_path,
            dsn=pg_dsn,
            endpoint_url=sim.endpoint_url,
            DISPATCHER_CONFIG=str(config),
            DISPATCHER_FEEDBACK__TRUSTED_SIMULATOR=sim.endpoint_url,
        )
        daemon = await start_cli(env, "run", output=tmp_path / "daemon.log")
        receiver = Receiver()
        runner: web.AppRunner | None = None
        try:

            async def feedback_listening() -> bool:
                assert daemon.returncode is None, (tmp_path / "daemon.log").read_text()
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", feedback_port)
                except OSError:
                    return False
                writer.close()
                await writer.wait_closed()
                return True

            await eventually(feedback_listening, limit=30)
            await sim.admin(
                "POST",
                "/_sim/subscriptions",
                {"endpoint": f"http://127.0.0.1:{feedback_port}/sns", "topic_arn": TOPIC},
            )

            async def confirmed() -> bool:
                return any(s["confirmed"] for s in await sim.admin("GET", "/_sim/subscriptions"))

            await eventually(confirmed, limit=20)

            async def endpoint_synced() -> bool:  # the daemon's first step for webhooks
                rows = await fetch(
                    pg_dsn, "SELECT 1 FROM dispatcher.webhook_endpoints WHERE events <> '{}'"
                )
                return len(rows) == 1

            await eventually(endpoint_synced, limit=20)
            queued = await run_cli(env, "enqueue", str(tmp_path / "mail.jsonl"))
            assert queued.code == 0, queued
            unsubscribe = await run_cli(
                env, "suppression", "add", "gone@example.com", "--reason", "unsubscribed"
            )
            assert unsubscribe.code == 0, unsubscribe
            expected_total = sum(len(EXPECTED[to]) for to in RECIPIENTS) + 1

            # Nothing listens on the receiver's port: every event is written and tried, none
            # delivered, while the mail itself goes out undisturbed.
            async def all_written_and_tried() -> bool:
                rows = await fetch(
                    pg_dsn,
                    "SELECT count(*) AS n, count(*) FILTER (WHERE last_error IS NOT NULL) "
                    "AS failed FROM dispatcher.webhook_deliveries WHERE state = 'pending'",
                )
                return bool(rows[0]["n"] == expected_total and rows[0]["failed"] >= len(RECIPIENTS))

            await eventually(all_written_and_tried, limit=40)
            # The must-show's minute: DISPATCHER_TEST_WEBHOOK_DOWN=60 keeps the receiver down
            # that much longer (the suite keeps it short; the retries are the same).
            await asyncio.sleep(float(os.environ.get("DISPATCHER_TEST_WEBHOOK_DOWN", "0")))
            down = await run_cli(env, "webhooks", "--json")
            assert down.code == 0, down
            assert json.loads(down.out)["backlog"] == expected_total
            sent = await fetch(
                pg_dsn, "SELECT count(*) AS n FROM dispatcher.jobs WHERE state = 'sent'"
            )
            assert sent[0]["n"] == len(RECIPIENTS)

            # The receiver comes up on the configured port.
            app = web.Application()
            app.router.add_post("/hooks/mail", receiver.handle)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", hook_port).start()

            async def all_received() -> bool:
                return len(receiver.posts) >= expected_total

            await eventually(all_received, limit=30)
            await asyncio.sleep(1.0)  # a duplicate would show up in this second
            up = await run_cli(env, "webhooks", "--json")
            assert json.loads(up.out)["backlog"] == 0, up
            shown = await run_cli(env, "webhooks")
            assert shown.code == 0 and shown.out.splitlines()[:2] == [
                f"http://127.0.0.1:{hook_port}/hooks/mail",
                f"  backlog 0; delivered {expected_total}, given up 0 (last 7 days)",
            ], shown
        finally:
            code = await stop_cli(daemon)
            if runner is not None:
                await runner.cleanup()
        log = (tmp_path / "daemon.log").read_text()
        assert code == 0, log
    # One line when the receiver went missing, one when it came back: not one per event.
    names = [json.loads(line).get("event") for line in log.splitlines() if line.startswith("{")]
    assert names.count("webhook.endpoint_failing") == names.count("webhook.endpoint_back") == 1

    bodies: list[dict[str, Any]] = []
    for headers, raw in receiver.posts:
        assert verify(SECRET, raw, headers["Dispatcher-Signature"]), headers
        assert not verify(SECRET, raw + b" ", headers["Dispatcher-Signature"])
        assert not verify("another-secret-0123456789", raw, headers["Dispatcher-Signature"])
        body = json.loads(raw)
        assert headers["Dispatcher-Event-Id"] == str(body["id"])
        assert headers["Dispatcher-Event-Type"] == body["type"]
        bodies.append(body)
    # Exactly once here (nothing crashed); in general at least once, with a stable id.
    assert len(bodies) == len({b["id"] for b in bodies}) == expected_total

    by_message: dict[int, list[dict[str, Any]]] = {}
    for body in bodies:
        if body["message_id"] is not None:
            by_message.setdefault(body["message_id"], []).append(body)
    assert len(by_message) == len(RECIPIENTS)
    for events in by_message.values():
        to = events[0]["data"]["to"][0]
        assert [e["type"] for e in events] == EXPECTED[to], events
        assert {e["data"]["tags"]["order"] for e in events} == {events[0]["data"]["tags"]["order"]}
        ses_id = next(e for e in events if e["type"] == "sent")["data"]["ses_message_id"]
        assert ses_id and all(e["data"]["ses_message_id"] == ses_id for e in events[2:])
    bounced = [b for b in bodies if b["type"] == "bounced"]
    assert all(b["data"]["bounce_type"] == "Permanent" for b in bounced)
    assert [r["address"] for r in bounced[0]["data"]["recipients"]] == [f"bounce@{SIM}"]
    (unsubscribed,) = [b for b in bodies if b["type"] == "unsubscribed"]
    assert unsubscribed["data"]["address"] == "gone@example.com"
