"""The simulator's command line: a flag per setting, sandbox limits, start-up account set-up."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import pytest

from dispatcher.sim import cli
from dispatcher.sim.settings import SimSettings


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_are_the_production_account_the_project_relies_on() -> None:
    settings = cli.settings_from_args(parse())
    assert settings == SimSettings()
    assert (settings.max_send_rate, settings.max_24_hour_send, settings.burst_seconds) == (
        14.0,
        50000.0,
        1.0,
    )
    assert not settings.sandbox and not settings.lenient and not settings.auto_verify
    # As strict as a production SES account (issue 15).
    assert settings.require_verified_sender and settings.require_configuration_sets
    assert settings.api_requests_per_second == 1.0


def test_lenient_and_auto_verify_flags() -> None:
    settings = cli.settings_from_args(parse("--lenient", "--auto-verify"))
    assert settings.lenient and settings.auto_verify
    assert not settings.sender_must_be_verified and not settings.configuration_sets_must_exist
    assert settings.api_rate == 0.0
    strict = cli.settings_from_args(parse())
    assert strict.sender_must_be_verified and strict.configuration_sets_must_exist
    assert strict.api_rate == 1.0


def test_every_setting_has_a_flag() -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    dests = {a.dest for a in parser._actions}
    assert {f.name for f in dataclasses.fields(SimSettings)} <= dests


def test_the_flags_a_started_simulator_is_given_mean_the_settings_asked_for() -> None:
    asked: dict[str, Any] = {
        "max_send_rate": 1e9,
        "max_24_hour_send": -1,  # unlimited: a negative number, not an option
        "sandbox": True,
        "require_verified_sender": False,
        "latency_model": "lognormal",
        "events_file": "-x.jsonl",
    }
    assert cli.settings_from_args(parse(*cli.flags_for(asked))) == SimSettings(**asked)


def test_sandbox_applies_sandbox_limits_unless_given() -> None:
    sandbox = cli.settings_from_args(parse("--sandbox"))
    assert (sandbox.sandbox, sandbox.max_send_rate, sandbox.max_24_hour_send) == (True, 1.0, 200.0)
    explicit = cli.settings_from_args(parse("--sandbox", "--max-send-rate", "5"))
    assert (explicit.max_send_rate, explicit.max_24_hour_send) == (5.0, 200.0)


def test_flags_parse_to_typed_settings() -> None:
    settings = cli.settings_from_args(
        parse(
            "--latency-ms", "20", "--latency-model", "lognormal", "--fault-503-rate", "0.1",
            "--sns-signature-version", "1", "--events-file", "/tmp/x.jsonl",
            "--require-configuration-sets",
        )
    )  # fmt: skip
    assert settings.latency_model == "lognormal" and settings.fault_503_rate == 0.1
    assert settings.sns_signature_version == 1 and settings.events_file == "/tmp/x.jsonl"
    assert settings.require_configuration_sets is True


def test_account_and_subscription_flags_become_admin_calls() -> None:
    args = parse(
        "--verify", "example.com", "--verify", "me@other.org", "--configuration-set", "cs",
        "--account-state", "suspended", "--sns-endpoint", "http://127.0.0.1:9/a",
        "--sns-event-endpoint", "http://127.0.0.1:9/b", "--sns-auto-confirm",
    )  # fmt: skip
    assert cli.setup_from_args(args) == [
        ("account", {"enforcement_status": "SHUTDOWN"}),
        ("verify", {"identity": "example.com"}),
        ("verify", {"identity": "me@other.org"}),
        ("configuration_set", {"name": "cs"}),
        (
            "subscribe",
            {"endpoint": "http://127.0.0.1:9/a", "kind": "identity", "auto_confirm": True},
        ),
        (
            "subscribe",
            {"endpoint": "http://127.0.0.1:9/b", "kind": "configuration_set", "auto_confirm": True},
        ),
    ]


def test_a_bad_flag_value_names_the_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--port", "0", "--fault-500-rate", "2"]) == 2
    assert "fault_500_rate must be between 0 and 1" in capsys.readouterr().err
