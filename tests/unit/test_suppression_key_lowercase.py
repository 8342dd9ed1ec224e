"""The claim statement looks a plain address up by the address with A-Z lower-cased
(queries.sql, claim); the worker looks every other address up by `suppression_key`. The two
must agree on every plain address, or a suppressed recipient could be mailed."""

from __future__ import annotations

import random
import string

from dispatcher.domain.address import suppression_key, suppression_key_is_lowercase

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def test_a_plain_address_is_keyed_as_the_claim_statement_looks_it_up() -> None:
    rand = random.Random(19)
    alphabet = string.printable + '<>"\x00\x1c\x7fÄäİı@@@.'
    samples = [
        "Gone@Example.COM",
        "a.b+c@d.example",
        "x@y",
        '"quoted local"@example.com',
        "KELVIN\u212a@example.com",
        "I@TURKISH.example",
    ]
    samples += [
        "".join(rand.choice(alphabet) for _ in range(rand.randint(1, 12))) for _ in range(5000)
    ]
    checked = 0
    for address in samples:
        if suppression_key_is_lowercase(address):
            checked += 1
            assert suppression_key(address) == address.translate(_ASCII_LOWER), address
    assert checked > 500


def test_addresses_the_worker_looks_up_itself() -> None:
    for address in (
        '"Gone Person" <GONE@example.com>',
        " gone@example.com",
        "gone@example.com\t",
        "gone@bücher.example",
        "a b@example.com",
        "gone@example.com\x1c",
    ):
        assert not suppression_key_is_lowercase(address), address
