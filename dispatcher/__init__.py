"""dispatcher: asynchronous, high-throughput mail dispatcher for Amazon SES."""

from __future__ import annotations

__version__ = "0.1.0"
