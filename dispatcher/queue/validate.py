"""Kept for its import path: the checks live in ``dispatcher.domain.validate``."""

from __future__ import annotations

from dispatcher.domain.validate import (
    MAX_IDEMPOTENCY_KEY,
    MAX_RECIPIENTS,
    MAX_TAG_LENGTH,
    RESERVED_TAG,
    validate_message,
)

__all__ = [
    "MAX_IDEMPOTENCY_KEY",
    "MAX_RECIPIENTS",
    "MAX_TAG_LENGTH",
    "RESERVED_TAG",
    "validate_message",
]
