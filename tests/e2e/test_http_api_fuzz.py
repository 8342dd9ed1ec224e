"""Property: whatever arrives at the HTTP API of `dispatcher run` (fuzzed methods, paths,
headers, credentials, bodies, and request lines that are not HTTP at all), the daemon never
answers 5xx or crashes, never answers 2xx to a POST without the rows committed for that key,
and never shows one key another key's messages."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.client import Client
from tests.support.api import api_daemon, create_key, tail
from tests.support.cli import cli_env, fetch
from tests.support.sim import SimFactory

EXAMPLES = 250  # requests; a few seconds against a local daemon
SECRET = "zq-only-key-b-may-read-this-7731"  # in key B's messages
STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")
GOOD: dict[str, Any] = {
    "from": "app@example.com",
    "to": ["jo@example.com"],
    "subject": "Hello",
    "text": "Hi",
}


@dataclass(frozen=True)
class Sent:
    """One request as bytes on the wire, and what it was meant to be."""

    raw: bytes
    method: str
    path: str
    auth: str  # "a", "b", or "none" (absent, wrong or garbage credentials)


def basic(user: str, secret: str) -> bytes:
    import base64

    return b"Basic " + base64.b64encode(f"{user}:{secret}".encode())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=6,
)
field_names = st.sampled_from(
    [
        *GOOD,
        "cc",
        "bcc",
        "reply_to",
        "tags",
        "priority",
        "send_after",
        "idempotency_key",
        "configuration_set",
        "html",
        "extra",
    ]
)
messages = st.one_of(
    st.just(GOOD),
    st.builds(lambda k, v: {**GOOD, k: v}, field_names, json_values),
    st.builds(lambda k: {**GOOD, "idempotency_key": k}, st.sampled_from(["k1", "k2"])),
    st.builds(
        lambda k, s: {**GOOD, "idempotency_key": k, "subject": s},
        st.sampled_from(["k1", "k2"]),
        st.sampled_from(["a", "b"]),
    ),
    st.dictionaries(field_names, json_values, max_size=5),
)
bodies = st.one_of(
    messages.map(lambda m: json.dumps(m).encode()),
    st.lists(messages, max_size=4).map(lambda ms: json.dumps(ms).encode()),
    st.binary(max_size=200),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    messages.map(lambda m: json.dumps(m, ensure_ascii=False).encode("utf-8", "surrogatepass")),
)
header_bytes = st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


def requests(
    a: tuple[str, str], b: tuple[str, str], ids: dict[str, int]
) -> st.SearchStrategy[Sent]:
    """Requests a client could send (well framed, anything inside) and bytes that are not HTTP."""
    auths = st.sampled_from(
        [
            ("a", basic(*a)),
            ("b", basic(*b)),
            ("none", basic(a[0], b[1])),
            ("none", b"Basic " + b"\xff\xfe"),
            ("none", b"Bearer x"),
            ("none", None),
        ]
    )
    paths = st.one_of(
        st.sampled_from(
            [
                "/v1/messages",
                f"/v1/messages/{ids['a']}",
                f"/v1/messages/{ids['b']}",
                "/v1/openapi.json",
                "/v1/messages/",
                "/v1/messages/%00",
                "/v1//messages",
                # The same listener's other door (issue 16 item 4), where it is served.
                "/",
                "/v2/email/outbound-emails",
                "/v2/email/account",
            ]
        ),
        st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF), max_size=30).map(
            lambda t: "/v1/messages/" + t
        ),
        st.text(max_size=30).map(lambda t: "/" + t.encode("utf-8", "surrogatepass").hex()),
    )
    methods = st.sampled_from(["GET", "POST", "POST", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"])

    def framed(
        method: str, path: str, auth: tuple[str, bytes | None], key: bytes | None, body: bytes
    ) -> Sent:
        lines = [f"{method} {path} HTTP/1.1".encode("utf-8", "surrogatepass"), b"Host: api"]
        if auth[1] is not None:
            lines.append(b"Authorization: " + auth[1])
        if key is not None:
            lines.append(b"Idempotency-Key: " + key)
        lines += [b"Content-Length: " + str(len(body)).encode(), b"Connection: close"]
        return Sent(b"\r\n".join(lines) + b"\r\n\r\n" + body, method, path, auth[0])

    idempotency = st.none() | st.sampled_from([b"k1", b"k2"]) | header_bytes
    return st.one_of(
        st.builds(framed, methods, paths, auths, idempotency, bodies),
        st.builds(framed, st.just("POST"), st.just("/v1/messages"), auths, idempotency, bodies),
        st.builds(framed, st.just("GET"), paths, auths, st.none(), st.just(b"")),
        st.binary(max_size=300).map(lambda raw: Sent(raw + b"\r\n\r\n", "", "", "none")),
    )


def exchange(port: int, sent: Sent) -> bytes:
    """Send the request and read the answer until the server closes. Bytes that are not HTTP
    are followed by closing our side (the server may otherwise wait for the rest); a request is
    not (aiohttp takes a half-close for a client gone, as many servers do)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(sent.raw)
        if not sent.method:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.timeout(300)
async def test_fuzzed_requests_never_crash_never_fake_a_commit_never_leak(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    async with sim_process(max_send_rate=2) as sim:
        env = cli_env(tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url)
        a = await create_key(env, "a")
        b = await create_key(env, "b")
        log_file = tmp_path / "run.log"
        async with api_daemon(env, log_file) as (base, proc):
            port = int(base.rsplit(":", 1)[1])
            secret_msg = {**GOOD, "subject": SECRET, "text": SECRET}
            b_ids = await asyncio.to_thread(Client(base, *b).send_batch, [secret_msg] * 3)
            a_id = await asyncio.to_thread(Client(base, *a).send, **GOOD)
            loop = asyncio.get_running_loop()
            answered: Counter[str] = Counter()
            keys = {"a": a[0], "b": b[0]}

            def committed(ids: list[int], key: str) -> bool:
                query = fetch(
                    pg_dsn,
                    "SELECT count(*) AS n FROM dispatcher.messages m "
                    "JOIN dispatcher.jobs j USING (id) WHERE m.id = ANY($1) AND m.key_id = $2",
                    ids,
                    keys[key],
                )
                (row,) = asyncio.run_coroutine_threadsafe(query, loop).result(30)
                return int(row["n"]) == len(set(ids))

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(requests(a, b, {"a": a_id, "b": b_ids[0]}))
            def one_request(sent: Sent) -> None:
                answer = exchange(port, sent)
                assert proc.returncode is None, tail(log_file)
                match = STATUS_LINE.match(answer)
                if match is None:  # not HTTP: closing without an answer is fine
                    assert not sent.method, (sent.raw[:300], answer[:300])
                    return
                status = int(match.group(1))
                answered[f"{sent.method} {status}"] += 1
                assert status < 500, (sent.raw[:300], answer[:500])
                if sent.auth != "b":
                    assert SECRET.encode() not in answer, (sent.raw[:300], answer[:500])
                _, _, body = answer.partition(b"\r\n\r\n")
                if 200 <= status < 300 and sent.method == "POST" and sent.path == "/v1/messages":
                    parsed = json.loads(body)
                    ids = parsed["ids"] if "ids" in parsed else [parsed["id"]]
                    assert committed(ids, sent.auth), (sent.raw[:300], parsed)

            await asyncio.to_thread(one_request)
            # The properties were put to the test: messages queued, refused, and looked up.
            assert answered["POST 201"] + answered["POST 200"] > 0, answered
            assert answered["POST 400"] > 0 and answered["GET 404"] > 0, answered
            # Still serving, still right.
            view = await asyncio.to_thread(Client(base, *b).get, b_ids[0])
            assert view["message"]["subject"] == SECRET
        output = log_file.read_text()
        assert "Traceback" not in output, tail(log_file)
