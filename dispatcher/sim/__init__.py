"""An Amazon SES simulator (v1 Query/XML and v2 REST-JSON) for tests and benchmarks.

Layers: `settings` and `limits` and `state` are pure (no aiohttp); `v1`, `v2` and `admin` are
the HTTP protocol layers; `server` assembles them; `cli` runs them.
"""

from __future__ import annotations

from dispatcher.sim.settings import SimSettings
from dispatcher.sim.state import SimState

__all__ = ["SimServer", "SimSettings", "SimState", "build_app"]


def __getattr__(name: str) -> object:
    # The server imports aiohttp; load it only when asked so the pure parts stay light.
    if name in ("SimServer", "build_app", "serve"):
        from dispatcher.sim import server

        return getattr(server, name)
    raise AttributeError(name)
