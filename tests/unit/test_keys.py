"""Keys: sender patterns, priority limits, the master key and the secrets derived from it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dispatcher.domain.jobs import NewMessage
from dispatcher.doors.intake import Forbidden, authorize
from dispatcher.doors.keys import ApiKey, MasterKey, check_sender_pattern, new_key_id
from dispatcher.errors import ConfigError, InputError


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("*@Shop.Example", "*@shop.example"),
        ("shop.example", "*@shop.example"),
        ("news@shop.example", "news@shop.example"),
        ("*@*.shop.example", "*@*.shop.example"),
    ],
)
def test_sender_patterns_are_stored_lower_cased_with_a_domain_meaning_any_address(
    given: str, stored: str
) -> None:
    assert check_sender_pattern(given) == stored


@pytest.mark.parametrize("bad", ["", "  ", "a@", "@x", "a b@x.example", "*@sh*op.example"])
def test_a_malformed_sender_pattern_is_refused_with_examples(bad: str) -> None:
    with pytest.raises(InputError, match=r"e.g. '\*@shop.example'"):
        check_sender_pattern(bad)


def test_a_key_allows_only_its_senders_whatever_the_address_form() -> None:
    key = ApiKey("DK1", "shop", senders=("*@shop.example", "ceo@corp.example"))
    assert key.allows_sender("orders@shop.example")
    assert key.allows_sender('"Shop" <Orders@SHOP.example>')
    assert key.allows_sender("ceo@corp.example")
    assert not key.allows_sender("cfo@corp.example")
    assert not key.allows_sender("orders@shop.example.evil.example")
    assert not key.allows_sender("not an address")
    assert ApiKey("DK2", "any").allows_sender("anyone@anywhere.example")


def test_authorize_stamps_the_key_and_refuses_what_it_may_not_do() -> None:
    key = ApiKey("DK1", "bulk", senders=("*@shop.example",), max_priority=-10)
    ok = NewMessage(from_addr="a@shop.example", to=("b@x.example",), priority=-10)
    assert authorize(key, ok).key_id == "DK1"
    with pytest.raises(Forbidden) as sender:
        authorize(key, NewMessage(from_addr="a@other.example", to=("b@x.example",), priority=-20))
    assert sender.value.field == "from"
    with pytest.raises(Forbidden) as prio:
        authorize(key, NewMessage(from_addr="a@shop.example", to=("b@x.example",), priority=0))
    assert prio.value.field == "priority" and "-10 at most" in str(prio.value)


def test_the_master_key_is_made_once_private_and_derives_stable_secrets(tmp_path: Path) -> None:
    path = tmp_path / "state" / "keys.master"
    with pytest.raises(ConfigError, match="does not exist"):
        MasterKey.load(path, create=False)
    first = MasterKey.load(path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = MasterKey.load(path, create=True)
    secret = first.secret_for("DKABC")
    assert secret == again.secret_for("DKABC") != first.secret_for("DKABD")
    assert len(secret) == 40 and secret.replace("-", "").replace("_", "").isalnum()
    other = MasterKey.load(tmp_path / "other.master", create=True)
    assert other.secret_for("DKABC") != secret


def test_a_damaged_master_key_file_is_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "keys.master"
    path.write_text("not hex\n")
    with pytest.raises(ConfigError, match="restore the original file"):
        MasterKey.load(path, create=True)


def test_no_new_key_has_a_secret_that_a_command_line_tool_would_read_as_an_option(
    tmp_path: Path,
) -> None:
    master = MasterKey.load(tmp_path / "keys.master", create=True)
    secrets_ = [master.secret_for(new_key_id(master)) for _ in range(2000)]
    assert not [s for s in secrets_ if s.startswith("-")]  # ~31 of 2,000 would, drawn blindly
    assert len(set(secrets_)) == 2000
