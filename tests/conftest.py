"""Shared fixtures: real services started once per session (see tests/support/)."""

from __future__ import annotations

pytest_plugins = ["tests.support.sim", "tests.support.moto", "tests.support.pg"]
