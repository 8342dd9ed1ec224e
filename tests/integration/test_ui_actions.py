"""The dashboard's endpoints on real Postgres: who may open it, what state.json says about the
queue's lanes and campaigns, and that each button changes the database as its CLI command does
(after commit), answers 409 when there is nothing to do, and refuses a cross-site request."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from dispatcher.campaigns.recipients import iter_recipients
from dispatcher.campaigns.store import CampaignSpec, CampaignStore
from dispatcher.config import Config
from dispatcher.domain.jobs import NewMessage
from dispatcher.doors.keys import KeyStore, MasterKey
from dispatcher.doors.web import DoorContext, build_app
from dispatcher.feedback.store import FeedbackStore
from dispatcher.queue.repository import Queue
from dispatcher.worker.quota_store import SharedQuotaStore

ACTION = {"X-Dispatcher-Action": "1"}
RECIPIENTS = 5


@dataclass
class Ui:
    client: TestClient[Any, Any]
    ops: dict[str, str]  # Basic credentials of a key without limits
    shop: dict[str, str]  # ... of a key limited to one sender
    queue: Queue
    campaigns: CampaignStore
    campaign_id: int

    async def post(self, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
        headers = {**self.ops, **ACTION, **kw.pop("headers", {})}
        async with self.client.post(path, headers=headers, **kw) as resp:
            return resp.status, await resp.json()

    async def state(self, what: str = "campaigns") -> str:
        return str(
            await self.queue.pool.fetchval(
                f"SELECT state::text FROM dispatcher.{what} WHERE id = $1", self.campaign_id
            )
        )


def basic(user: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


@pytest.fixture
async def ui(queue: Queue, tmp_path: Path) -> AsyncIterator[Ui]:
    pool = queue.pool
    ctx = DoorContext(
        cfg=Config(),
        pool=pool,
        keys=KeyStore(pool),
        queue=queue,
        feedback=FeedbackStore(pool),
        quota=SharedQuotaStore(pool),
    )
    master = MasterKey.load(tmp_path / "keys.master", create=True)
    ops_key, ops_secret = await ctx.keys.create(master, "ops")
    shop_key, shop_secret = await ctx.keys.create(master, "shop", senders=["*@shop.example"])
    store = CampaignStore(pool)
    rows = "email\n" + "".join(f"r{i}@example.com\n" for i in range(RECIPIENTS))
    spec = CampaignSpec(
        name="spring",
        from_addr="news@example.com",
        subject="Hi",
        html="<p>Hi <a href='{{ unsubscribe_url }}'>unsubscribe</a></p>",
        unsubscribe_url="https://example.com/u?e={{ email|urlencode }}",
    )
    made = await store.create(spec, iter_recipients(io.BytesIO(rows.encode()), source="l.csv"))
    await store.start(made.id)  # running; no daemon here, so nothing is sent
    async with TestClient(TestServer(build_app(ctx))) as client:
        yield Ui(
            client,
            basic(ops_key.id, ops_secret),
            basic(shop_key.id, shop_secret),
            queue,
            store,
            made.id,
        )


async def test_only_a_key_without_limits_opens_the_page_and_its_numbers(ui: Ui) -> None:
    async with ui.client.get("/ui/") as resp:
        assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Basic")
    async with ui.client.get("/ui/state.json", headers=ui.shop) as resp:
        assert resp.status == 403
        assert "use a key made without --from" in (await resp.json())["error"]
    async with ui.client.get("/ui/", headers=ui.ops) as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        assert "/ui/static/dashboard.js" in await resp.text()
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    async with ui.client.get("/ui/static/dashboard.js") as resp:
        assert resp.status == 200 and resp.content_type == "text/javascript"
    async with ui.client.get("/ui/static/index.html") as resp:
        assert resp.status == 404
    await ui.queue.enqueue(
        NewMessage(from_addr="a@example.com", to=("b@example.com",), subject="s", text="x")
    )
    async with ui.client.get("/ui/state.json", headers=ui.ops) as resp:
        assert resp.status == 200
        view = await resp.json()
    queued = next(r for r in view["queue"] if r["state"] == "queued")
    assert queued == {"state": "queued", "total": RECIPIENTS + 1, "message": 1, "campaign": 5}
    (campaign,) = view["campaigns"]
    assert (campaign["id"], campaign["label"], campaign["state"]) == (
        ui.campaign_id,
        "spring",
        "running",
    )
    assert campaign["recipients"] == RECIPIENTS and campaign["actions"] == ["pause", "cancel"]
    assert view["rate"]["achieved"] is None  # no daemon in this process


async def test_pause_resume_and_cancel_change_the_campaign_as_the_cli_does(ui: Ui) -> None:
    cid = ui.campaign_id
    base = f"/ui/api/campaigns/{cid}"
    assert await ui.post(f"{base}/pause") == (
        200,
        {"ok": True, "message": f"campaign {cid} paused"},
    )
    assert await ui.state() == "paused"
    held = await ui.queue.pool.fetchval(
        "SELECT count(*) FROM dispatcher.jobs WHERE campaign_id = $1 AND state = 'held'", cid
    )
    assert held == RECIPIENTS
    status, again = await ui.post(f"{base}/pause")
    assert (status, again["error"]) == (409, f"campaign {cid} is paused, not running")
    assert (await ui.post(f"{base}/resume"))[0] == 200
    assert await ui.state() == "running"

    # Paused by the guard: resuming is a decision the page confirms (as --force).
    await ui.campaigns.pause(cid, reason="guard: bounce rate 6.0 % over 4.0 %")
    status, refused = await ui.post(f"{base}/resume")
    assert (status, refused["field"]) == (409, "force")
    assert "paused by the reputation guard" in refused["error"]
    assert await ui.state() == "paused"
    assert (await ui.post(f"{base}/resume", json={"force": True}))[0] == 200
    assert await ui.state() == "running"

    status, cancelled = await ui.post(f"{base}/cancel")
    assert (status, cancelled["message"]) == (
        200,
        f"campaign {cid} cancelled: {RECIPIENTS} unsent message(s) cancelled",
    )
    assert await ui.state() == "cancelled"
    assert (await ui.post(f"{base}/cancel"))[0] == 409
    assert (await ui.post("/ui/api/campaigns/999999/pause"))[0] == 404


async def test_in_doubt_mail_is_resolved_once_by_a_button(ui: Ui) -> None:
    msg = await ui.queue.enqueue(
        NewMessage(from_addr="a@example.com", to=("b@example.com",), subject="s", text="x")
    )
    await ui.queue.pool.execute(
        "UPDATE dispatcher.jobs SET state = 'unknown' WHERE id = $1", msg.id
    )
    status, body = await ui.post(f"/ui/api/in-doubt/{msg.id}/resend")
    assert (status, body["message"]) == (200, f"message {msg.id} queued again")
    job = await ui.queue.get(msg.id)
    assert job is not None and job.state == "queued"
    status, body = await ui.post(f"/ui/api/in-doubt/{msg.id}/failed")
    assert status == 409 and "not in doubt" in body["error"]


async def test_an_action_a_cross_site_page_could_send_is_refused(ui: Ui) -> None:
    path = f"/ui/api/campaigns/{ui.campaign_id}/pause"
    async with ui.client.post(path, headers=ui.ops) as resp:  # a form: no custom header
        assert resp.status == 403
        assert "X-Dispatcher-Action" in (await resp.json())["error"]
    status, _ = await ui.post(path, headers={"Origin": "https://evil.example"})
    assert status == 403
    status, _ = await ui.post(path, headers=ui.shop)  # a limited key, even from the page
    assert status == 403
    assert await ui.state() == "running"
    host = ui.client.make_url("/").host
    port = ui.client.make_url("/").port
    status, _ = await ui.post(path, headers={"Origin": f"https://{host}:{port}"})  # a proxy's TLS
    assert status == 200
    assert await ui.state() == "paused"
