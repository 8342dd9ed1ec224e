"""Campaign recipients become jobs as the campaign is sent (issue 19 item 5), on real Postgres:
each exactly once whatever runs in parallel, never after a pause or cancel, and a drain waits
for the ones not yet materialised."""

from __future__ import annotations

import asyncio
import io
from collections import Counter

import pytest

from dispatcher.app import run_worker
from dispatcher.campaigns import materialise
from dispatcher.campaigns.materialise import Ahead, Materialiser, materialise_chunk
from dispatcher.campaigns.recipients import iter_recipients
from dispatcher.campaigns.store import CampaignSpec, CampaignStore
from dispatcher.queue.repository import Queue
from dispatcher.worker.pool import EXIT_OK
from tests.support.dispatch import make_config
from tests.support.sim import SimFactory

SPEC = CampaignSpec(name="big", from_addr="news@example.com", subject="Hi {{ name }}", html="x")


def csv_bytes(n: int) -> bytes:
    rows = [f"success+m{i}@simulator.amazonses.com,Person {i},{i % 7}" for i in range(n)]
    return ("email,name,code\n" + "\n".join(rows) + "\n").encode()


async def created(store: CampaignStore, n: int) -> int:
    result = await store.create(SPEC, iter_recipients(io.BytesIO(csv_bytes(n)), source="l.csv"))
    assert result.imported == n
    return result.id


async def mail(queue: Queue, campaign_id: int) -> list[tuple[str, str, str]]:
    """(address, state, variables) of the campaign's message + job rows, in id order."""
    async with queue.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT m.to_addrs[1] AS a, j.state::text AS s, m.variables::text AS v "
            "FROM dispatcher.jobs j JOIN dispatcher.messages m USING (id) "
            "WHERE j.campaign_id = $1 ORDER BY j.id",
            campaign_id,
        )
    return [(r["a"], r["s"], r["v"]) for r in rows]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """`campaign start` materialises 10, the materialisers 7 at a time."""
    monkeypatch.setattr(materialise, "CHUNK", 10)


@pytest.mark.usefixtures("small_chunks")
async def test_parallel_materialisers_make_each_recipient_once_in_list_order(
    queue: Queue,
) -> None:
    store = CampaignStore(queue.pool)
    cid = await created(store, 300)
    await store.start(cid)
    assert len(await mail(queue, cid)) == 10  # the first chunk, with the start
    status = await store.status(cid)
    assert status.counts["queued"] == 300 and status.campaign.state == "running"

    workers = [Materialiser(queue.pool, lambda: 1.0, ahead=Ahead(floor=1000), chunk=7)] * 4
    while (await store.status(cid)).counts["queued"] > len(await mail(queue, cid)):
        await asyncio.gather(*(w.tick() for w in workers))

    made = await mail(queue, cid)
    assert [a for a, _, _ in made] == [f"success+m{i}@simulator.amazonses.com" for i in range(300)]
    assert {s for _, s, _ in made} == {"queued"}
    assert made[42][2] == '{"code": "0", "name": "Person 42"}'
    async with queue.pool.acquire() as conn:
        left = await conn.fetchval("SELECT count(*) FROM dispatcher.campaign_recipients")
    assert left == 0
    assert (await store.status(cid)).counts["queued"] == 300


@pytest.mark.usefixtures("small_chunks")
async def test_a_chunk_rolled_back_leaves_every_recipient_where_it_was(queue: Queue) -> None:
    store = CampaignStore(queue.pool)
    cid = await created(store, 30)
    await store.start(cid)
    with pytest.raises(RuntimeError):
        async with queue.pool.acquire() as conn, conn.transaction():
            assert (await materialise_chunk(conn, cid, 10))[0] == 10
            raise RuntimeError("the process died here")
    assert len(await mail(queue, cid)) == 10
    assert (await store.status(cid)).counts["queued"] == 30
    while await Materialiser(queue.pool, lambda: 1.0).tick():
        pass
    assert len({a for a, _, _ in await mail(queue, cid)}) == 30


@pytest.mark.usefixtures("small_chunks")
async def test_cancelled_recipients_never_become_jobs_and_the_report_lists_them(
    queue: Queue,
) -> None:
    store = CampaignStore(queue.pool)
    cid = await created(store, 50)
    await store.start(cid)
    assert await store.cancel(cid) == 50  # 10 jobs and 40 recipients not yet jobs
    assert await Materialiser(queue.pool, lambda: 1.0).tick() == 0
    assert len(await mail(queue, cid)) == 10
    status = await store.status(cid)
    assert status.counts["cancelled"] == 50 and status.done == 50
    report = [(r["address"], r["state"]) async for r in store.report_rows(cid)]
    assert report == [(f"success+m{i}@simulator.amazonses.com", "cancelled") for i in range(50)]


@pytest.mark.usefixtures("small_chunks")
async def test_a_pause_waits_for_a_chunk_in_progress_and_holds_what_it_made(
    queue: Queue,
) -> None:
    store = CampaignStore(queue.pool)
    cid = await created(store, 40)
    await store.start(cid)
    async with queue.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        assert await conn.fetchval(materialise.query("materialise_lock"), cid) == 30
        assert (await materialise_chunk(conn, cid, 10))[0] == 10
        pause = asyncio.create_task(store.pause(cid))
        await asyncio.sleep(0.3)
        assert not pause.done()  # the campaign row is ours until we commit
        await tx.commit()
    assert await pause
    assert Counter(s for _, s, _ in await mail(queue, cid)) == {"held": 20}
    assert await Materialiser(queue.pool, lambda: 1.0).tick() == 0  # paused: nothing made
    assert (await store.status(cid)).counts["held"] == 40
    await store.start(cid)  # resume
    assert await Materialiser(queue.pool, lambda: 1.0).tick() == 10
    assert Counter(s for _, s, _ in await mail(queue, cid)) == {"queued": 40}


async def test_a_drain_sends_recipients_not_yet_jobs_when_it_started(
    queue: Queue, pg_dsn: str, sim_process: SimFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(materialise, "CHUNK", 5)  # the queue runs dry between chunks
    store = CampaignStore(queue.pool)
    cid = await created(store, 60)
    await store.start(cid)
    async with sim_process(max_send_rate=1000) as sim:
        report = await asyncio.wait_for(
            run_worker(make_config(pg_dsn, sim.endpoint_url), asyncio.Event(), drain=True), 60
        )
        received = await sim.messages()
    assert report.exit_code == EXIT_OK
    assert sorted(m["to"][0] for m in received) == sorted(
        f"success+m{i}@simulator.amazonses.com" for i in range(60)
    )
    status = await store.status(cid)
    assert status.counts["sent"] == 60 and status.campaign.state == "finished"


@pytest.mark.parametrize(
    ("data", "variables"),
    [
        (b"email\na@example.com\n", "{}"),
        (b"email,name\na@example.com,\n", '{"name": ""}'),
        (b'name,,email,city\n"Smith, Jo",x,a@example.com,\n', '{"city": "", "name": "Smith, Jo"}'),
    ],
)
async def test_a_recipients_variables_arrive_as_the_list_gave_them(
    queue: Queue, data: bytes, variables: str
) -> None:
    store = CampaignStore(queue.pool)
    result = await store.create(SPEC, iter_recipients(io.BytesIO(data), source="l.csv"))
    await store.start(result.id)
    assert await mail(queue, result.id) == [("a@example.com", "queued", variables)]
