"""The benchmark's mail: one shape for both sides, a receipt of about 600 bytes per message."""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.domain.jobs import NewMessage

FROM_ADDR = "receipts@example.com"
# A mailbox-simulator address: accepted by the simulator without counting against a quota.
TO_ADDR = "success@simulator.amazonses.com"
_FILLER = (
    "Thank you for your order. Your items will ship within two business days; you will get "
    "a second message with the tracking number as soon as the carrier has it. "
) * 3


@dataclass(frozen=True, slots=True)
class BenchMessage:
    subject: str
    text: str


def make_messages(n: int) -> list[BenchMessage]:
    return [
        BenchMessage(subject=f"Your receipt #{i}", text=f"Hello,\n\nreceipt #{i}.\n\n{_FILLER}")
        for i in range(n)
    ]


def to_new_messages(messages: list[BenchMessage], round_no: int) -> list[NewMessage]:
    """The same mail as NewMessages for the queue, with an idempotency key as a user would set."""
    return [
        NewMessage(
            from_addr=FROM_ADDR,
            to=(TO_ADDR,),
            subject=m.subject,
            text=m.text,
            idempotency_key=f"bench-{round_no}-{i}",
        )
        for i, m in enumerate(messages)
    ]
