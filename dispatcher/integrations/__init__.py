"""Integrations with application frameworks; each imports its framework only when it is used."""

from __future__ import annotations
