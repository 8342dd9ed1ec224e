"""Typed keys under which the aiohttp application holds the simulator's objects."""

from __future__ import annotations

import asyncio

from aiohttp import web

from dispatcher.sim.faults import Faults
from dispatcher.sim.publisher import Publisher
from dispatcher.sim.state import SimState

STATE_KEY: web.AppKey[SimState] = web.AppKey("sim_state", SimState)
FAULTS_KEY: web.AppKey[Faults] = web.AppKey("sim_faults", Faults)
PUBLISHER_KEY: web.AppKey[Publisher] = web.AppKey("sim_publisher", Publisher)
# Set when the server stops: requests held by a "never answers" fault let go then.
CLOSING_KEY: web.AppKey[asyncio.Event] = web.AppKey("sim_closing", asyncio.Event)
