"""The claim and the materialiser read only what they hand out, with stale statistics.

At 3,000 recipients/s (bench.rate) a claim of 100 took 13-18 ms of Postgres: the campaign's
lane offer read every queued job of the campaign (25,300, the materialiser keeps seconds of
sending ready) through jobs_campaign and sorted them, because the statistics did not know the
campaign's rows (a table never analysed). Such statistics are the normal case at a campaign's
start, and in a big table the planner guesses one campaign's rows from the average; so both
indexes the offer may use keep its order (migration 0024).
"""

from __future__ import annotations

import io
import uuid

from dispatcher.campaigns import materialise
from dispatcher.campaigns.materialise import materialise_chunk
from dispatcher.campaigns.recipients import iter_recipients
from dispatcher.campaigns.store import CampaignSpec, CampaignStore
from dispatcher.queue.repository import Queue, query
from tests.support.plans import explained

QUEUED = 24_000  # ready to claim: what the materialiser keeps at 2,000/s (10 s)
CLAIM = 100


async def test_a_claim_reads_no_more_than_it_hands_out_with_stale_statistics(
    queue: Queue,
) -> None:
    # A new database: the jobs table was never analysed (as at a fresh install's first
    # campaign, or in a benchmark), so the planner knows nothing of the campaign's rows.
    store = CampaignStore(queue.pool)
    listing = "email,name\n" + "".join(f"r{i}@example.org,P{i}\n" for i in range(QUEUED))
    spec = CampaignSpec(
        name="big", from_addr="news@example.com", subject="Hi", html="<p>Hi {{ name }}</p>"
    )
    made = await store.create(spec, iter_recipients(io.BytesIO(listing.encode()), source="l.csv"))
    await store.start(made.id)  # its first chunk
    async with queue.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT id FROM dispatcher.campaigns WHERE id = $1 FOR UPDATE", made.id)
        moved, last = 1, 0
        while moved:  # the rest, as the materialiser moves them
            moved, last = await materialise_chunk(conn, made.id, 5000, last)
    async with queue.pool.acquire() as conn:  # sending has begun: the first 4,000 went out
        await conn.execute(
            "UPDATE dispatcher.jobs SET state = 'sent', sent_at = now() "
            "WHERE id IN (SELECT id FROM dispatcher.jobs ORDER BY id LIMIT 4000)"
        )
    async with queue.pool.acquire() as conn:
        ready = await conn.fetchval(
            "SELECT count(*) FROM dispatcher.jobs WHERE state = 'queued' AND campaign_id = $1",
            made.id,
        )
        assert ready == QUEUED - 4000
    nodes = await explained(queue.pool, query("claim"), uuid.uuid4(), CLAIM, "default")
    read = {
        n["Node Type"] + " " + n.get("Index Name", ""): n["Actual Rows"]
        for n in nodes
        if n.get("Relation Name") == "jobs"
    }
    # The offer stops at the claim's 100 (and the update looks up those); not all 20,000.
    assert max(read.values()) <= 2 * CLAIM, read


async def test_a_materialiser_chunk_reads_only_its_own_recipients(queue: Queue) -> None:
    """A chunk of a big campaign whose recipient table was never analysed (as right after
    `campaign create`) walks the chunk's lines, not every recipient left: chosen as "the next
    N lines ORDER BY line LIMIT N", it was planned as a sort of all of them, and each chunk
    cost more the bigger the list (74 ms at 200,000)."""
    store = CampaignStore(queue.pool)
    listing = "email,name\n" + "".join(f"r{i}@example.org,P{i}\n" for i in range(QUEUED))
    spec = CampaignSpec(name="big", from_addr="news@example.com", subject="Hi", html="<p>Hi</p>")
    made = await store.create(spec, iter_recipients(io.BytesIO(listing.encode()), source="l.csv"))
    await store.start(made.id)  # its first chunk
    async with queue.pool.acquire() as conn:
        after = await conn.fetchval(
            "SELECT min(line) - 1 FROM dispatcher.campaign_recipients WHERE campaign_id = $1",
            made.id,
        )
    chunk = 500
    nodes = await explained(
        queue.pool, materialise.query("materialise_chunk"), made.id, chunk, after
    )
    read = {
        n["Node Type"] + " " + n.get("Index Name", ""): n["Actual Rows"] * n["Actual Loops"]
        for n in nodes
        if n.get("Relation Name") == "campaign_recipients"
    }
    assert read and max(read.values()) <= chunk, read
    made_rows = [
        n for n in nodes if n["Node Type"] == "ModifyTable" and n.get("Relation Name") == "jobs"
    ]
    assert made_rows and made_rows[0]["Actual Rows"] == chunk
