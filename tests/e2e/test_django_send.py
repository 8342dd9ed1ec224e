"""A Django application queues mail through the dispatcher's e-mail backend; a real daemon
(`dispatcher run --drain`) sends it to the simulator: once, byte for byte, the Bcc recipient a
destination only, and nothing of a rolled-back transaction."""

from __future__ import annotations

import base64
import email
from email.policy import default as default_policy
from pathlib import Path

import pytest
from django.core.mail import EmailMultiAlternatives, send_mail
from django.db import transaction

from tests.support.cli import cli_env, fetch, run_cli
from tests.support.dispatch import SIM_OK, dispatcher_ids
from tests.support.django_app import in_django, use_database
from tests.support.sim import SimFactory

BCC = "success+bcc@simulator.amazonses.com"
CSV = b"order,total\r\n42,19.90\r\n"


def view() -> int:
    """What a view does: one order whose mail is rolled back, one that commits."""
    with pytest.raises(RuntimeError), transaction.atomic():
        send_mail("never sent", "rolled back", "shop@example.com", [SIM_OK])
        raise RuntimeError("payment declined")
    with transaction.atomic():
        msg = EmailMultiAlternatives(
            subject="Your order 42",
            body="Thank you for your order.\n",
            from_email="Shop <shop@example.com>",
            to=[SIM_OK],
            bcc=[BCC],
            headers={"X-Dispatcher-Priority": "5"},
        )
        msg.attach_alternative("<p>Thank you for your order.</p>", "text/html")
        msg.attach("order-42.csv", CSV, "text/csv")
        assert msg.send() == 1
    queued: int = msg.dispatcher_id  # type: ignore[attr-defined]
    return queued


async def test_django_mail_is_sent_once_by_the_daemon(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    use_database(pg_dsn)
    queued = await in_django(view)

    async with sim_process(max_send_rate=100) as sim:
        run = await run_cli(
            cli_env(tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url), "run", "--drain"
        )
        received = await sim.messages(body=True)

    assert run.code == 0, run
    assert run.out.startswith("drained: nothing left to send. sent 1, failed 0"), run
    assert dispatcher_ids(received) == [queued]  # once, and not the rolled-back one
    [sent] = received
    assert sent["from"] == '"Shop" <shop@example.com>'
    assert sent["to"] == [SIM_OK]
    assert sent["bcc"] == [BCC]  # a destination of the call...
    raw = base64.b64decode(sent["raw"])
    [stored] = await fetch(pg_dsn, "SELECT raw FROM dispatcher.messages WHERE id = $1", queued)
    assert raw == stored["raw"]  # byte for byte what Django built
    parsed = email.message_from_bytes(raw, policy=default_policy)
    assert "Bcc" not in parsed and BCC.encode() not in raw  # ...and nowhere in the message
    assert "X-Dispatcher-Priority" not in parsed
    [attachment] = [p for p in parsed.walk() if p.get_filename() == "order-42.csv"]
    assert attachment.get_payload(decode=True) == CSV
