"""A small synchronous client for the dispatcher's HTTP API (standard library only).

    from dispatcher.client import Client
    api = Client("http://127.0.0.1:8026", "DK...", "secret")
    message_id = api.send(from_="Shop <news@shop.example>", to="jo@example.com",
                          subject="Hello", text="Hi Jo")
    api.get(message_id)["message"]["state"]

Every send carries an idempotency key (a new UUID unless you give one), so a 503 or a lost
connection is retried a bounded number of times without ever queueing a message twice. A
refusal raises ClientError (status, error, field); an API still out of reach after the retries
raises the OSError urllib gave (urllib.error.URLError, TimeoutError).
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Client", "ClientError"]

MAX_WAIT = 30.0  # seconds: the longest Retry-After honoured between two tries


class ClientError(Exception):
    """The API refused the request: HTTP status, its error text, the field at fault (or None)."""

    def __init__(self, status: int, error: str, field: str | None = None) -> None:
        super().__init__(f"{status}: {error}" + (f" (field {field})" if field else ""))
        self.status = status
        self.error = error
        self.field = field


def _fields(given: Mapping[str, Any]) -> dict[str, Any]:
    """Python names to the API's: `from_` (a keyword in Python) is `from`."""
    return {name.removesuffix("_"): value for name, value in given.items()}


class Client:
    """The HTTP API at `base_url`, as the key `key_id` with its `secret`."""

    def __init__(
        self,
        base_url: str,
        key_id: str,
        secret: str,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 1.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        token = base64.b64encode(f"{key_id}:{secret}".encode()).decode("ascii")
        self._auth = f"Basic {token}"

    def send(self, *, idempotency_key: str | None = None, **fields: Any) -> int:
        """Queue one message (fields as in the API; `from_` for `from`); its id once committed."""
        key = idempotency_key or str(uuid.uuid4())
        answer = self._request("POST", "/v1/messages", _fields(fields), key)
        return int(answer["id"])

    def send_batch(
        self, messages: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> list[int]:
        """Queue messages in one transaction (all or none); their ids, in order."""
        key = idempotency_key or str(uuid.uuid4())
        answer = self._request("POST", "/v1/messages", [_fields(m) for m in messages], key)
        return [int(i) for i in answer["ids"]]

    def get(self, message_id: int) -> dict[str, Any]:
        """A message queued with this key: {"message": {state, attempts, ...}, "events": [...]}."""
        return self._request("GET", f"/v1/messages/{int(message_id)}", None, None)

    def _request(
        self, method: str, path: str, body: object, idempotency_key: str | None
    ) -> dict[str, Any]:
        headers = {"Authorization": self._auth, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            request = urllib.request.Request(
                self.base_url + path, data=data, headers=headers, method=method
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    answer: dict[str, Any] = json.loads(response.read())
                    return answer
            except urllib.error.HTTPError as exc:
                with exc:
                    error, field = _error_of(exc.read(), exc.reason)
                    if exc.code != 503 or last:
                        raise ClientError(exc.code, error, field) from None
                    wait = _retry_after(exc.headers.get("Retry-After"), self.backoff)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                # Safe to send again: a POST carries an idempotency key.
                if last:
                    raise
                wait = self.backoff * 2**attempt
            time.sleep(min(wait, MAX_WAIT))
        raise AssertionError("unreachable")  # the last attempt returns or raises


def _error_of(body: bytes, reason: object) -> tuple[str, str | None]:
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        field = parsed.get("field")
        return parsed["error"], field if isinstance(field, str) else None
    return str(reason), None


def _retry_after(value: str | None, default: float) -> float:
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default
