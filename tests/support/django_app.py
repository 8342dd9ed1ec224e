"""A real Django, configured in the test process, whose "default" database is a test's database.

    def test_x(pg_dsn):
        use_database(pg_dsn)
        await in_django(lambda: send_mail(...))   # Django code off the event loop

Django's settings are configured once per process (``settings.configure``); each test points
the "default" alias at its own database. Django refuses its ORM on a thread that runs an event
loop, so ``in_django`` runs the code in a worker thread and closes that thread's connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import unquote, urlsplit

import django
from django.conf import settings
from django.db import connections

_T = TypeVar("_T")

BACKEND = "dispatcher.integrations.django.EmailBackend"
DEFAULT_FROM = "app@example.com"


def _database(dsn: str) -> dict[str, str]:
    parts = urlsplit(dsn)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


def use_database(dsn: str) -> None:
    """Configure Django (once) and point its "default" database at ``dsn``."""
    if not settings.configured:
        settings.configure(
            DATABASES={"default": _database(dsn)},
            EMAIL_BACKEND=BACKEND,
            DEFAULT_FROM_EMAIL=DEFAULT_FROM,
            USE_TZ=True,
            DISPATCHER_TAGS={"app": "shop"},
        )
        django.setup()
        return
    # The dict every thread's connection is made from (Django's test runner does the same).
    connections.settings["default"].update(_database(dsn))


async def in_django(call: Callable[[], _T]) -> _T:
    """``call()`` in a worker thread with its own Django connection, closed afterwards."""

    def run() -> _T:
        try:
            return call()
        finally:
            connections.close_all()

    return await asyncio.to_thread(run)
