"""Several SES accounts: the `[[accounts]]` / `[[routes]]` config, the routing rules, and the
report of a run of several pools."""

from __future__ import annotations

import asyncio
import tomllib
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest

from dispatcher.accounts.routing import Routed, from_domain, route
from dispatcher.accounts.settings import RouteSettings, effective_accounts
from dispatcher.accounts.watch import merged_report
from dispatcher.config import Config, ConfigError, PacingSettings, SesSettings, build_config
from dispatcher.config.build import config_to_dict
from dispatcher.obs.live import Live
from dispatcher.worker.counters import EXIT_OK, EXIT_QUOTA_SPENT, Counters, RunReport


def config(text: str) -> Config:
    return build_config(tomllib.loads(text), {})


# --- config ----------------------------------------------------------------------------------


def test_without_accounts_the_ses_section_is_the_one_account_named_default() -> None:
    cfg = config('[ses]\nregion = "eu-west-1"\nendpoint_url = "http://127.0.0.1:1"\n')
    ((name, ses, pacing),) = effective_accounts(cfg.accounts, cfg.ses, cfg.pacing)
    assert (name, ses, pacing) == ("default", cfg.ses, cfg.pacing)
    assert "accounts" not in config_to_dict(cfg)  # nothing new shown for a plain config


def test_accounts_take_what_they_leave_out_from_the_ses_section() -> None:
    cfg = config(
        """
        [ses]
        region = "us-west-2"
        access_key_id = "AKIASES"
        secret_access_key = "ses-secret"
        read_timeout = 7.0
        configuration_set = "events"

        [pacing]
        rate_headroom = 0.9

        [[accounts]]
        name = "brand-a"

        [[accounts]]
        name = "brand-b"
        region = "eu-central-1"
        profile = "brand-b"
        configuration_set = "b-events"
        rate_headroom = 0.5
        """
    )
    (a, a_ses, a_pacing), (b, b_ses, b_pacing) = effective_accounts(
        cfg.accounts, cfg.ses, cfg.pacing
    )
    assert (a, a_ses, a_pacing) == ("brand-a", cfg.ses, cfg.pacing)
    assert b == "brand-b"
    assert b_ses == SesSettings(
        region="eu-central-1",
        profile="brand-b",
        read_timeout=7.0,
        configuration_set="b-events",
    )  # its own credentials: none of [ses]'s keys
    assert b_pacing == PacingSettings(rate_headroom=0.5)
    shown = config_to_dict(cfg)["accounts"]
    assert [s["name"] for s in shown] == ["brand-a", "brand-b"]


def test_secret_of_an_account_is_masked_when_shown() -> None:
    cfg = config(
        '[[accounts]]\nname = "a"\naccess_key_id = "AKIAX"\nsecret_access_key = "s3cret"\n'
    )
    assert "s3cret" not in repr(config_to_dict(cfg)) and "s3cret" not in repr(cfg)


def test_routes_take_a_string_or_an_array_and_lower_case_domains() -> None:
    cfg = config(
        """
        [[accounts]]
        name = "main"
        [[accounts]]
        name = "backup"
        [[routes]]
        from_domain = ["Shop.Example", "*.news.example"]
        tag = "tenant=acme"
        account = "main"
        fallback = "backup"
        """
    )
    assert cfg.routes == (
        RouteSettings(
            account="main",
            from_domain=("shop.example", "*.news.example"),
            tag=("tenant=acme",),
            fallback="backup",
        ),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[routes]]\nfrom_domain = "a.example"\naccount = "brand-a"\n',
            "routes[0].account names the unknown account 'brand-a'; the accounts are: "
            "'default' (without [[accounts]] the one account is 'default')",
        ),
        (
            '[[accounts]]\nname = "a"\n[[routes]]\naccount = "a"\nfallback = "b"\n',
            "routes[0].fallback names the unknown account 'b'; the accounts are: 'a'",
        ),
        (
            '[[accounts]]\nname = "a"\n[[accounts]]\nname = "a"\n',
            "accounts[1].name repeats accounts[0].name ('a')",
        ),
        ('[[accounts]]\nregion = "eu-west-1"\n', "accounts[0].name is required"),
        ('[[accounts]]\nname = "Brand A"\n', "accounts[0].name must be 1-63 lower-case"),
        ('[[accounts]]\nname = "a"\nregon = "x"\n', "unknown key accounts[0].regon"),
        (
            '[[accounts]]\nname = "a"\naccess_key_id = "AKIA"\n',
            "accounts[0].access_key_id and accounts[0].secret_access_key must be given together",
        ),
        (
            '[[accounts]]\nname = "a"\nrole_arn = "ses-sender"\n',
            "accounts[0].role_arn must be a role ARN",
        ),
        ('[[accounts]]\nname = "a"\nrate_headroom = 1.5\n', "accounts[0].rate_headroom must"),
        (
            '[[accounts]]\nname = "a"\nsqs_queue_url = "ses-feedback"\n',
            "accounts[0].sqs_queue_url must be the queue's URL",
        ),
        (
            '[[accounts]]\nname = "a"\nsqs_queue_url = "https://sqs.eu-west-1.amazonaws.com/1/q"\n',
            "feedback.allowed_topics must name at least one SNS TopicArn when an account has "
            "sqs_queue_url (a)",
        ),
        ('[accounts]\nname = "a"\n', "accounts in the config file must be an array of tables"),
        (
            '[[routes]]\naccount = "default"\ntag = "tenant"\n',
            "routes[0].tag must hold 'name=value' pairs",
        ),
        (
            '[[routes]]\naccount = "default"\nfrom_domain = 3\n',
            "routes[0].from_domain must be a string or an array of strings, got 3",
        ),
        (
            '[[routes]]\naccount = "default"\nfrom_domain = "a b"\n',
            "routes[0].from_domain must hold domains",
        ),
        (
            '[[routes]]\naccount = "default"\nfallback = "default"\n',
            "routes[0].fallback must name another account",
        ),
    ],
)
def test_a_bad_account_or_route_is_one_error_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config(text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


# --- routing ---------------------------------------------------------------------------------

ROUTES = (
    RouteSettings(account="b", from_domain=("b.example", "*.b.example")),
    RouteSettings(account="camp", campaign=("spring", "42")),
    RouteSettings(account="keyed", key=("shop",), tag=("tenant=acme",)),
    RouteSettings(account="tenant", tag=("tenant=acme", "tenant=zeta"), fallback="a"),
)


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"from_addr": "x@a.example"}, Routed("a")),
        ({"from_addr": '"News" <News@B.Example>'}, Routed("b", rule=0)),
        ({"from_addr": "x@mail.b.example"}, Routed("b", rule=0)),
        ({"from_addr": "x@notb.example"}, Routed("a")),
        ({"from_addr": "x@a.example", "campaign": (7, "spring")}, Routed("camp", rule=1)),
        ({"from_addr": "x@a.example", "campaign": (42, "other")}, Routed("camp", rule=1)),
        # every condition of a rule must hold: key and tag
        ({"from_addr": "x@a.example", "key_name": "shop"}, Routed("a")),
        (
            {"from_addr": "x@a.example", "key_name": "shop", "tags": {"tenant": "acme"}},
            Routed("keyed", rule=2),
        ),
        ({"from_addr": "x@a.example", "tags": {"tenant": "zeta"}}, Routed("tenant", "a", 3)),
        # the first rule that matches wins
        ({"from_addr": "x@b.example", "campaign": (1, "spring")}, Routed("b", rule=0)),
    ],
)
def test_the_first_matching_route_picks_the_account(
    attributes: dict[str, object], expected: Routed
) -> None:
    assert route(ROUTES, "a", **attributes) == expected  # type: ignore[arg-type]


def test_a_route_without_conditions_matches_all_mail() -> None:
    assert route([RouteSettings(account="x")], "a", from_addr="y@z.example").account == "x"


def test_from_domain_reads_display_names_and_ignores_case() -> None:
    assert from_domain('"A, B" <Sales@Shop.Example>') == "shop.example"
    assert from_domain("plain@x.example") == "x.example"
    assert from_domain("no address") == ""


# --- the run of several pools ----------------------------------------------------------------


def test_the_report_of_several_pools_adds_their_counts_and_keeps_the_first_exit_not_ok() -> None:
    a = RunReport(EXIT_OK, "drained", Counters(sent=5, first_send_at=2.0, last_send_at=4.0), 3)
    b = RunReport(
        EXIT_QUOTA_SPENT, "quota", Counters(sent=2, first_send_at=1.0, last_send_at=3.0), 5
    )
    merged = merged_report([a, b])
    assert (merged.exit_code, merged.reason, merged.elapsed) == (EXIT_QUOTA_SPENT, "quota", 5)
    assert merged.counters.sent == 7
    assert (merged.counters.first_send_at, merged.counters.last_send_at) == (1.0, 4.0)
    assert merged_report([a]) is a


async def test_metrics_count_the_sends_of_every_account_under_its_name() -> None:
    def pool(sent: int, samples: list[float], rate: float) -> SimpleNamespace:
        return SimpleNamespace(
            counters=Counters(sent=sent, recipients_sent=sent),
            ledger=SimpleNamespace(ids=lambda: [1]),
            limiter=SimpleNamespace(rate=rate),
            admission=SimpleNamespace(slots=(1, 8)),
            _samples=samples,
        )

    a, b = pool(3, [0.1], 10.0), pool(4, [0.2, 0.3], 2.0)
    live = Live(asyncio.Event(), ("a", "b"))
    live.attach([("a", a), ("b", b)])  # type: ignore[list-item]
    a.counters.send_seconds, b.counters.send_seconds = a._samples, b._samples
    live.tick(1.0)
    text = generate_latest(live.metrics.registry).decode()
    assert 'dispatcher_sends_total{account="a",outcome="sent"} 3.0' in text
    assert 'dispatcher_sends_total{account="b",outcome="sent"} 4.0' in text
    assert 'dispatcher_send_rate_allowed{account="a"} 10.0' in text
    assert 'dispatcher_send_rate_allowed{account="b"} 2.0' in text
    assert 'dispatcher_in_flight{account="b"} 1.0' in text
    assert 'dispatcher_send_seconds_count{account="b"} 2.0' in text
    assert 'dispatcher_send_slots{account="a"} 8.0' in text  # each account's pool has its own
    assert a.counters.send_seconds == [] and b.counters.send_seconds == []  # moved over
