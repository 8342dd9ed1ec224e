"""From parsed TOML and environment variables to a validated `Config`: pure, no file or env access.

Precedence, lowest first: defaults, the file, `AWS_DEFAULT_REGION`, `AWS_REGION`, the shortcuts
`DISPATCHER_DATABASE_URL` / `DISPATCHER_DATA_DIR` / `DISPATCHER_SES_ENDPOINT_URL`, then the
generic `DISPATCHER_<SECTION>__<KEY>` (e.g. `DISPATCHER_QUEUE__CLAIM_BATCH=200`). Environment
always wins over the file; `[[webhooks]]` (an array of tables) is set in the file only. Every
error is one `ConfigError` that names the key, where the value came from, what is wrong and what
is accepted.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from dispatcher.accounts.settings import AccountSettings, RouteSettings
from dispatcher.config.settings import Config, mask_url
from dispatcher.errors import ConfigError
from dispatcher.pacing.providers import ProviderSettings
from dispatcher.webhooks.settings import WebhookSettings

ENV_PREFIX = "DISPATCHER_"
ENV_CONFIG_PATH = "DISPATCHER_CONFIG"  # read by load_config, ignored here
# (variable, section, key) in increasing precedence; the generic form beats all of them.
ENV_SHORTCUTS: tuple[tuple[str, str, str], ...] = (
    ("AWS_DEFAULT_REGION", "ses", "region"),
    ("AWS_REGION", "ses", "region"),
    ("DISPATCHER_DATABASE_URL", "database", "url"),
    ("DISPATCHER_DATA_DIR", "database", "data_dir"),
    ("DISPATCHER_SES_ENDPOINT_URL", "ses", "endpoint_url"),
)
ENV_TRUE = ("true", "1", "yes")
ENV_FALSE = ("false", "0", "no")
SECRET_KEYS = frozenset({"ses.secret_access_key", "webhooks.secret"})
MASK = "***"
WEBHOOKS = "webhooks"  # the one array of tables ([[webhooks]]); the file only, no environment
WEBHOOK_REQUIRED = {
    "url": "the URL to POST events to, e.g. https://app.example.com/hooks/mail",
    "secret": "a random string of at least 16 characters that the receiver checks signatures "
    "with (e.g. from `openssl rand -hex 32`)",
}

# The other arrays of tables, also the file only: `[[providers]]`, `[[accounts]]`, `[[routes]]`.
TABLE_ARRAYS: dict[str, type[Any]] = {
    "providers": ProviderSettings,  # provider lanes' limits
    "accounts": AccountSettings,
    "routes": RouteSettings,
}
ARRAYS = frozenset({WEBHOOKS, *TABLE_ARRAYS})
SECRET_KEYS = SECRET_KEYS | {"accounts.secret_access_key"}

_KEY_IN_MESSAGE = re.compile(r"\b[a-z]+\.[a-z0-9_]+\b")


def build_config(
    file_data: Mapping[str, Any], env: Mapping[str, str], *, path: Path | None = None
) -> Config:
    """Validate `file_data` (parsed TOML), apply `env` over it and build the `Config`.

    `path` only names the file in error messages.
    """
    file_where = f"in {path}" if path is not None else "in the config file"
    values: dict[str, dict[str, object]] = {name: {} for name in section_types()}
    sources: dict[str, str] = {}  # "section.key" -> where its value came from

    def put(section: str, key: str, raw: object, where: str, from_env: bool) -> None:
        hint = section_fields(section)[key]
        values[section][key] = _coerce(f"{section}.{key}", hint, raw, where, from_env)
        sources[f"{section}.{key}"] = where

    webhooks: tuple[WebhookSettings, ...] = ()
    arrays: dict[str, Any] = {}
    for section, table in file_data.items():
        if section == WEBHOOKS:
            webhooks = _webhooks(table, file_where)
            continue
        if section in TABLE_ARRAYS:
            arrays[section] = _tables(section, table, file_where)
            continue
        if section not in values:
            raise ConfigError(_outside_sections(section, table, file_where))
        if not isinstance(table, dict):
            raise ConfigError(
                f"[{section}] {file_where} must be a table of settings, got {_shown(table)}"
            )
        for key, raw in table.items():
            if key not in section_fields(section):
                raise ConfigError(
                    f"unknown key {section}.{key} {file_where}; "
                    + _suggest(key, section, as_env=False)
                )
            put(section, key, raw, file_where, from_env=False)

    for name, section, key in ENV_SHORTCUTS:
        raw = env.get(name)
        if raw is None or (raw == "" and name.startswith("AWS_")):
            continue  # an empty AWS_REGION is "unset" to the AWS tools too
        put(section, key, raw, f"from environment variable {name}", from_env=True)

    for name in sorted(env):
        target = _generic_env_target(name)
        if target is None:
            continue
        section, key = target
        put(section, key, env[name], f"from environment variable {name}", from_env=True)

    _place_data_dir(values["database"], sources.get("database.data_dir"), env, path)
    built: dict[str, Any] = {}
    for section, cls in section_types().items():
        try:
            built[section] = cls(**values[section])
        except ConfigError as err:
            message = str(err)
            raise ConfigError(message + _sources_note(message, section, sources)) from None
    try:
        return Config(**built, webhooks=webhooks, **arrays)
    except ConfigError as err:
        raise ConfigError(f"{err} ({file_where})") from None


def _webhooks(raw: object, where: str) -> tuple[WebhookSettings, ...]:
    """The `[[webhooks]]` tables; errors name the entry: `webhooks[0].url`."""
    hints = typing.get_type_hints(WebhookSettings)
    known = [f.name for f in dataclasses.fields(WebhookSettings)]
    out: list[WebhookSettings] = []
    for at, entry in _entries(WEBHOOKS, raw, where, known, each="endpoint"):
        values: dict[str, Any] = {}
        for key, value in entry.items():
            if key == "events":
                values[key] = _event_names(f"{at}.events", value, where)
            else:
                values[key] = _coerce(f"{at}.{key}", hints[key], value, where, from_env=False)
        for key, what in WEBHOOK_REQUIRED.items():
            if key not in values:
                raise ConfigError(f"{at}.{key} is required {where}: {what}")
        try:
            out.append(WebhookSettings(**values))
        except ConfigError as err:
            raise ConfigError(f"{str(err).replace('webhooks.', f'{at}.')} ({where})") from None
    return tuple(out)


def _tables(name: str, raw: object, where: str) -> tuple[Any, ...]:
    """The `[[accounts]]` or `[[routes]]` tables; errors name the entry: `routes[0].account`.
    A key holding several values (`routes.from_domain`) takes a string or an array of them."""
    cls = TABLE_ARRAYS[name]
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    known = [f.name for f in fields]
    required = [f.name for f in fields if f.default is dataclasses.MISSING]
    out: list[Any] = []
    for at, entry in _entries(name, raw, where, known, each="entry"):
        values: dict[str, Any] = {}
        for key, value in entry.items():
            if typing.get_origin(hints[key]) is tuple:
                items = [value] if isinstance(value, str) else value
                if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
                    raise ConfigError(
                        f"{at}.{key} must be a string or an array of strings, got "
                        f"{_shown(value)} ({where})"
                    )
                values[key] = tuple(items)
            else:
                values[key] = _coerce(f"{at}.{key}", hints[key], value, where, from_env=False)
        for key in required:
            if key not in values:
                raise ConfigError(f"{at}.{key} is required {where}")
        try:
            out.append(cls(**values))
        except ConfigError as err:
            raise ConfigError(f"{str(err).replace(f'{name}.', f'{at}.')} ({where})") from None
    return tuple(out)


def _entries(
    name: str, raw: object, where: str, known: list[str], *, each: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The tables of an array `[[name]]` with where each stands (`name[0]`); one line that
    says what to fix for anything but tables of known keys."""
    if not isinstance(raw, list):
        raise ConfigError(
            f"{name} {where} must be an array of tables, one [[{name}]] per {each}, "
            f"got {_shown(raw)}"
        )
    for i, entry in enumerate(raw):
        at = f"{name}[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{at} {where} must be a table of settings, got {_shown(entry)}")
        for key in entry:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = (
                    f"did you mean {at}.{close[0]}?"
                    if close
                    else "the keys are: " + ", ".join(known)
                )
                raise ConfigError(f"unknown key {at}.{key} {where}; {hint}")
        yield at, entry


def _event_names(key: str, raw: object, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise ConfigError(
            f'{key} must be an array of event names such as ["delivered", "bounced"], '
            f"got {_shown(raw)} ({where})"
        )
    return tuple(raw)


def _place_data_dir(
    database: dict[str, object], where: str | None, env: Mapping[str, str], path: Path | None
) -> None:
    """Make database.data_dir independent of the working directory where it can be.

    Unset: the user's data directory ($XDG_DATA_HOME/dispatcher, else
    ~/.local/share/dispatcher), so every command finds the same cluster wherever it runs.
    Relative in the file: relative to the file. Relative in the environment: to the working
    directory, as typed (EmbeddedPostgres makes it absolute).
    """
    if where is None:
        xdg, home = env.get("XDG_DATA_HOME", ""), env.get("HOME", "")
        if xdg and Path(xdg).is_absolute():
            database["data_dir"] = Path(xdg) / "dispatcher"
        elif home:
            database["data_dir"] = Path(home) / ".local" / "share" / "dispatcher"
        return
    data_dir = database["data_dir"]
    from_file = not where.startswith("from environment")
    if from_file and path is not None and isinstance(data_dir, Path) and str(data_dir):
        database["data_dir"] = path.expanduser().parent / data_dir  # absolute stays absolute


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The effective configuration as plain data for display; secrets masked, paths as text."""
    out: dict[str, Any] = {}
    for section in section_types():
        obj = getattr(cfg, section)
        shown: dict[str, Any] = {}
        for key in section_fields(section):
            value = getattr(obj, key)
            if f"{section}.{key}" in SECRET_KEYS and value is not None:
                value = MASK
            elif section == "database" and key == "url" and value is not None:
                value = mask_url(value)
            elif isinstance(value, Path):
                value = str(value)
            shown[key] = value
        out[section] = shown
    out[WEBHOOKS] = [_shown_webhook(w) for w in cfg.webhooks]
    for name in TABLE_ARRAYS:  # shown only when set, as the file has them
        if entries := getattr(cfg, name):
            out[name] = [_shown_entry(name, e) for e in entries]
    return out


def _shown_entry(name: str, entry: Any) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for f in dataclasses.fields(entry):
        value = getattr(entry, f.name)
        if f"{name}.{f.name}" in SECRET_KEYS and value is not None:
            value = MASK
        elif isinstance(value, tuple):
            value = list(value)
        shown[f.name] = value
    return shown


def _shown_webhook(webhook: WebhookSettings) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for f in dataclasses.fields(webhook):
        value = getattr(webhook, f.name)
        if f"{WEBHOOKS}.{f.name}" in SECRET_KEYS:
            value = MASK
        elif f.name == "url":
            value = mask_url(value)
        elif isinstance(value, tuple):
            value = list(value)
        shown[f.name] = value
    return shown


@functools.cache
def section_types() -> dict[str, type[Any]]:
    """Section name -> its dataclass, in the order of `Config`'s fields."""
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config) if f.name not in ARRAYS}


@functools.cache
def section_fields(section: str) -> dict[str, Any]:
    """Key -> type hint of every setting of `section`, in declaration order."""
    cls = section_types()[section]
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def env_name(section: str, key: str) -> str:
    """The generic environment variable for one key: DISPATCHER_QUEUE__CLAIM_BATCH."""
    return f"{ENV_PREFIX}{section.upper()}__{key.upper()}"


def _generic_env_target(name: str) -> tuple[str, str] | None:
    """(section, key) that DISPATCHER_<SECTION>__<KEY> sets; None for variables not of that form.

    Raises for a near miss (unknown section or key, or a single underscore where two belong):
    a variable meant for us that silently does nothing is the worst outcome.
    """
    if not name.startswith(ENV_PREFIX) or any(name == n for n, _, _ in ENV_SHORTCUTS):
        return None
    rest = name[len(ENV_PREFIX) :].lower()
    where = f"from environment variable {name}"
    if "__" not in rest:
        for section in section_types():
            key = rest.removeprefix(f"{section}_")
            if key != rest and key in section_fields(section):
                raise ConfigError(
                    f"environment variable {name} is not a setting; did you mean "
                    f"{env_name(section, key)} (two underscores between section and key)?"
                )
        return None
    section, _, key = rest.partition("__")
    if section == WEBHOOKS:
        raise ConfigError(
            f"environment variable {name}: webhooks are set in the config file only, as "
            "[[webhooks]] tables (README, Webhooks)"
        )
    if section not in section_types():
        close = difflib.get_close_matches(section, list(section_types()), n=1)
        hint = (
            f"did you mean {env_name(close[0], key)}?"
            if close
            else "the sections are: " + ", ".join(section_types())
        )
        raise ConfigError(f"unknown section [{section}] {where}; {hint}")
    if key not in section_fields(section):
        raise ConfigError(
            f"unknown key {section}.{key} {where}; " + _suggest(key, section, as_env=True)
        )
    return section, key


def _coerce(key: str, hint: Any, raw: object, where: str, from_env: bool) -> object:
    """`raw` as the type of `hint`, strictly: no bool for a number, no float for an integer."""
    optional = False
    words: list[str] = []  # int | Literal["auto"]: the words accepted besides the number
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = len(args) < len(typing.get_args(hint)), args[0]
        words = [str(w) for a in args[1:] if typing.get_origin(a) is Literal for w in a.__args__]
    if from_env and optional and raw == "":
        return None  # an empty variable unsets an optional value (e.g. back to embedded Postgres)
    text = raw.strip() if from_env and isinstance(raw, str) else raw

    def bad(expected: str) -> ConfigError:
        extra = ""
        numeric = expected in ("an integer", "a number", "a finite number")
        if numeric and not from_env and isinstance(raw, str) and _is_number(raw):
            extra = "; write numbers without quotes"
        return ConfigError(f"{key} must be {expected}, got {_shown(raw)}{extra} ({where})")

    if words:
        if isinstance(text, str) and text.lower() in words:
            return text.lower()
        try:
            return _coerce(key, hint, raw, where, from_env)
        except ConfigError:
            raise bad(f"an integer or {'|'.join(words)}") from None
    if typing.get_origin(hint) is Literal:
        accepted = [str(a) for a in typing.get_args(hint)]
        if isinstance(text, str) and text.lower() in accepted:
            return text.lower()
        raise bad("one of " + "|".join(accepted))
    if hint is bool:
        if isinstance(text, bool):
            return text
        if from_env and isinstance(text, str) and text.lower() in ENV_TRUE + ENV_FALSE:
            return text.lower() in ENV_TRUE
        raise bad("true or false" + (" (or 1/0, yes/no)" if from_env else ""))
    if hint is int:
        if isinstance(text, int) and not isinstance(text, bool):
            return text
        if from_env and isinstance(text, str) and re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        raise bad("an integer")
    if hint is float:
        number: float | None = None
        if isinstance(text, int | float) and not isinstance(text, bool):
            number = float(text)
        elif from_env and isinstance(text, str):
            try:
                number = float(text)
            except ValueError:
                number = None
        if number is None:
            raise bad("a number")
        if not math.isfinite(number):
            raise bad("a finite number")
        return number
    if hint is str or hint is Path:
        if not isinstance(raw, str):
            raise bad("a string" if hint is str else "a path (a string)")
        if hint is Path:
            if not raw:
                raise bad("a non-empty path")
            return Path(raw).expanduser()
        return raw
    raise AssertionError(f"{key}: no coercion for {hint!r}")  # a new field of a new type


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _shown(raw: object) -> str:
    """A value as the user wrote it, for 'got ...'."""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, dict):
        return "a table"
    if isinstance(raw, list):
        return "an array"
    return repr(raw)


def _suggest(key: str, section: str, *, as_env: bool) -> str:
    """'did you mean ...?' with the closest key, spelled as written (file key or variable)."""
    known = list(section_fields(section))
    close = difflib.get_close_matches(key, known, n=1)
    if close and as_env:
        return f"did you mean {env_name(section, close[0])} ({section}.{close[0]})?"
    if close:
        return f"did you mean {section}.{close[0]}?"
    return f"the keys of [{section}] are: " + ", ".join(known)


def _outside_sections(name: str, value: object, where: str) -> str:
    """Message for a top-level name of the file that is not a known section."""
    if isinstance(value, dict):
        close = difflib.get_close_matches(name, list(section_types()), n=1)
        hint = f"did you mean [{close[0]}]?" if close else ""
        return (
            f"unknown section [{name}] {where}; {hint}"
            + (" " if hint else "")
            + "the sections are: "
            + ", ".join(section_types())
        )
    owners = [s for s in section_types() if name in section_fields(s)]
    hint = f"put it under [{owners[0]}]" if owners else "settings belong under a [section]"
    return (
        f"{name} {where} is outside any section; {hint} "
        f"(the sections are: {', '.join(section_types())})"
    )


def _sources_note(message: str, section: str, sources: Mapping[str, str]) -> str:
    """' (in /etc/x.toml)': where the values behind a section's validation error were set."""
    named = [k for k in dict.fromkeys(_KEY_IN_MESSAGE.findall(message)) if k in sources]
    if not named:  # the rule names only defaults, so a set key of the section broke it
        named = [k for k in sources if k.startswith(f"{section}.")]
    if not named:
        return ""
    if len(named) == 1 and message.startswith(named[0] + " "):
        return f" ({sources[named[0]]})"
    return " (" + "; ".join(f"{k} {sources[k]}" for k in named) + ")"
