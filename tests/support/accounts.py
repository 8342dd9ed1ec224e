"""A config file with several SES accounts, as a user writes one (tests of `[[accounts]]`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def write_accounts(
    path: Path,
    endpoints: Mapping[str, str],
    *,
    extra: Mapping[str, str] | None = None,
    routes: str = "",
) -> Path:
    """`[[accounts]]` tables (name -> endpoint URL, the first the default), each with its
    `extra` lines, then `routes` (TOML text) as given; returns `path`."""
    tables = [
        f'[[accounts]]\nname = "{name}"\nendpoint_url = "{url}"\n{(extra or {}).get(name, "")}'
        for name, url in endpoints.items()
    ]
    path.write_text("\n".join([*tables, routes]))
    return path
