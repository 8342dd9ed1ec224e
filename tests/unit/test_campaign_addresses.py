"""The import's cheap address check gives email-validator's verdicts, exactly (issue 19 item 5)."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dispatcher.campaigns.addresses import normalize
from dispatcher.domain.address import suppression_key


def reference(email: str) -> str | None:
    """What the import used before the fast path: email-validator on every address."""
    try:
        valid = validate_email(email, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        return None
    return valid.ascii_email or valid.normalized


def fast(email: str) -> str | None:
    try:
        return normalize(email)
    except EmailNotValidError:
        return None


LOCAL_CHARS = "abcXYZ019.+_-!#$%&'*/=?^`{|}~\"() <>@,;:é\\"
local = st.one_of(
    st.text(alphabet=LOCAL_CHARS, min_size=0, max_size=70),
    st.sampled_from(["Postmaster", "ABUSE", "webmaster", "x" * 64, "x" * 65, "a..b", ".a", "a."]),
)
label = st.one_of(
    st.text(alphabet="abcXY09-_é", min_size=0, max_size=12),
    st.sampled_from(["xn--bcher-kva", "XN--BCHER-KVA", "a" * 63, "a" * 64, "-a", "a-", "123"]),
)
tld = st.one_of(
    label,
    st.sampled_from(["com", "COM", "local", "test", "invalid", "localhost", "onion", "arpa", "1"]),
)
domain = st.builds(lambda labels, top: ".".join([*labels, top]), st.lists(label, max_size=4), tld)
address = st.builds(lambda lp, d: f"{lp}@{d}", local, domain)


@settings(max_examples=3000, deadline=None)
@given(address)
@example("Jane.Doe@Example.COM")
@example("postmaster@example.com")
@example("a@b")
@example("a@xn--bcher-kva.example")
@example("x" * 64 + "@" + "d" * 63 + "." + "e" * 63 + "." + "f" * 56 + ".com")
@example("x" * 60 + "@" + "d" * 63 + "." + "e" * 63 + "." + "f" * 60 + ".com")
def test_fast_check_gives_email_validators_verdict(email: str) -> None:
    assert fast(email) == reference(email)


@settings(max_examples=500, deadline=None)
@given(address)
def test_a_normalized_address_is_its_own_suppression_key_lowercased(email: str) -> None:
    """The database dedupes and matches suppressions on lower(email): the same key as before."""
    normalized = fast(email)
    if normalized is not None:
        assert suppression_key(normalized) == normalized.lower()


@pytest.mark.parametrize(
    "email", ["a@@example.com", "jo@localhost", "é@example.com", "jo@bad-.example.com", "a@x.test"]
)
def test_a_refusal_carries_email_validators_words(email: str) -> None:
    with pytest.raises(EmailNotValidError) as expected:
        validate_email(email, check_deliverability=False, allow_smtputf8=False)
    for _ in range(2):  # the second time the domain's verdict is remembered
        with pytest.raises(EmailNotValidError) as caught:
            normalize(email)
        assert str(caught.value) == str(expected.value)


def test_plain_addresses_ask_email_validator_once_per_domain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The import's cost: a million-row list at a few domains makes a few full checks."""
    from dispatcher.campaigns import addresses

    calls: list[str] = []

    def counted(email: str, **kw: object) -> object:
        calls.append(email)
        return validate_email(email, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(addresses, "validate_email", counted)
    monkeypatch.setattr(addresses, "_domains", {})
    got = [normalize(f"Reader.{i}+news@Mail{i % 3}.Example.ORG") for i in range(3000)]
    assert got[4] == "Reader.4+news@mail1.example.org"
    assert len(calls) == 3  # one per domain; every address still gets its verdict
    with pytest.raises(EmailNotValidError):
        normalize("Reader..x@Mail0.Example.ORG")  # not plain: email-validator says why
    assert normalize("postmaster@Mail0.Example.ORG") == "postmaster@mail0.example.org"
    assert len(calls) == 5  # the refusal and the role name went to email-validator
