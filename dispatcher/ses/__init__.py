"""SES adapter: aioboto3 clients, error classification (pure, in classify.py) and settings."""

from __future__ import annotations

from dispatcher.ses.adapter import SesAdapter, classify_exception
from dispatcher.ses.classify import classify_bulk_status, classify_error
from dispatcher.ses.errors import SesError
from dispatcher.ses.settings import SesSettings

__all__ = [
    "SesAdapter",
    "SesError",
    "SesSettings",
    "classify_bulk_status",
    "classify_error",
    "classify_exception",
]
