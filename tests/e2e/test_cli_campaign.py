"""`dispatcher campaign ...` as a user runs it: create from a CSV and a template, start, send
with the daemon, watch, report; bad input refused with a message that says what to fix and
nothing half-imported; pause, resume and cancel against a running daemon."""

from __future__ import annotations

import asyncio
import csv
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tests.support.cli import (
    CliResult,
    cli_env,
    fetch,
    run_cli,
    start_cli,
    stop_cli,
)
from tests.support.dispatch import eventually
from tests.support.sim import SimFactory, SimHandle

UNSUBSCRIBE = "https://x.example/u?e={{ email|urlencode }}"
HTML = (
    "<html><body><p>Hello {{ name }}</p>"
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
)
JOB_STATES = ("held", "queued", "claimed", "in_flight", "sent", "failed", "unknown", "cancelled")


def sim_address(tag: str) -> str:
    """A mailbox-simulator address: accepted, and not counted against the daily quota."""
    return f"success+{tag}@simulator.amazonses.com"


def write_csv(
    path: Path, rows: Sequence[tuple[str, ...]], header: tuple[str, ...] = ("email", "name")
) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows([header, *rows])
    return path


def people(n: int) -> list[tuple[str, str]]:
    return [(sim_address(f"p{i}"), f"Person {i}") for i in range(n)]


async def create(
    tmp_path: Path,
    env: dict[str, str],
    recipients: Path,
    *extra: str,
    html: str = HTML,
    subject: str = "Hello {{ name }}",
) -> CliResult:
    template = tmp_path / "template.html"
    template.write_text(html, encoding="utf-8")
    return await run_cli(
        env,
        "campaign",
        "create",
        "--name",
        "autumn",
        "--from",
        "news@example.com",
        "--subject",
        subject,
        "--template",
        str(template),
        "--recipients",
        str(recipients),
        "--unsubscribe-url",
        UNSUBSCRIBE,
        *extra,
    )


def created_id(result: CliResult) -> int:
    """The id `create` prints: the first (and only) line of stdout."""
    assert result.code == 0, result
    first = result.out.splitlines()[0]
    assert first.isdigit(), result
    return int(first)


async def assert_nothing_imported(dsn: str) -> None:
    """A refused import leaves no campaign, message or job behind."""
    (row,) = await fetch(
        dsn,
        "SELECT (SELECT count(*) FROM dispatcher.campaigns) AS campaigns, "
        "(SELECT count(*) FROM dispatcher.messages) AS messages, "
        "(SELECT count(*) FROM dispatcher.jobs) AS jobs, "
        "(SELECT count(*) FROM dispatcher.campaign_recipients) AS recipients",
    )
    assert dict(row) == {"campaigns": 0, "messages": 0, "jobs": 0, "recipients": 0}


async def imported(dsn: str, campaign_id: int) -> list[tuple[str, str | None]]:
    """(address, name) of each recipient, in list order: message rows, then those not yet."""
    rows = await fetch(
        dsn,
        "SELECT a, name FROM ("
        " SELECT 0 AS part, id AS n, to_addrs[1] AS a, variables->>'name' AS name"
        " FROM dispatcher.messages WHERE campaign_id = $1"
        " UNION ALL"
        " SELECT 1, r.line, r.email, jsonb_object(c.variable_columns,"
        "  (string_to_array(r.variables, E'\\x1e'))[2:])->>'name'"
        " FROM dispatcher.campaign_recipients r JOIN dispatcher.campaigns c"
        " ON c.id = r.campaign_id WHERE r.campaign_id = $1) x ORDER BY part, n",
        campaign_id,
    )
    return [(r["a"], r["name"]) for r in rows]


def error_line(result: CliResult) -> str:
    """The one `dispatcher: error: ...` line a refused command prints."""
    errors = [m for m in result.messages if m.startswith("dispatcher: error: ")]
    assert len(errors) == 1, result
    return errors[0]


async def campaign_states(dsn: str, campaign_id: int) -> Counter[str]:
    rows = await fetch(
        dsn,
        "SELECT state::text AS state, count(*) AS n FROM dispatcher.jobs "
        "WHERE campaign_id = $1 GROUP BY 1 "
        "UNION ALL "  # recipients not yet message + job rows, in the state their job would have
        "SELECT dispatcher.unmaterialised_state(state)::text, unmaterialised "
        "FROM dispatcher.campaigns WHERE id = $1 AND unmaterialised > 0",
        campaign_id,
    )
    return Counter({r["state"]: r["n"] for r in rows})


async def accepted(sim: SimHandle) -> int:
    return int((await sim.stats())["accepted"])


# -- the whole path ------------------------------------------------------------------------------


async def test_create_start_drain_then_status_watch_report_list(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    rows = [*people(11), (sim_address("zoe"), "Zoë")]  # UTF-8 variables survive the trip
    recipients = write_csv(tmp_path / "list.csv", rows)
    async with sim_process(max_send_rate=200) as sim:
        env = cli_env(tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url)

        made = await create(tmp_path, env, recipients)
        campaign_id = created_id(made)
        assert made.out == f"{campaign_id}\n"  # only the id: `ID=$(dispatcher campaign create ...)`
        summary = [m for m in made.messages if m.startswith(f"campaign {campaign_id} created")]
        assert len(summary) == 1, made
        assert "12 recipients imported" in summary[0]
        assert "0 skipped" in summary[0]
        assert f"dispatcher campaign start {campaign_id}" in summary[0]
        # Created as a draft: nothing is sendable before `start`.
        assert await campaign_states(pg_dsn, campaign_id) == {"held": 12}

        start = await run_cli(env, "campaign", "start", str(campaign_id))
        assert start.code == 0, start
        assert start.out == f"campaign {campaign_id} running: 12 recipients\n"

        drain = await run_cli(env, "run", "--drain")
        assert drain.code == 0, drain
        assert drain.out.startswith("drained: nothing left to send. sent 12, failed 0, in doubt 0")
        received = await sim.messages()

        # Everything is sent: the campaign is finished, and there is nothing left to cancel.
        cancel = await run_cli(env, "campaign", "cancel", str(campaign_id))
        assert cancel.code == 2, cancel
        assert f"campaign {campaign_id} is already cancelled or finished" in error_line(cancel)

        out_csv = tmp_path / "out.csv"
        status, watch, report, listing, retry = await asyncio.gather(
            run_cli(env, "campaign", "status", str(campaign_id), "--json"),
            run_cli(env, "campaign", "status", str(campaign_id), "--watch", limit=15),
            run_cli(env, "campaign", "report", str(campaign_id), "--csv", str(out_csv)),
            run_cli(env, "campaign", "list", "--json"),
            run_cli(env, "campaign", "retry-failed", str(campaign_id)),
        )

    # Each recipient exactly once, rendered for them.
    assert Counter(m["to"][0] for m in received) == Counter(email for email, _ in rows)
    subjects = {m["to"][0]: m["subject"] for m in received}
    assert subjects[sim_address("zoe")] == "Hello Zoë"
    assert subjects[sim_address("p3")] == "Hello Person 3"
    assert all(m["tags"]["campaign_id"] == str(campaign_id) for m in received)

    assert status.code == 0, status
    view = json.loads(status.out)
    assert view["id"] == campaign_id and view["name"] == "autumn"
    assert view["state"] == "finished" and view["recipients"] == 12
    assert view["feedback"]["reputation"]["recipients_sent"] == 12
    assert view["feedback"]["reputation"]["guard_bounce_threshold"] == 0.04
    assert view["counts"] == {s: 12 if s == "sent" else 0 for s in JOB_STATES}
    assert view["failures"] == {} and view["finished_at"] is not None

    # --watch on a finished campaign: one progress line (stdout is a pipe: no \r redraws).
    assert watch.code == 0, watch
    (line,) = watch.out.splitlines()
    assert "\r" not in watch.out
    assert line.startswith("[" + "#" * 30 + "] 12/12 sent"), line
    assert "failures: none" in line and line.endswith("(finished)")

    assert report.code == 0, report
    lines = report.out.splitlines()
    assert lines[0] == f"campaign {campaign_id} 'autumn': finished"
    assert lines[1].split() == ["sent", "12"]
    assert lines[-1] == f"per-recipient report: {out_csv}"
    assert "in doubt" not in report.out
    with out_csv.open(newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert sorted(r["address"] for r in table) == sorted(email for email, _ in rows)
    assert all(r["state"] == "sent" and r["sent_at"] and r["reason"] == "" for r in table)
    ses_ids = {m["to"][0]: m["message_id"] for m in received}
    assert {r["address"]: r["ses_message_id"] for r in table} == ses_ids

    assert listing.code == 0, listing
    (listed,) = json.loads(listing.out)
    assert listed["id"] == campaign_id and listed["state"] == "finished"
    assert listed["counts"]["sent"] == 12

    assert retry.code == 0, retry
    assert retry.out == f"campaign {campaign_id}: 0 failed recipient(s) queued again\n"


# -- bad input -----------------------------------------------------------------------------------


async def test_a_list_without_an_email_column_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    recipients = write_csv(tmp_path / "list.csv", [("a@example.com", "A")], header=("mail", "name"))
    env = cli_env(tmp_path, dsn=pg_dsn)

    result = await create(tmp_path, env, recipients)

    assert result.code == 2, result
    assert result.out == ""
    message = error_line(result)
    assert "no `email` column" in message and "add a column named email" in message
    assert "'mail', 'name'" in message  # shows what the file has
    await assert_nothing_imported(pg_dsn)


async def test_malformed_addresses_are_reported_by_line_and_the_rest_imported(
    pg_dsn: str, tmp_path: Path
) -> None:
    rows = [
        (sim_address("a"), "A"),
        ("not-an-address", "B"),  # line 3
        (sim_address("c"), "C"),
        ("broken@", "D"),  # line 5
        ("", "E"),  # line 6
    ]
    recipients = write_csv(tmp_path / "list.csv", rows)
    env = cli_env(tmp_path, dsn=pg_dsn)

    result = await create(tmp_path, env, recipients, "--json")

    assert result.code == 0, result  # the good rows are imported; the bad ones reported
    body = json.loads(result.out)
    assert set(body) == {"id", "imported", "rejected"}
    assert body["imported"] == 2
    rejected = {r["line"]: r for r in body["rejected"]}
    assert sorted(rejected) == [3, 5, 6]
    assert rejected[3]["email"] == "not-an-address"
    assert "'not-an-address' is not a valid address" in rejected[3]["reason"]
    assert rejected[5]["email"] == "broken@"
    assert "not a valid address" in rejected[5]["reason"]
    assert rejected[6] == {"line": 6, "email": "", "reason": "email is empty"}
    addresses = [a for a, _ in await imported(pg_dsn, body["id"])]
    assert addresses == [sim_address("a"), sim_address("c")]


async def test_strict_refuses_the_whole_file_for_one_bad_address(
    pg_dsn: str, tmp_path: Path
) -> None:
    rows = [(sim_address("a"), "A"), ("not-an-address", "B"), (sim_address("c"), "C")]
    recipients = write_csv(tmp_path / "list.csv", rows)
    env = cli_env(tmp_path, dsn=pg_dsn)

    result = await create(tmp_path, env, recipients, "--strict")

    assert result.code == 2, result
    assert result.out == ""
    message = error_line(result)
    assert "--strict" in message and "nothing was imported" in message
    assert "line 3: 'not-an-address' is not a valid address" in message
    await assert_nothing_imported(pg_dsn)
    listing = await run_cli(env, "campaign", "list", "--json")
    assert listing.code == 0, listing
    assert json.loads(listing.out) == []


async def test_duplicates_are_reported_as_duplicate_of_the_first_line(
    pg_dsn: str, tmp_path: Path
) -> None:
    rows = [
        (sim_address("a"), "A"),  # line 2
        (sim_address("b"), "B"),  # line 3
        (sim_address("a").upper(), "A again"),  # line 4: same address, other case
        (sim_address("b"), "B again"),  # line 5
    ]
    recipients = write_csv(tmp_path / "list.csv", rows)
    env = cli_env(tmp_path, dsn=pg_dsn)

    result = await create(tmp_path, env, recipients)

    campaign_id = created_id(result)
    assert f"{recipients}: line 5: {sim_address('b')}: duplicate of line 3" in result.messages
    assert any(
        m.startswith(f"{recipients}: line 4: ") and m.endswith(": duplicate of line 2")
        for m in result.messages
    ), result
    summary = next(m for m in result.messages if m.startswith(f"campaign {campaign_id} created"))
    assert "2 recipients imported" in summary and "2 skipped (2 duplicate(s)" in summary
    # The first occurrence wins, with its own variables.
    assert await imported(pg_dsn, campaign_id) == [
        (sim_address("a"), "A"),
        (sim_address("b"), "B"),
    ]


async def test_a_file_that_is_not_utf8_is_refused_naming_the_line(
    pg_dsn: str, tmp_path: Path
) -> None:
    recipients = tmp_path / "list.csv"
    recipients.write_bytes(
        b"email,name\n"
        + f"{sim_address('a')},Ann\n{sim_address('b')},Bob\n".encode()
        + sim_address("c").encode()
        + b",Ren\xe9e\n"  # line 4: Latin-1, as Excel's plain "CSV" writes it
    )
    env = cli_env(tmp_path, dsn=pg_dsn)

    result = await create(tmp_path, env, recipients)

    assert result.code == 2, result
    assert result.out == ""
    message = error_line(result)
    assert f"{recipients}: line 4 is not UTF-8" in message
    assert "save the file as UTF-8" in message
    await assert_nothing_imported(pg_dsn)  # the two good lines before it are not kept either


async def test_line_breaks_in_fields_are_rejected_and_never_reach_a_header(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    injection = "Bcc: victim@example.com"
    rows = [
        (sim_address("ann"), "Ann"),  # line 2
        (sim_address("eve"), f"Eve\r\n{injection}"),  # lines 3-4: one quoted field
        (sim_address("bob"), "Bob"),  # line 5
        (sim_address("mal"), f"Mal\n{injection}"),  # lines 6-7
        # Not a CR/LF, but a line break to str.splitlines() and some mail software.
        (sim_address("zed"), f"Zed\u2028{injection}"),  # line 8
    ]
    recipients = write_csv(tmp_path / "list.csv", rows)
    async with sim_process(max_send_rate=200) as sim:
        env = cli_env(tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url)

        made = await create(tmp_path, env, recipients, "--json")
        assert made.code == 0, made
        body = json.loads(made.out)
        rejected = {r["line"]: r for r in body["rejected"]}
        assert sorted(rejected) == [3, 6, 8]
        for r in rejected.values():
            assert r["reason"].startswith("column 'name' contains a line break; remove it")
        assert rejected[3]["email"] == sim_address("eve")

        assert (await run_cli(env, "campaign", "start", str(body["id"]))).code == 0
        drain = await run_cli(env, "run", "--drain")
        assert drain.code == 0, drain
        received = await sim.messages(body=True)

    # The subject uses the variable; no subject SES received holds a line break of any kind.
    assert {m["to"][0]: m["subject"] for m in received} == {
        sim_address("ann"): "Hello Ann",
        sim_address("bob"): "Hello Bob",
    }
    assert not any("victim" in json.dumps(m) for m in received)


async def test_a_subject_template_with_a_line_break_is_refused_at_create(
    pg_dsn: str, tmp_path: Path
) -> None:
    recipients = write_csv(tmp_path / "list.csv", people(2))
    env = cli_env(tmp_path, dsn=pg_dsn)

    result = await create(tmp_path, env, recipients, subject="Hello\r\nBcc: victim@example.com")

    assert result.code == 2, result
    message = error_line(result)
    assert "--subject" in message and "line break" in message
    await assert_nothing_imported(pg_dsn)


async def test_a_template_variable_the_list_lacks_is_refused_naming_it(
    pg_dsn: str, tmp_path: Path
) -> None:
    recipients = write_csv(tmp_path / "list.csv", people(2))
    env = cli_env(tmp_path, dsn=pg_dsn)
    html = HTML.replace("{{ name }}", "{{ first_name }}")

    result = await create(tmp_path, env, recipients, html=html)

    assert result.code == 2, result
    message = error_line(result)
    assert "html template uses {{ first_name }} but the list has no first_name column" in message
    assert "columns: email, name" in message
    await assert_nothing_imported(pg_dsn)


async def test_an_html_file_over_10_mb_is_refused_with_the_limit(
    pg_dsn: str, tmp_path: Path
) -> None:
    recipients = write_csv(tmp_path / "list.csv", people(2))
    env = cli_env(tmp_path, dsn=pg_dsn)
    filler = "<p>" + "x" * 1000 + "</p>\n"
    big = HTML.replace("</body>", filler * 10_500 + "</body>")
    assert 10 * 1024 * 1024 < len(big.encode()) < 10_650_000  # just over SES's 10 MiB

    result = await create(tmp_path, env, recipients, html=big)

    assert result.code == 2, result
    message = error_line(result)
    assert "template.html is 10.6 MB" in message
    assert "SES accepts messages up to 10 MB" in message
    await assert_nothing_imported(pg_dsn)


async def test_lint_errors_stop_create_unless_forced(pg_dsn: str, tmp_path: Path) -> None:
    recipients = write_csv(tmp_path / "list.csv", people(3))
    env = cli_env(tmp_path, dsn=pg_dsn)
    html = HTML.replace(
        "</body>", '<img src="data:image/png;base64,iVBORw0KGgo=" alt="logo"></body>'
    )

    refused = await create(tmp_path, env, recipients, html=html)

    assert refused.code == 2, refused
    assert any(
        m.startswith("error: line 1: image embedded as a data: URI") and m.endswith("[data-image]")
        for m in refused.messages
    ), refused
    assert "pass --force to create anyway" in error_line(refused)
    await assert_nothing_imported(pg_dsn)

    forced = await create(tmp_path, env, recipients, "--force", html=html)

    campaign_id = created_id(forced)
    assert any(m.endswith("[data-image]") for m in forced.messages), forced  # still shown
    assert await campaign_states(pg_dsn, campaign_id) == {"held": 3}


async def test_report_of_an_unknown_campaign_writes_no_file(pg_dsn: str, tmp_path: Path) -> None:
    env = cli_env(tmp_path, dsn=pg_dsn)
    target = tmp_path / "report.csv"

    result = await run_cli(env, "campaign", "report", "999", "--csv", str(target))

    assert result.code == 2, result
    assert "no campaign with id 999" in error_line(result)
    assert not target.exists()


# -- lifecycle against a running daemon ----------------------------------------------------------


async def test_pause_resume_cancel_against_a_running_daemon(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    total = 800  # each CLI call takes about a second here: enough left to pause and cancel
    recipients = write_csv(tmp_path / "list.csv", people(total))
    async with sim_process(max_send_rate=100) as sim:
        env = cli_env(tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url)
        campaign_id = created_id(await create(tmp_path, env, recipients))
        cid = str(campaign_id)
        assert (await run_cli(env, "campaign", "start", cid)).code == 0
        daemon = await start_cli(env, "run", output=tmp_path / "daemon.log")
        try:
            await eventually(lambda: _at_least(sim, 40), limit=20)

            pause = await run_cli(env, "campaign", "pause", cid)
            assert pause.code == 0, pause
            assert pause.out == f"campaign {cid} paused\n"
            status = await run_cli(env, "campaign", "status", cid, "--json")
            assert status.code == 0, status
            view = json.loads(status.out)
            assert view["state"] == "paused"
            assert view["pause_reason"] == "paused by operator"
            assert view["counts"]["queued"] == view["counts"]["claimed"] == 0
            assert view["counts"]["in_flight"] == 0  # what was on the wire has finished
            at_pause = await accepted(sim)
            await asyncio.sleep(1.0)
            assert await accepted(sim) == at_pause, "mail went out after the pause"
            assert at_pause < total
            assert daemon.returncode is None  # the daemon is still running, just idle

            resume = await run_cli(env, "campaign", "resume", cid)
            assert resume.code == 0, resume
            assert resume.out == f"campaign {cid} resumed\n"
            await eventually(lambda: _at_least(sim, at_pause + 40), limit=20)

            cancel = await run_cli(env, "campaign", "cancel", cid)
            assert cancel.code == 0, cancel

            async def settled() -> bool:
                states = await campaign_states(pg_dsn, campaign_id)
                return states["in_flight"] == 0 and states["sent"] == await accepted(sim)

            await eventually(settled, limit=10)
            at_cancel = await accepted(sim)
            await asyncio.sleep(0.5)
            assert await accepted(sim) == at_cancel, "mail went out after the cancel"
            received = await sim.messages()
            status = await run_cli(env, "campaign", "status", cid, "--json")
        finally:
            code = await stop_cli(daemon)
        assert code == 0, (tmp_path / "daemon.log").read_text()

    assert at_pause < at_cancel < total
    view = json.loads(status.out)
    assert view["state"] == "cancelled"
    assert view["counts"]["sent"] == at_cancel  # sent stays sent
    assert view["counts"]["cancelled"] == total - at_cancel
    assert sum(view["counts"].values()) == total
    unsent = int(cancel.out.split(": ")[1].split()[0])
    assert cancel.out == f"campaign {cid} cancelled: {unsent} unsent message(s) cancelled\n"
    assert unsent == total - at_cancel
    seen = Counter(m["to"][0] for m in received)
    assert len(seen) == at_cancel and max(seen.values()) == 1  # nobody twice
    sent_rows = await fetch(
        pg_dsn,
        "SELECT m.to_addrs[1] AS a FROM dispatcher.jobs j JOIN dispatcher.messages m USING (id) "
        "WHERE j.campaign_id = $1 AND j.state = 'sent'",
        campaign_id,
    )
    assert {r["a"] for r in sent_rows} == set(seen)


async def _at_least(sim: SimHandle, n: int) -> bool:
    return await accepted(sim) >= n
