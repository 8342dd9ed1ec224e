"""The HTTP API's OpenAPI 3.1 document, served at /v1/openapi.json (pure data).

The message schema is built from `wire.FIELDS` (a field without a schema here fails at import
time in the tests), and each operation's status codes are the ones its handler can answer;
tests/integration/test_http_api.py checks both against the running handlers.
"""

from __future__ import annotations

from typing import Any

from dispatcher.domain.validate import MAX_RECIPIENTS
from dispatcher.domain.wire import FIELDS
from dispatcher.doors.api_body import max_given_key
from dispatcher.doors.keys import ID_CHARS, ID_PREFIX

__all__ = ["MESSAGE_REQUIRED", "STATUSES", "document", "message_schema"]

_ADDRESSES: dict[str, Any] = {
    "oneOf": [
        {"type": "string", "description": "one address"},
        {"type": "array", "items": {"type": "string"}, "maxItems": MAX_RECIPIENTS},
    ],
}
# What is left of an idempotency key once the server scopes it to the API key.
_GIVEN_KEY_MAX = max_given_key("K" * (len(ID_PREFIX) + ID_CHARS))

_FIELD_SCHEMAS: dict[str, dict[str, Any]] = {
    "from": {
        "type": "string",
        "description": "the sender, with or without a display name: 'Shop <news@shop.example>'",
    },
    "to": {**_ADDRESSES, "description": "recipients (To, Cc and Bcc: 50 at most in all)"},
    "cc": _ADDRESSES,
    "bcc": _ADDRESSES,
    "reply_to": _ADDRESSES,
    "subject": {"type": "string", "minLength": 1, "description": "one line"},
    "text": {"type": "string", "description": "the plain-text body (text, html or both)"},
    "html": {"type": "string", "description": "the HTML body"},
    "configuration_set": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
    "tags": {
        "type": "object",
        "additionalProperties": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,255}$"},
        "description": "SES message tags (the name dispatcher_id is reserved)",
    },
    "idempotency_key": {
        "type": "string",
        "minLength": 1,
        "maxLength": _GIVEN_KEY_MAX,
        "description": "the same key again (with this API key) answers the first message",
    },
    "priority": {
        "type": "integer",
        "minimum": -32768,
        "maximum": 32767,
        "default": 0,
        "description": "higher is sent first; a key may cap it",
    },
    "send_after": {
        "type": "string",
        "format": "date-time",
        "description": "not sent before this time (ISO 8601 with a timezone)",
    },
    "attachments": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["filename", "content_base64"],
            "properties": {
                "filename": {"type": "string"},
                "content_type": {"type": "string"},
                "content_base64": {"type": "string", "contentEncoding": "base64"},
            },
        },
    },
}
MESSAGE_REQUIRED = ("from", "subject")

_STATUS_TEXT = {
    200: "the idempotency key had already queued this message: its id",
    201: "queued and committed",
    400: "bad JSON or a bad field (`field` names it; `index` the message in a batch)",
    401: "no key, an unknown or revoked key, or a wrong secret",
    403: "the key may not use this sender or priority (`field`: from or priority)",
    404: "no such message queued with this key",
    409: "the idempotency key already queued another message",
    413: "the body is over api.max_body_bytes",
    503: "the queue's database is unreachable: nothing was queued, retry after Retry-After",
}

STATUSES: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/v1/messages"): (200, 201, 400, 401, 403, 409, 413, 503),
    ("get", "/v1/messages/{id}"): (200, 401, 404, 503),
    ("get", "/v1/openapi.json"): (200,),
}


def message_schema() -> dict[str, Any]:
    """One message: the JSON of a line of `dispatcher enqueue`."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(MESSAGE_REQUIRED),
        "properties": {name: _FIELD_SCHEMAS[name] for name in FIELDS},
        "description": "at least one recipient (to, cc or bcc) and a body (text and/or html)",
    }


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if headers:
        out["headers"] = headers
    return out


def _json(description: str, *schemas: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out = _error(description, headers)
    refs = [{"$ref": f"#/components/schemas/{s}"} for s in schemas]
    out["content"]["application/json"]["schema"] = refs[0] if len(refs) == 1 else {"oneOf": refs}
    return out


def _responses(method: str, path: str, ok: dict[int, dict[str, Any]]) -> dict[str, Any]:
    retry = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    out: dict[str, Any] = {}
    for status in STATUSES[(method, path)]:
        if status in ok:
            out[str(status)] = ok[status]
        else:
            out[str(status)] = _error(_STATUS_TEXT[status], retry if status == 503 else None)
    return out


def _schemas() -> dict[str, Any]:
    nullable_time = {"type": ["string", "null"], "format": "date-time"}
    nullable_text = {"type": ["string", "null"]}
    return {
        "Message": message_schema(),
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string", "description": "what is wrong and what to do"},
                "field": {"type": "string", "description": "the message field at fault"},
                "index": {"type": "integer", "description": "the message's place in a batch"},
            },
        },
        "Queued": {
            "type": "object",
            "required": ["id", "created"],
            "properties": {
                "id": {"type": "integer"},
                "created": {"type": "boolean", "description": "false: an idempotent retry"},
            },
        },
        "QueuedBatch": {
            "type": "object",
            "required": ["ids", "created"],
            "properties": {
                "ids": {"type": "array", "items": {"type": "integer"}},
                "created": {"type": "array", "items": {"type": "boolean"}},
            },
        },
        "MessageStatus": {
            "type": "object",
            "required": ["message", "events"],
            "properties": {
                "message": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "state": {
                            "type": "string",
                            "description": "held, queued, claimed, in_flight, sent, failed, "
                            "unknown (in doubt) or cancelled",
                        },
                        "from": {"type": "string"},
                        "to": {"type": "array", "items": {"type": "string"}},
                        "cc": {"type": "array", "items": {"type": "string"}},
                        "bcc": {"type": "array", "items": {"type": "string"}},
                        "subject": {"type": "string"},
                        "created_at": {"type": "string", "format": "date-time"},
                        "attempts": {"type": "integer"},
                        "run_at": {"type": "string", "format": "date-time"},
                        "sent_at": nullable_time,
                        "ses_message_id": nullable_text,
                        "last_outcome": nullable_text,
                        "last_error": nullable_text,
                        "idempotency_key": nullable_text,
                    },
                },
                "events": {
                    "type": "array",
                    "description": "SES events: delivery, bounce, complaint, delay, ...",
                    "items": {"type": "object", "properties": {"at": {"type": "string"}}},
                },
            },
        },
    }


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    post = "/v1/messages"
    get = "/v1/messages/{id}"
    spec = "/v1/openapi.json"
    created_headers = {
        "Location": {"schema": {"type": "string"}, "description": "the message's URL"}
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dispatcher HTTP API",
            "version": "1",
            "description": "Queue mail for Amazon SES: answered only after the commit.",
        },
        "security": [{"basic": []}],
        "paths": {
            post: {
                "post": {
                    "operationId": "queueMessages",
                    "summary": "Queue one message, or a batch in one transaction (all or none)",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "minLength": 1},
                            "description": "one message: its key; a batch: message i without "
                            "its own key gets KEY:i",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Message"},
                                        {
                                            "type": "array",
                                            "minItems": 1,
                                            "items": {"$ref": "#/components/schemas/Message"},
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    "responses": _responses(
                        "post",
                        post,
                        {
                            200: _json(
                                "already queued with this idempotency key (a batch: none new)",
                                "Queued",
                                "QueuedBatch",
                            ),
                            201: _json(
                                "queued and committed (a batch: at least one new message)",
                                "Queued",
                                "QueuedBatch",
                                headers=created_headers,
                            ),
                        },
                    ),
                }
            },
            get: {
                "get": {
                    "operationId": "getMessage",
                    "summary": "A message queued with this key: state, attempts, SES events",
                    "parameters": [
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer", "minimum": 1},
                        }
                    ],
                    "responses": _responses(
                        "get", get, {200: _json("the message", "MessageStatus")}
                    ),
                }
            },
            spec: {
                "get": {
                    "operationId": "getOpenApi",
                    "summary": "This document",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "the OpenAPI document",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "the key id as user name, its secret as password",
                }
            },
            "schemas": _schemas(),
        },
    }
