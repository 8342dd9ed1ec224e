"""The live dashboard at /ui/ on the `[api]` listener (see handlers.py)."""

from __future__ import annotations

from dispatcher.obs.ui.handlers import install

__all__ = ["install"]
