"""Config: defaults, file and environment layering, strict types, and errors a person can act on."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from dispatcher.config import (
    Config,
    ConfigError,
    DatabaseSettings,
    DeliverySettings,
    LogSettings,
    PacingSettings,
    QueueSettings,
    SesSettings,
    build_config,
    config_to_dict,
    load_config,
)
from dispatcher.pacing.providers import ProviderSettings
from dispatcher.webhooks.settings import WebhookSettings

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "dispatcher.toml"
FILE = Path("/etc/dispatcher/config.toml")
IN_FILE = f"in {FILE}"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(file_data: dict[str, Any], env: dict[str, str] | None = None) -> str:
    """The message of the ConfigError that building raises; it must be one line, exit code 2."""
    with pytest.raises(ConfigError) as info:
        build_config(file_data, env or {}, path=FILE)
    message = str(info.value)
    assert info.value.exit_code == 2
    assert "\n" not in message
    return message


# --- defaults ----------------------------------------------------------------------------------


def test_defaults() -> None:
    cfg = Config()
    assert cfg.database == DatabaseSettings(None, Path(".dispatcher"), True, 10)
    assert cfg.queue.claim_batch == 100
    assert cfg.queue.lease_seconds == 30.0
    assert cfg.queue.settle_interval == 0.05
    assert cfg.delivery.in_doubt == "hold"
    assert cfg.delivery.max_in_flight == "auto"
    assert cfg.delivery.in_flight_ceiling == 1000
    assert cfg.ses == SesSettings()
    assert cfg.ses.access_key_id is None  # the AWS credential chain applies
    assert cfg.pacing == PacingSettings()
    assert cfg.log == LogSettings("info", "auto")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.queue.claim_batch = 5  # type: ignore[misc]


def test_no_file_and_no_environment_gives_defaults() -> None:
    assert load_config(env={}) == Config()
    assert build_config({}, {}) == Config()


def test_unrelated_environment_variables_are_ignored() -> None:
    env = {"PATH": "/bin", "DISPATCHER_SOMETHING": "x", "DISPATCHER_ID": "7", "LANG": "C"}
    assert build_config({}, env) == Config()


# --- where the embedded cluster lives ----------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HOME": "/home/ann"}, "/home/ann/.local/share/dispatcher"),
        ({"HOME": "/home/ann", "XDG_DATA_HOME": "/data"}, "/data/dispatcher"),
        ({"HOME": "/home/ann", "XDG_DATA_HOME": "rel"}, "/home/ann/.local/share/dispatcher"),
        ({"HOME": "/home/ann", "DISPATCHER_DATA_DIR": "here"}, "here"),  # as typed, cwd-relative
        ({}, ".dispatcher"),  # no home directory known
    ],
)
def test_data_dir_unset_is_the_users_data_directory(env: dict[str, str], expected: str) -> None:
    assert build_config({}, env).database.data_dir == Path(expected)


def test_data_dir_in_a_file_is_relative_to_the_file() -> None:
    def placed(value: str, path: Path | None) -> Path:
        return build_config(
            {"database": {"data_dir": value}}, {"HOME": "/h"}, path=path
        ).database.data_dir

    assert placed("state", FILE) == Path("/etc/dispatcher/state")
    assert placed("../state", Path("conf/d.toml")) == Path("conf/../state")
    assert placed("/var/lib/d", FILE) == Path("/var/lib/d")
    assert placed("state", None) == Path("state")


# --- the file ----------------------------------------------------------------------------------


def test_file_values_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [database]
        url = "postgresql://app@db:5432/mail"
        data_dir = "/var/lib/dispatcher"
        migrate_on_start = false

        [queue]
        claim_batch = 500
        lease_seconds = 60          # an integer where a number is wanted is fine
        backoff_max = 1_800.5

        [delivery]
        in_doubt = "resend"

        [ses]
        region = "eu-west-1"
        access_key_id = "AKIAEXAMPLE"
        secret_access_key = "s3cret"

        [pacing]
        quota_headroom = 0.9

        [log]
        level = "debug"
        format = "json"
        """,
    )
    cfg = load_config(path, env={})
    assert cfg.database == DatabaseSettings(
        "postgresql://app@db:5432/mail", Path("/var/lib/dispatcher"), False, 10
    )
    assert cfg.queue == QueueSettings(claim_batch=500, lease_seconds=60.0, backoff_max=1800.5)
    assert isinstance(cfg.queue.lease_seconds, float)
    assert cfg.delivery == DeliverySettings(in_doubt="resend")
    assert cfg.ses == SesSettings(
        region="eu-west-1", access_key_id="AKIAEXAMPLE", secret_access_key="s3cret"
    )
    assert cfg.pacing == PacingSettings(quota_headroom=0.9)
    assert cfg.log == LogSettings("debug", "json")


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[queue]\nclaim_batch = 7\n")
    assert load_config(env={"DISPATCHER_CONFIG": str(path)}).queue.claim_batch == 7


def test_path_argument_beats_environment_path(tmp_path: Path) -> None:
    path = write(tmp_path, "[queue]\nclaim_batch = 7\n")
    cfg = load_config(path, env={"DISPATCHER_CONFIG": str(tmp_path / "nope.toml")})
    assert cfg.queue.claim_batch == 7


def test_os_environ_is_the_default_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPATCHER_CONFIG", raising=False)
    monkeypatch.setenv("DISPATCHER_QUEUE__CLAIM_BATCH", "321")
    assert load_config().queue.claim_batch == 321


# --- the environment ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "section", "key", "expected"),
    [
        (
            "DISPATCHER_DATABASE_URL",
            "postgresql://u@h/db",
            "database",
            "url",
            "postgresql://u@h/db",
        ),
        ("DISPATCHER_DATA_DIR", "/srv/dispatcher", "database", "data_dir", Path("/srv/dispatcher")),
        ("DISPATCHER_SES_ENDPOINT_URL", "http://127.0.0.1:4579", "ses", "endpoint_url", None),
        ("AWS_REGION", "eu-central-1", "ses", "region", "eu-central-1"),
        ("AWS_DEFAULT_REGION", "ap-south-1", "ses", "region", "ap-south-1"),
    ],
)
def test_named_environment_variables_override_the_file(
    name: str, value: str, section: str, key: str, expected: object
) -> None:
    file_data = {
        "database": {"url": "postgresql://file@h/db", "data_dir": "/from/file"},
        "ses": {"endpoint_url": "http://file:1", "region": "us-west-2"},
    }
    cfg = build_config(file_data, {name: value}, path=FILE)
    got = getattr(getattr(cfg, section), key)
    assert got == (value if expected is None else expected)


def test_aws_region_beats_aws_default_region() -> None:
    env = {"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-west-2"}
    assert build_config({}, env).ses.region == "eu-west-1"
    # An empty AWS_REGION is unset to the AWS tools, so it is to us.
    env = {"AWS_REGION": "", "AWS_DEFAULT_REGION": "us-west-2"}
    assert build_config({}, env).ses.region == "us-west-2"


def test_generic_environment_variable_beats_named_one_and_file() -> None:
    env = {
        "DISPATCHER_DATABASE_URL": "postgresql://a@h/a",
        "DISPATCHER_DATABASE__URL": "postgres://b@h/b",
    }
    cfg = build_config({"database": {"url": "postgresql://file@h/f"}}, env)
    assert cfg.database.url == "postgres://b@h/b"
    assert (
        build_config({}, {"DISPATCHER_SES__REGION": "x-1", "AWS_REGION": "y-1"}).ses.region == "x-1"
    )


def test_empty_environment_value_unsets_an_optional_setting() -> None:
    cfg = build_config(
        {"database": {"url": "postgresql://file@h/f"}}, {"DISPATCHER_DATABASE_URL": ""}
    )
    assert cfg.database.url is None  # back to the embedded Postgres


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DISPATCHER_DATABASE__POOL_SIZE", "25", ("database", "pool_size", 25)),
        ("DISPATCHER_DATABASE__MIGRATE_ON_START", "no", ("database", "migrate_on_start", False)),
        ("DISPATCHER_QUEUE__CLAIM_BATCH", "200", ("queue", "claim_batch", 200)),
        ("DISPATCHER_QUEUE__POLL_INTERVAL", " 0.25 ", ("queue", "poll_interval", 0.25)),
        ("DISPATCHER_QUEUE__LEASE_SECONDS", "60", ("queue", "lease_seconds", 60.0)),
        ("DISPATCHER_DELIVERY__IN_DOUBT", "resend", ("delivery", "in_doubt", "resend")),
        ("DISPATCHER_DELIVERY__SHUTDOWN_GRACE", "0", ("delivery", "shutdown_grace", 0.0)),
        ("DISPATCHER_DELIVERY__MAX_IN_FLIGHT", "300", ("delivery", "max_in_flight", 300)),
        ("DISPATCHER_DELIVERY__MAX_IN_FLIGHT", "Auto", ("delivery", "max_in_flight", "auto")),
        ("DISPATCHER_SES__CONFIGURATION_SET", "cs-1", ("ses", "configuration_set", "cs-1")),
        ("DISPATCHER_SES__READ_TIMEOUT", "30", ("ses", "read_timeout", 30.0)),
        ("DISPATCHER_PACING__RATE_HEADROOM", "0.5", ("pacing", "rate_headroom", 0.5)),
        ("DISPATCHER_LOG__LEVEL", "DEBUG", ("log", "level", "debug")),
        ("DISPATCHER_LOG__FORMAT", "console", ("log", "format", "console")),
    ],
)
def test_generic_environment_override(
    name: str, value: str, expected: tuple[str, str, Any]
) -> None:
    section, key, want = expected
    got = getattr(getattr(build_config({}, {name: value}), section), key)
    assert got == want
    assert type(got) is type(want)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("false", False),
        ("0", False),
        ("No", False),
    ],
)
def test_boolean_spellings_from_environment(value: str, expected: bool) -> None:
    env = {"DISPATCHER_DATABASE__MIGRATE_ON_START": value}
    assert build_config({}, env).database.migrate_on_start is expected


def test_every_key_has_a_generic_environment_variable() -> None:
    """Each key set to its default through its DISPATCHER_<SECTION>__<KEY> changes nothing."""
    env: dict[str, str] = {}
    for section, values in config_to_dict(Config()).items():
        if section in ("webhooks", "providers"):
            continue  # an array of tables: the file only
        for key, value in values.items():
            if value is None:
                continue
            text = str(value).lower() if isinstance(value, bool) else str(value)
            env[f"DISPATCHER_{section.upper()}__{key.upper()}"] = text
    assert len(env) > 30
    assert build_config({}, env) == Config()


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_data", "env", "expected"),
    [
        # Wrong type, in the file.
        (
            {"queue": {"claim_batch": "abc"}},
            {},
            f"queue.claim_batch must be an integer, got 'abc' ({IN_FILE})",
        ),
        ({"queue": {"claim_batch": "100"}}, {}, "got '100'; write numbers without quotes"),
        ({"queue": {"claim_batch": 1.5}}, {}, "queue.claim_batch must be an integer, got 1.5"),
        ({"queue": {"claim_batch": True}}, {}, "queue.claim_batch must be an integer, got true"),
        (
            {"queue": {"lease_seconds": False}},
            {},
            "queue.lease_seconds must be a number, got false",
        ),
        (
            {"database": {"migrate_on_start": 1}},
            {},
            "database.migrate_on_start must be true or false, got 1",
        ),
        ({"database": {"migrate_on_start": "yes"}}, {}, "must be true or false, got 'yes'"),
        ({"database": {"data_dir": 5}}, {}, "database.data_dir must be a path (a string), got 5"),
        ({"ses": {"region": ["us-east-1"]}}, {}, "ses.region must be a string, got an array"),
        (
            {"queue": {"claim_batch": {"x": 1}}},
            {},
            "queue.claim_batch must be an integer, got a table",
        ),
        (
            {"pacing": {"poll_timeout": float("inf")}},
            {},
            "pacing.poll_timeout must be a finite number",
        ),
        # Wrong type, from the environment.
        (
            {},
            {"DISPATCHER_QUEUE__CLAIM_BATCH": "abc"},
            "queue.claim_batch must be an integer, got 'abc' "
            "(from environment variable DISPATCHER_QUEUE__CLAIM_BATCH)",
        ),
        ({}, {"DISPATCHER_QUEUE__CLAIM_BATCH": "1.5"}, "must be an integer, got '1.5'"),
        ({}, {"DISPATCHER_QUEUE__LEASE_SECONDS": "soon"}, "queue.lease_seconds must be a number"),
        ({}, {"DISPATCHER_QUEUE__LEASE_SECONDS": "nan"}, "must be a finite number, got 'nan'"),
        (
            {},
            {"DISPATCHER_DATABASE__MIGRATE_ON_START": "maybe"},
            "database.migrate_on_start must be true or false (or 1/0, yes/no), got 'maybe'",
        ),
        ({}, {"DISPATCHER_QUEUE__CLAIM_BATCH": ""}, "queue.claim_batch must be an integer, got ''"),
        # Out of range.
        (
            {"queue": {"claim_batch": 0}},
            {},
            f"queue.claim_batch must be between 1 and 10000, got 0 ({IN_FILE})",
        ),
        ({"queue": {"claim_batch": 10_001}}, {}, "queue.claim_batch must be between 1 and 10000"),
        ({"queue": {"settle_batch": -1}}, {}, "queue.settle_batch must be between 1 and 10000"),
        ({"queue": {"lease_seconds": 0}}, {}, "queue.lease_seconds must be a number > 0, got 0.0"),
        ({"queue": {"max_attempts": 0}}, {}, "queue.max_attempts must be between 1 and 1000"),
        (
            {"queue": {"backoff_base": 10, "backoff_max": 5}},
            {},
            "queue.backoff_max must be >= queue.backoff_base",
        ),
        ({"queue": {"settle_interval": -0.1}}, {}, "queue.settle_interval must be a number >= 0"),
        (
            {"delivery": {"max_in_flight": 0}},
            {},
            "delivery.max_in_flight must be between 1 and 10000",
        ),
        (
            {"delivery": {"max_in_flight": 20_000}},
            {},
            "delivery.max_in_flight must be between 1 and 10000",
        ),
        (
            {"delivery": {"max_in_flight": "lots"}},
            {},
            f"delivery.max_in_flight must be an integer or auto, got 'lots' ({IN_FILE})",
        ),
        (
            {"delivery": {"in_doubt": "maybe"}},
            {},
            f"delivery.in_doubt must be one of hold|resend, got 'maybe' ({IN_FILE})",
        ),
        (
            {"guard": {"account_action": "everything"}},
            {},
            "guard.account_action must be one of campaigns|all, got 'everything'",
        ),
        (
            {"delivery": {"config_error_delay": 0}},
            {},
            "delivery.config_error_delay must be a number > 0",
        ),
        ({"database": {"pool_size": 0}}, {}, "database.pool_size must be between 1 and 1000"),
        ({"database": {"url": "mysql://u:pw@h/db"}}, {}, "database.url must be a PostgreSQL URL"),
        ({"database": {"data_dir": ""}}, {}, "database.data_dir must be a non-empty path, got ''"),
        (
            {"log": {"level": "verbose"}},
            {},
            "log.level must be one of debug|info|warning|error, got 'verbose'",
        ),
        ({"log": {"format": "xml"}}, {}, "log.format must be one of auto|json|console, got 'xml'"),
        # Ranges checked by SesSettings / PacingSettings, with the source added.
        (
            {"pacing": {"quota_headroom": 1.5}},
            {},
            f"pacing.quota_headroom must be in (0, 1], got 1.5 ({IN_FILE})",
        ),
        (
            {"ses": {"read_timeout": 0}},
            {},
            f"ses.read_timeout must be > 0 seconds, got 0.0 ({IN_FILE})",
        ),
        (
            {},
            {"DISPATCHER_SES__MAX_POOL_CONNECTIONS": "0"},
            "ses.max_pool_connections must be >= 1, got 0 "
            "(from environment variable DISPATCHER_SES__MAX_POOL_CONNECTIONS)",
        ),
        (
            {"ses": {"client": "boto3"}},
            {},
            f"ses.client must be one of lean, botocore, got 'boto3' ({IN_FILE})",
        ),
        (
            {"ses": {"access_key_id": "AKIA"}},
            {},
            "must be given together, or both left out to use the standard AWS credential chain "
            f"({IN_FILE})",
        ),
        # Unknown names.
        (
            {"queue": {"claim_bach": 5}},
            {},
            f"unknown key queue.claim_bach {IN_FILE}; did you mean queue.claim_batch?",
        ),
        (
            {"queue": {"zzz": 5}},
            {},
            f"unknown key queue.zzz {IN_FILE}; the keys of [queue] are: claim_batch, lease_seconds",
        ),
        (
            {"queu": {"claim_batch": 5}},
            {},
            f"unknown section [queu] {IN_FILE}; did you mean [queue]?",
        ),
        (
            {"mailer": {"host": "x"}},
            {},
            f"unknown section [mailer] {IN_FILE}; the sections are: database, queue, delivery, "
            "ses, pacing, feedback, guard, doctor, keys, api, smtp, retention, warmup, lanes, log",
        ),
        (
            {"claim_batch": 5},
            {},
            f"claim_batch {IN_FILE} is outside any section; put it under [queue]",
        ),
        ({"queue": 5}, {}, f"[queue] {IN_FILE} must be a table of settings, got 5"),
        (
            {},
            {"DISPATCHER_QUEUE__CLAIM_BACH": "5"},
            "unknown key queue.claim_bach from environment variable DISPATCHER_QUEUE__CLAIM_BACH; "
            "did you mean DISPATCHER_QUEUE__CLAIM_BATCH (queue.claim_batch)?",
        ),
        (
            {},
            {"DISPATCHER_QUEU__CLAIM_BATCH": "5"},
            "unknown section [queu] from environment variable DISPATCHER_QUEU__CLAIM_BATCH; "
            "did you mean DISPATCHER_QUEUE__CLAIM_BATCH?",
        ),
        (
            {},
            {"DISPATCHER_QUEUE_CLAIM_BATCH": "5"},
            "environment variable DISPATCHER_QUEUE_CLAIM_BATCH is not a setting; "
            "did you mean DISPATCHER_QUEUE__CLAIM_BATCH",
        ),
    ],
)
def test_error_names_key_source_and_what_is_accepted(
    file_data: dict[str, Any], env: dict[str, str], expected: str
) -> None:
    assert expected in error_of(file_data, env)


def test_cross_field_error_names_where_each_value_came_from() -> None:
    message = error_of(
        {"queue": {"lease_seconds": 6}}, {"DISPATCHER_QUEUE__HEARTBEAT_SECONDS": "4"}
    )
    assert message.startswith(
        "queue.heartbeat_seconds must be at most half of queue.lease_seconds=6.0"
    )
    assert (
        "queue.heartbeat_seconds from environment variable DISPATCHER_QUEUE__HEARTBEAT_SECONDS"
        in message
    )
    assert f"queue.lease_seconds {IN_FILE}" in message


def test_error_from_a_default_blames_the_key_that_was_set() -> None:
    # poll_interval_near_limit keeps its default 5.0; the poll_interval set below it is the cause.
    message = error_of({"pacing": {"poll_interval": 2}})
    assert message.startswith("pacing.poll_interval_near_limit must be in [1.0, poll_interval=2.0]")
    assert message.endswith(f"(pacing.poll_interval {IN_FILE})")


def test_database_url_password_is_not_shown_in_errors() -> None:
    message = error_of({"database": {"url": "mysql://user:hunter2@h/db"}})
    assert "hunter2" not in message
    assert "mysql://user:***@h/db" in message


def test_missing_file_is_an_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=re.escape(f"config file {missing} not found")) as info:
        load_config(missing, env={})
    assert info.value.exit_code == 2
    with pytest.raises(ConfigError, match="from environment variable DISPATCHER_CONFIG"):
        load_config(env={"DISPATCHER_CONFIG": str(missing)})


def test_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, env={})


def test_invalid_toml_names_the_file_and_the_place(tmp_path: Path) -> None:
    path = write(tmp_path, "[queue]\nclaim_batch = = 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert message.startswith(f"invalid TOML in {path}: ")
    assert "line 2" in message
    assert info.value.exit_code == 2


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[queue]\nclaim_batch = 0\n")
    with pytest.raises(ConfigError, match=re.escape(f"got 0 (in {path})")):
        load_config(path, env={})


def test_errors_are_not_chained() -> None:
    """The CLI prints one message: no 'During handling of the above exception' tail."""
    with pytest.raises(ConfigError) as info:
        build_config({"queue": {"claim_batch": 0}}, {})
    assert info.value.__suppress_context__ or info.value.__context__ is None


# --- showing the effective config --------------------------------------------------------------


def test_config_to_dict_masks_secrets() -> None:
    cfg = build_config(
        {
            "database": {
                "url": "postgresql://app:hunter2@db/mail?password=hunter3&sslmode=require"
            },
            "ses": {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3cret"},
        },
        {},
    )
    shown = config_to_dict(cfg)
    assert shown["ses"]["secret_access_key"] == "***"
    assert shown["ses"]["access_key_id"] == "AKIAEXAMPLE"
    assert shown["database"]["url"] == "postgresql://app:***@db/mail?password=***&sslmode=require"
    assert "s3cret" not in repr(shown) and "hunter" not in repr(shown)
    assert shown["database"]["data_dir"] == ".dispatcher"
    assert shown["queue"]["claim_batch"] == 100
    assert list(shown) == [
        "database",
        "queue",
        "delivery",
        "ses",
        "pacing",
        "feedback",
        "guard",
        "doctor",
        "keys",
        "api",
        "smtp",
        "retention",
        "warmup",
        "lanes",
        "log",
        "webhooks",
    ]  # the arrays of tables other than webhooks ([[providers]], ...) are shown when set


def test_config_to_dict_leaves_unset_secret_as_none() -> None:
    assert config_to_dict(Config())["ses"]["secret_access_key"] is None


# --- the shipped config/dispatcher.toml --------------------------------------------------------


def test_shipped_config_file_is_the_defaults() -> None:
    assert load_config(SHIPPED, env={}) == Config()


def test_shipped_config_file_shows_every_setting() -> None:
    """Each key appears in its section, set or (for optional ones) commented out with an example."""
    text = SHIPPED.read_text(encoding="utf-8")
    bodies = dict(re.findall(r"^\[(\w+)\]\n(.*?)(?=^\[|\Z)", text, flags=re.M | re.S))
    missing = []
    for section, values in config_to_dict(Config()).items():
        if section in ("webhooks", "providers"):
            continue  # an array of tables, shown commented out: the tests below
        assert section in bodies, f"[{section}] missing from {SHIPPED}"
        for key in values:
            pattern = rf"^(# )?{key} = \S"
            if not re.search(pattern, bodies[section], flags=re.M):
                missing.append(f"{section}.{key}")
    assert missing == []


def test_shipped_config_file_documents_webhooks() -> None:
    """The commented [[webhooks]] example names every key; uncommented, it builds, and its
    tuning values are the defaults."""
    text = SHIPPED.read_text(encoding="utf-8")
    example = text[text.index("\n# [[webhooks]]\n") :]
    uncommented = "\n".join(
        line.removeprefix("# ")
        for line in example.splitlines()
        if re.match(r"^# (\[\[webhooks\]\]|\w+ = )", line)
    )
    data = tomllib.loads(uncommented)
    (hook,) = build_config(data, {}).webhooks
    defaults = WebhookSettings(url=hook.url, secret=hook.secret)
    assert list(data["webhooks"][0]) == [f.name for f in dataclasses.fields(WebhookSettings)]
    assert dataclasses.replace(hook, events=defaults.events) == defaults


# --- [[providers]] (issue 18 item 1) -----------------------------------------------------------


def test_shipped_config_file_documents_providers() -> None:
    """The commented [[providers]] example names every key and, uncommented, builds."""
    text = SHIPPED.read_text(encoding="utf-8")
    example = text[text.index("\n# [[providers]]\n") : text.index("\n[log]\n")]
    uncommented = "\n".join(
        line.removeprefix("# ")
        for line in example.splitlines()
        if re.match(r"^# (\[\[providers\]\]|\w+ = )", line)
    )
    data = tomllib.loads(uncommented)
    (google,) = build_config(data, {}).providers
    assert list(data["providers"][0]) == [f.name for f in dataclasses.fields(ProviderSettings)]
    assert (google.name, google.rate, google.daily_cap) == ("google", 5.0, 100000)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"name": "google", "rat": 5.0}, "unknown key providers[0].rat in /etc/dispatcher/config"),
        ({"rate": 5.0}, "providers[0].name is required"),
        ({"name": "Google", "rate": 5.0}, "providers[0].name must be a lower-case name"),
        ({"name": "google", "rate": 0.0}, "providers[0].rate must be a number of recipients/s > 0"),
        ({"name": "google", "rate": "5"}, "providers[0].rate must be a number, got '5'"),
        ({"name": "google", "daily_cap": 0}, "providers[0].daily_cap must be a whole number >= 1"),
        ({"name": "google", "daily_cap": 1.5}, "providers[0].daily_cap must be an integer"),
        ({"name": "acme", "rate": 1.0}, "providers[0].name 'acme' is not a shipped provider"),
        ({"name": "acme", "domains": 5}, "providers[0].domains must be a string or an array"),
        ({"name": "acme", "mx": ["Bad Host"]}, "providers[0].mx: 'Bad Host' is not a lower-case"),
        ({"name": "google"}, "providers[0] (google) sets nothing"),
    ],
)
def test_provider_errors_name_the_key(entry: dict[str, Any], expected: str) -> None:
    assert expected in error_of({"providers": [entry]})


def test_provider_repeated_is_refused() -> None:
    message = error_of(
        {"providers": [{"name": "yahoo", "rate": 1.0}, {"name": "yahoo", "daily_cap": 9}]}
    )
    assert "providers[1].name repeats providers[0].name ('yahoo')" in message
