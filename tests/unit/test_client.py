"""dispatcher.client against a stand-in server (the standard library's): a 503 is retried a
bounded number of times under the same idempotency key, a refusal is a ClientError at once,
and a server that is not there fails after the same bounded retries. (The client against the
real daemon: tests/e2e/test_http_api_curl.py.)"""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dispatcher.client import Client, ClientError


@contextmanager
def server(answers: list[tuple[int, bytes, dict[str, str]]]) -> Iterator[tuple[str, list[Any]]]:
    """A server giving `answers` in turn (the last one again once they run out); yields its URL
    and the requests it got (method, path, headers, body)."""
    seen: list[Any] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
            status, body, headers = answers[min(len(seen), len(answers)) - 1]
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def reply(status: int, body: Any, **headers: str) -> tuple[int, bytes, dict[str, str]]:
    return status, json.dumps(body).encode(), {"Content-Type": "application/json", **headers}


UNAVAILABLE = reply(503, {"error": "try again later"}, **{"Retry-After": "0"})


def test_a_503_is_retried_under_the_same_key_then_the_answer_is_taken() -> None:
    with server([UNAVAILABLE, UNAVAILABLE, reply(201, {"id": 7, "created": True})]) as (url, seen):
        client = Client(url, "DKID", "secret", retries=3)
        assert client.send(from_="a@example.com", to="b@example.com", subject="s", text="t") == 7
    assert len(seen) == 3
    keys = {headers["Idempotency-Key"] for _, _, headers, _ in seen}
    assert len(keys) == 1  # one message, however many tries
    method, path, headers, body = seen[0]
    assert (method, path) == ("POST", "/v1/messages")
    assert headers["Authorization"] == "Basic REtJRDpzZWNyZXQ="  # DKID:secret
    assert json.loads(body) == {
        "from": "a@example.com",
        "to": "b@example.com",
        "subject": "s",
        "text": "t",
    }


def test_retries_are_bounded_and_a_refusal_is_not_retried() -> None:
    with server([UNAVAILABLE]) as (url, seen), pytest.raises(ClientError) as unavailable:
        Client(url, "DKID", "secret", retries=2).send_batch([{"from": "a@example.com"}])
    assert unavailable.value.status == 503 and len(seen) == 3
    bad = reply(400, {"error": "to[0] 'x' is not an email address", "field": "to", "index": 1})
    with server([bad]) as (url, seen), pytest.raises(ClientError) as refused:
        Client(url, "DKID", "secret").send_batch([{}, {}], idempotency_key="b-1")
    assert (refused.value.status, refused.value.field) == (400, "to") and len(seen) == 1
    assert seen[0][2]["Idempotency-Key"] == "b-1"
    with (
        server([(502, b"<html>bad gateway</html>", {})]) as (url, _),
        pytest.raises(ClientError) as proxy,
    ):
        Client(url, "DKID", "secret").get(3)
    assert (proxy.value.status, proxy.value.error, proxy.value.field) == (502, "Bad Gateway", None)


def test_a_server_that_is_not_there_fails_after_the_bounded_retries() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}", "DKID", "secret", retries=2, backoff=0.01)
    with pytest.raises(urllib.error.URLError):
        client.get(1)
