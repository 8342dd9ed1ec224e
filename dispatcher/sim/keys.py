"""Typed keys under which the aiohttp application holds the simulator's objects."""

from __future__ import annotations

from aiohttp import web

from dispatcher.sim.state import SimState

STATE_KEY: web.AppKey[SimState] = web.AppKey("sim_state", SimState)
