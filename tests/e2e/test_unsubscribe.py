"""Issue 18's must-show: an RFC 8058 one-click POST, as Gmail sends it, to the List-Unsubscribe
URL a campaign's mail carried suppresses that address; a tampered token gets 403, a GET only
shows a page, and later mail to the address is not sent."""

from __future__ import annotations

import asyncio
import csv
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

from dispatcher.campaigns.unsubscribe import TOKEN_PURPOSE, UnsubscribeTokens
from dispatcher.doors.keys import MasterKey
from tests.support.cli import cli_env, fetch, run_cli, start_cli, stop_cli
from tests.support.dispatch import eventually
from tests.support.moto import free_port
from tests.support.sim import SimFactory

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
PUBLIC = "https://mail.example.test"
ANNA = "success+anna@simulator.amazonses.com"
BORIS = "success+boris@simulator.amazonses.com"
HTML = (
    '<html><body><p>Hi {{ name }}</p><a href="{{ unsubscribe_url }}">Unsubscribe</a></body></html>'
)
MULTIPART = "----gmail0one0click"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a 3xx comes back as an HTTPError: the test sees it, nothing follows it


def http(
    method: str, url: str, body: bytes | None = None, ctype: str | None = None
) -> tuple[int, str]:
    """One request as a mail provider makes it (no cookies, no redirects followed)."""
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("User-Agent", "Mozilla/5.0 (compatible; Google-OneClick)")
    if ctype is not None:
        request.add_header("Content-Type", ctype)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def one_click(url: str, *, multipart: bool = False) -> tuple[int, str]:
    """RFC 8058's POST: the body List-Unsubscribe=One-Click, form-encoded or multipart."""
    if not multipart:
        return http("POST", url, b"List-Unsubscribe=One-Click", "application/x-www-form-urlencoded")
    body = (
        f'--{MULTIPART}\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
        f"One-Click\r\n--{MULTIPART}--\r\n"
    ).encode()
    return http("POST", url, body, f"multipart/form-data; boundary={MULTIPART}")


async def suppressed(env: dict[str, str]) -> list[dict[str, str]]:
    listed = await run_cli(env, "suppression", "list", "--json")
    assert listed.code == 0, listed
    return [json.loads(line) for line in listed.out.splitlines()]


async def test_a_one_click_post_as_gmail_sends_it_suppresses_the_address(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    port, api_port = free_port(), free_port()
    config = tmp_path / "dispatcher.toml"
    config.write_text(
        f'[feedback]\nenabled = true\nlisten_port = {port}\nallowed_topics = "{TOPIC}"\n'
        f'public_url = "{PUBLIC}"\n\n[api]\nenabled = true\nlisten_port = {api_port}\n\n'
        # A webhook endpoint that never answers: the event is written for it all the same.
        f'[[webhooks]]\nurl = "http://127.0.0.1:{free_port()}/h"\n'
        'secret = "e2e-webhook-secret-0123456789"\nevents = ["unsubscribed"]\ntimeout = 1.0\n',
        encoding="utf-8",
    )
    with (tmp_path / "list.csv").open("w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows([("email", "name"), (ANNA, "Anna"), (BORIS, "Boris")])
    (tmp_path / "t.html").write_text(HTML, encoding="utf-8")
    async with sim_process(max_send_rate=50) as sim:
        env = cli_env(
            tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url, DISPATCHER_CONFIG=str(config)
        )
        made = await run_cli(
            env,
            "campaign", "create", "--name", "news", "--from", "news@example.com",
            "--subject", "Hi {{ name }}", "--template", str(tmp_path / "t.html"),
            "--recipients", str(tmp_path / "list.csv"),
        )  # fmt: skip
        assert made.code == 0, made
        campaign = int(made.out.split()[0])
        assert (await run_cli(env, "campaign", "start", str(campaign))).code == 0
        daemon = await start_cli(env, "run", output=tmp_path / "daemon.log")
        try:

            async def both_sent() -> bool:
                assert daemon.returncode is None, (tmp_path / "daemon.log").read_text()
                return len(await sim.messages()) == 2

            await eventually(both_sent, limit=30)

            async def webhook_synced() -> bool:  # the daemon subscribes its endpoints first
                rows = await fetch(pg_dsn, "SELECT 1 FROM dispatcher.webhook_endpoints")
                return len(rows) == 1

            await eventually(webhook_synced, limit=20)
            received = {m["to"][0]: m for m in await sim.messages(body=True)}
            links = {}
            for address, message in received.items():
                headers = dict(message["headers"])
                assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
                (url,) = re.fullmatch(r"<(https://[^>]+)>", headers["List-Unsubscribe"]).groups()  # type: ignore[union-attr]
                assert url.startswith(f"{PUBLIC}/unsubscribe/") and "@" not in url
                assert f'href="{url}"' in message["html"]  # the body links the same URL
                # The public URL reaches the listener through a TLS proxy; here it is direct.
                links[address] = f"http://127.0.0.1:{port}" + url.removeprefix(PUBLIC)
            assert links[ANNA] != links[BORIS]

            # A GET (a link scanner, or the person) sees a page with a button; nothing changes.
            status, page = await asyncio.to_thread(http, "GET", links[ANNA])
            assert status == 200 and '<form method="post">' in page
            assert 'name="List-Unsubscribe" value="One-Click"' in page and ANNA not in page
            # A tampered token: refused, nothing suppressed.
            token = links[ANNA].rsplit("/", 1)[1]
            tampered = (
                links[ANNA][: -len(token)] + token[:-2] + ("AA" if token[-2:] != "AA" else "BA")
            )
            status, _ = await asyncio.to_thread(one_click, tampered)
            assert status == 403
            status, _ = await asyncio.to_thread(one_click, links[ANNA] + "x")
            assert status == 403
            # Signed with the daemon's key (the master key file under the data dir), but naming
            # a campaign that does not exist, or a message that is gone: 404, 410.
            master = MasterKey.load(tmp_path / "keys.master", create=False)
            tokens = UnsubscribeTokens(master.derive(TOKEN_PURPOSE))
            base = f"http://127.0.0.1:{port}/unsubscribe/"
            anna_id = tokens.verify(token).message_id
            for target, code in (((campaign + 1, anna_id), 404), ((campaign, 10**9), 410)):
                status, _ = await asyncio.to_thread(one_click, base + tokens.sign(*target))
                assert status == code
            assert await suppressed(env) == []

            # Gmail's POST: 200 at once, no redirect; Anna alone is suppressed.
            status, _ = await asyncio.to_thread(one_click, links[ANNA])
            assert status == 200
            rows = await suppressed(env)
            assert [(r["address"], r["reason"]) for r in rows] == [
                (ANNA, f"unsubscribed (one-click, campaign {campaign})")
            ]
            events = await fetch(
                pg_dsn, "SELECT data FROM dispatcher.webhook_deliveries WHERE type = 'unsubscribed'"
            )
            assert [json.loads(e["data"])["address"] for e in events] == [ANNA]
            # Again, multipart this time: still 200, still one row.
            status, _ = await asyncio.to_thread(one_click, links[ANNA], multipart=True)
            assert status == 200
            assert len(await suppressed(env)) == 1
            # A POST without the one-click body does nothing.
            status, _ = await asyncio.to_thread(http, "POST", links[BORIS], b"", "text/plain")
            assert status == 400 and len(await suppressed(env)) == 1

            # Later mail to Anna is not sent; Boris' is.
            for to in (ANNA, BORIS):
                sent = await run_cli(
                    env, "send", "--from", "news@example.com", "--to", to,
                    "--subject", "later", "--text", "hi",
                )  # fmt: skip
                assert sent.code == 0, sent

            async def settled() -> bool:
                rows = await fetch(
                    pg_dsn,
                    "SELECT j.state::text AS state, j.last_outcome FROM dispatcher.jobs j "
                    "JOIN dispatcher.messages m USING (id) WHERE m.subject = 'later' "
                    "ORDER BY m.to_addrs[1]",
                )
                return [(r["state"], r["last_outcome"]) for r in rows] == [
                    ("failed", "suppressed"),
                    ("sent", "sent"),
                ]

            await eventually(settled, limit=30)
            status, metrics = await asyncio.to_thread(
                http, "GET", f"http://127.0.0.1:{api_port}/metrics"
            )
            assert status == 200
            counted = dict(
                re.findall(
                    r'^dispatcher_unsubscribes_total\{outcome="(\w+)"\} (\S+)$', metrics, re.M
                )
            )
            # Two bad tokens, a gone campaign, a gone message, a POST without the one-click body.
            assert counted == {"unsubscribed": "1.0", "repeat": "1.0", "refused": "5.0"}, metrics
        finally:
            code = await stop_cli(daemon)
        assert code == 0, (tmp_path / "daemon.log").read_text()
        later = [m["to"][0] for m in await sim.messages() if m["subject"] == "later"]
        assert later == [BORIS]


async def test_an_ses_template_campaign_may_link_its_unsubscribe_url(
    pg_dsn: str, tmp_path: Path
) -> None:
    with (tmp_path / "list.csv").open("w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows([("email", "name"), (ANNA, "Anna")])
    (tmp_path / "t.html").write_text('<a href="{{unsubscribe_url}}">Unsubscribe</a>', "utf-8")
    args = (
        "campaign", "create", "--name", "n", "--from", "news@example.com", "--subject", "Hi",
        "--template", str(tmp_path / "t.html"), "--recipients", str(tmp_path / "list.csv"),
        "--ses-template",
    )  # fmt: skip
    config = tmp_path / "dispatcher.toml"
    config.write_text(
        f'[feedback]\nenabled = true\nallowed_topics = "{TOPIC}"\npublic_url = "{PUBLIC}"\n'
    )
    # The default URL (or an explicit one) fills {{unsubscribe_url}} in SES's template data.
    made = await run_cli(cli_env(tmp_path, dsn=pg_dsn, DISPATCHER_CONFIG=str(config)), *args)
    assert made.code == 0, made
    (row,) = await fetch(pg_dsn, "SELECT unsubscribe_url FROM dispatcher.campaigns")
    assert row["unsubscribe_url"] == f"{PUBLIC}/unsubscribe/{{{{ unsubscribe_token }}}}"
    # Without any URL the variable has nothing to come from: refused, as a missing column.
    refused = await run_cli(cli_env(tmp_path, dsn=pg_dsn), *args, "--force")
    assert refused.code == 2 and "{{unsubscribe_url}}" in refused.err, refused
