"""moto in server mode, as a subprocess on a free loopback port, once per test session.

Register in tests/conftest.py with `pytest_plugins = [..., "tests.support.moto"]`, then:

    async def test_x(moto_server):
        moto_server.reset()
        async with SesAdapter.open(moto_server.ses_settings()) as ses:
            ...
        assert len(moto_server.sent_messages()) == 1

A subprocess keeps moto's imports (Flask, werkzeug, its own warnings) out of the test process,
where `filterwarnings = error` would turn them into failures.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from dispatcher.ses.settings import SesSettings

START_TIMEOUT = 30.0  # seconds for moto to answer its first request
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"

# moto's model classes under data.json["ses"] that record one accepted send each.
SENT_MODELS = ("Message", "RawMessage", "TemplateMessage", "BulkTemplateMessage")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class MotoServer:
    """A running moto server: its endpoint and synchronous helpers for its /moto-api/."""

    def __init__(self, endpoint_url: str, proc: subprocess.Popen[bytes]) -> None:
        self.endpoint_url = endpoint_url
        self.region = REGION
        self.proc = proc

    def _call(self, method: str, path: str) -> bytes:
        req = urllib.request.Request(self.endpoint_url + path, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:  # loopback only
            body: bytes = resp.read()
            return body

    def ses_data(self) -> dict[str, list[dict[str, Any]]]:
        """moto's SES records: model class name -> list of instance attributes."""
        data = json.loads(self._call("GET", "/moto-api/data.json"))
        ses: dict[str, list[dict[str, Any]]] = data.get("ses", {})
        return ses

    def sent_messages(self) -> list[dict[str, Any]]:
        """Every send moto accepted since the last reset, each with its model name under "model"."""
        ses = self.ses_data()
        return [{"model": m, **rec} for m in SENT_MODELS for rec in ses.get(m, [])]

    def reset(self) -> None:
        """Forget every identity, message and count (POST /moto-api/reset)."""
        self._call("POST", "/moto-api/reset")

    def ses_settings(self, **overrides: Any) -> SesSettings:
        """SesSettings pointing at this server, with moto's dummy credentials."""
        kwargs: dict[str, Any] = {
            "region": REGION,
            "endpoint_url": self.endpoint_url,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
        }
        kwargs.update(overrides)
        return SesSettings(**kwargs)

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for a plain `aioboto3.Session().client(...)` on this server."""
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": REGION,
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": SECRET_KEY,
        }


def _wait_ready(server: MotoServer, log_path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.proc.poll() is not None:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                log = f.read()
            raise RuntimeError(f"moto server exited with {server.proc.returncode}:\n{log}")
        try:
            server._call("GET", "/moto-api/data.json")
            return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not answer within {START_TIMEOUT}s") from None
            time.sleep(0.1)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto in server mode on a free 127.0.0.1 port for the whole session, killed at the end."""
    port = free_port()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
    }
    with tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False) as log:
        log_path = log.name
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = MotoServer(f"http://127.0.0.1:{port}", proc)
    try:
        _wait_ready(server, log_path)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.unlink(log_path)


@pytest.fixture
def moto(moto_server: MotoServer) -> MotoServer:
    """The session's moto server, emptied for this test."""
    moto_server.reset()
    return moto_server
