"""Bulk campaigns: the pure parts (templates, lint, recipient lists); no I/O here."""

from __future__ import annotations

from dispatcher.campaigns.lint import Finding, format_findings, has_errors, lint_html
from dispatcher.campaigns.recipients import (
    MAX_VARIABLE_BYTES,
    RecipientReader,
    RecipientRow,
    RejectedRow,
    dedupe_key,
    iter_recipients,
)
from dispatcher.campaigns.render import CampaignContent, CompiledCampaign, Rendered

__all__ = [
    "MAX_VARIABLE_BYTES",
    "CampaignContent",
    "CompiledCampaign",
    "Finding",
    "RecipientReader",
    "RecipientRow",
    "RejectedRow",
    "Rendered",
    "dedupe_key",
    "format_findings",
    "has_errors",
    "iter_recipients",
    "lint_html",
]
