"""Check raw SES responses against botocore's service models (the `ses` and `sesv2` shapes).

Pure: takes the bytes and headers a server answered and returns a list of problems, one line
each, naming the path inside the response (`SendBulkEmail: BulkEmailEntryResults[0].Status`).
botocore's own parsers are lenient (they drop what they do not know and coerce types), so
passing through a client proves little; these walk the model and the payload side by side:
required members present, every member known to the model, each value of the model's type,
enum values within the model's list. v1 (Query/XML) is read element by element, v2
(REST-JSON) key by key.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.etree import ElementTree

from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape

# Errors AWS documents for every action of the service, whatever the operation's model lists.
# v1: https://docs.aws.amazon.com/ses/latest/APIReference/CommonErrors.html
# v2: https://docs.aws.amazon.com/ses/latest/APIReference-V2/CommonErrors.html
# (both pages list the same AWS-wide errors; the SES Developer Guide's "Amazon SES email
# sending errors", https://docs.aws.amazon.com/ses/latest/dg/troubleshoot-error-messages.html,
# points to them as the errors besides MessageRejected.)
COMMON_ERRORS = frozenset(
    {
        "AccessDeniedException",
        "IncompleteSignature",
        "InternalFailure",
        "InvalidAction",
        "InvalidClientTokenId",
        "InvalidParameterCombination",
        "InvalidParameterValue",
        "InvalidQueryParameter",
        "MalformedQueryString",
        "MissingAction",
        "MissingAuthenticationToken",
        "MissingParameter",
        "NotAuthorized",
        "OptInRequired",
        "RequestExpired",
        "ServiceUnavailable",
        "ThrottlingException",
        "ValidationError",
    }
)
# The code the Query API really puts on "Maximum sending rate exceeded." and "Daily message
# quota exceeded." (not in the ses model): "Throttling", per the SES Developer Guide's
# https://docs.aws.amazon.com/ses/latest/DeveloperGuide/api-error-codes.html and
# https://aws.amazon.com/blogs/messaging-and-targeting/what-happens-when-you-reach-your-sending-limits/
V1_THROTTLING = "Throttling"
V1_ERROR_TYPES = frozenset({"Sender", "Receiver"})  # <Error><Type> in SES's error form


@dataclass(frozen=True, slots=True)
class Exchange:
    """One response as it came off the wire, with the operation that asked for it."""

    operation: OperationModel
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def name(self) -> str:
        return self.operation.name

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def allowed_errors(operation: OperationModel) -> frozenset[str]:
    """The error codes a caller of this operation may see: modeled ones plus the common ones."""
    modeled = {_code(shape) for shape in operation.error_shapes}
    extra = {V1_THROTTLING} if operation.service_model.protocol == "query" else set()
    return frozenset(modeled | extra | COMMON_ERRORS)


def _code(shape: Shape) -> str:
    """An error shape's wire code: its `error.code` (v1, e.g. TemplateDoesNotExist) or name."""
    return str(shape.metadata.get("error", {}).get("code") or shape.name)


def modeled_status(operation: OperationModel, code: str) -> int | None:
    """The HTTP status the model gives an error code of this operation, None if not modeled."""
    for shape in operation.error_shapes:
        if _code(shape) == code:
            status = shape.metadata.get("error", {}).get("httpStatusCode")
            return int(status) if status is not None else None
    return None


def check(exchange: Exchange) -> list[str]:
    """Every way this response departs from the model (an empty list when it conforms)."""
    protocol = exchange.operation.service_model.protocol
    problems = _check_content_type(exchange)
    if not exchange.ok:
        return problems + check_error(exchange)
    if protocol == "query":
        return problems + check_xml(exchange.operation, exchange.body)
    if "x-amzn-requestid" not in {k.lower() for k in exchange.headers}:
        problems.append(f"{exchange.name}: no x-amzn-RequestId header")
    return problems + check_json(exchange.operation, exchange.body)


def _check_content_type(exchange: Exchange) -> list[str]:
    """SES answers the Query API in text/xml and the REST-JSON API in application/json."""
    expected = "text/xml" if exchange.operation.service_model.protocol == "query" else "json"
    headers = {k.lower(): v for k, v in exchange.headers.items()}
    found = headers.get("content-type", "")
    if expected not in found:
        return [f"{exchange.name}: Content-Type {found!r}, expected {expected}"]
    return []


def error_code(exchange: Exchange) -> str:
    """The error code as botocore reads it from the wire (v1: <Code>, v2: x-amzn-ErrorType)."""
    if exchange.operation.service_model.protocol == "query":
        root = ElementTree.fromstring(exchange.body)
        return _text(root.find("./{*}Error/{*}Code"))
    header = {k.lower(): v for k, v in exchange.headers.items()}.get("x-amzn-errortype", "")
    return header.split(":", 1)[0]


def check_error(exchange: Exchange) -> list[str]:
    """An error: in the protocol's form, a code the operation may answer, the modeled status."""
    name = exchange.name
    problems: list[str] = []
    try:
        code = error_code(exchange)
    except ElementTree.ParseError as exc:
        return [f"{name}: error body is not XML ({exc})"]
    if exchange.operation.service_model.protocol == "query":
        problems += _check_v1_error_form(name, exchange.body)
    else:
        problems += _check_v2_error_form(name, exchange)
    if not code:
        return [*problems, f"{name}: error without a code"]
    if code not in allowed_errors(exchange.operation):
        problems.append(
            f"{name}: error code {code} is neither modeled for the operation "
            f"({', '.join(sorted(_code(s) for s in exchange.operation.error_shapes))}"
            ") nor a common error"
        )
    status = modeled_status(exchange.operation, code)
    if status is not None and status != exchange.status:
        problems.append(f"{name}: {code} answered HTTP {exchange.status}, the model says {status}")
    return problems


def _check_v1_error_form(name: str, body: bytes) -> list[str]:
    root = ElementTree.fromstring(body)
    problems = []
    if _local(root.tag) != "ErrorResponse":
        problems.append(f"{name}: error root is <{_local(root.tag)}>, not <ErrorResponse>")
    error = root.find("./{*}Error")
    if error is None:
        return [*problems, f"{name}: error without <Error>"]
    children = [_local(c.tag) for c in error]
    unknown = sorted(set(children) - {"Type", "Code", "Message"})
    if unknown:
        problems.append(f"{name}: unknown element(s) in <Error>: {', '.join(unknown)}")
    if _text(error.find("./{*}Type")) not in V1_ERROR_TYPES:
        problems.append(f"{name}: <Error><Type> is not Sender or Receiver")
    if not _text(root.find("./{*}RequestId")):
        problems.append(f"{name}: error without <RequestId>")
    return problems


def _check_v2_error_form(name: str, exchange: Exchange) -> list[str]:
    problems = []
    headers = {k.lower() for k in exchange.headers}
    if "x-amzn-requestid" not in headers:
        problems.append(f"{name}: error without an x-amzn-RequestId header")
    try:
        body = json.loads(exchange.body or b"{}")
    except ValueError:
        return [*problems, f"{name}: error body is not JSON"]
    if not isinstance(body, dict) or not isinstance(body.get("message", ""), str):
        problems.append(f"{name}: error body is not an object with a string message")
    return problems


# -- v1: Query/XML ----------------------------------------------------------------------------


def check_xml(operation: OperationModel, body: bytes) -> list[str]:
    """`<{Op}Response><{Op}Result>...</{Op}Result><ResponseMetadata>..` against the model."""
    name = operation.name
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        return [f"{name}: body is not XML ({exc})"]
    problems: list[str] = []
    namespace = operation.service_model.metadata.get("xmlNamespace")
    if root.tag != f"{{{namespace}}}{name}Response":
        problems.append(f"{name}: root is {root.tag}, expected {{{namespace}}}{name}Response")
    output = operation.output_shape
    wrapper = output.serialization.get("resultWrapper") if output is not None else None
    allowed = {"ResponseMetadata"} | ({wrapper} if wrapper else set())
    seen = [_local(child.tag) for child in root]
    for child_name in seen:
        if child_name not in allowed:
            problems.append(f"{name}: unknown element <{child_name}> in <{name}Response>")
    for child_name in set(seen):
        if seen.count(child_name) > 1:
            problems.append(f"{name}: <{child_name}> appears {seen.count(child_name)} times")
    if not _text(root.find("./{*}ResponseMetadata/{*}RequestId")):
        problems.append(f"{name}: no <ResponseMetadata><RequestId>")
    if output is not None and wrapper:
        result = root.find(f"./{{*}}{wrapper}")
        if result is None:
            problems.append(f"{name}: no <{wrapper}>")
        else:
            problems += _xml_value(output, result, wrapper, name)
    return problems


def _xml_value(shape: Shape, element: ElementTree.Element, path: str, op: str) -> list[str]:
    if isinstance(shape, StructureShape):
        return _xml_structure(shape, element, path, op)
    if isinstance(shape, ListShape):
        item_name = shape.member.serialization.get("name", "member")
        problems = []
        for i, child in enumerate(element):
            if _local(child.tag) != item_name:
                problems.append(f"{op}: {path}: <{_local(child.tag)}> in a list of <{item_name}>")
            else:
                problems += _xml_value(shape.member, child, f"{path}[{i}]", op)
        return problems
    if isinstance(shape, MapShape):
        key_name = shape.key.serialization.get("name", "key")
        value_name = shape.value.serialization.get("name", "value")
        problems = []
        for i, entry in enumerate(element):
            parts = {_local(c.tag): c for c in entry}
            if _local(entry.tag) != "entry" or set(parts) != {key_name, value_name}:
                problems.append(f"{op}: {path}[{i}]: not <entry><{key_name}><{value_name}>")
                continue
            problems += _scalar(shape.key, _text(parts[key_name]), f"{path}[{i}].key", op)
            problems += _xml_value(shape.value, parts[value_name], f"{path}[{i}].value", op)
        return problems
    if len(element):
        return [f"{op}: {path}: a {shape.type_name} holds elements"]
    return _scalar(shape, _text(element), path, op)


def _xml_structure(
    shape: StructureShape, element: ElementTree.Element, path: str, op: str
) -> list[str]:
    by_wire = {m.serialization.get("name", n): (n, m) for n, m in shape.members.items()}
    problems = []
    present: list[str] = []
    for child in element:
        wire = _local(child.tag)
        found = by_wire.get(wire)
        if found is None:
            problems.append(f"{op}: {path}: unknown element <{wire}> (not in {shape.name})")
            continue
        member_name, member = found
        if member_name in present:
            problems.append(f"{op}: {path}: <{wire}> appears more than once")
        present.append(member_name)
        problems += _xml_value(member, child, f"{path}.{member_name}", op)
    for required in shape.required_members:
        if required not in present:
            problems.append(f"{op}: {path}: required member {required} is missing")
    return problems


def _scalar(shape: Shape, text: str, path: str, op: str) -> list[str]:
    """A text value (XML element, map key) of a scalar shape."""
    kind = shape.type_name
    bad = False
    if kind in ("integer", "long"):
        bad = not _is_int(text)
    elif kind in ("double", "float"):
        bad = not _is_float(text)
    elif kind == "boolean":
        bad = text not in ("true", "false")
    elif kind == "timestamp":
        bad = not _is_iso_timestamp(text)
    elif kind == "blob":
        bad = not _is_base64(text)
    elif kind != "string":
        return [f"{op}: {path}: unexpected shape type {kind}"]
    if bad:
        return [f"{op}: {path}: {text!r} is not a {kind}"]
    return _enum(shape, text, path, op)


# -- v2: REST-JSON ----------------------------------------------------------------------------


def check_json(operation: OperationModel, body: bytes) -> list[str]:
    """The JSON body against the output shape's body members (headers are not in the body)."""
    name = operation.name
    output = operation.output_shape
    try:
        payload = json.loads(body or b"{}")
    except ValueError as exc:
        return [f"{name}: body is not JSON ({exc})"]
    if output is None:
        return [] if payload in ({}, None) else [f"{name}: a body where the model has no output"]
    if not isinstance(output, StructureShape):
        return [f"{name}: output shape {output.name} is not a structure"]
    return _json_structure(output, payload, name, name, body_only=True)


def _json_value(shape: Shape, value: Any, path: str, op: str) -> list[str]:
    kind = shape.type_name
    if isinstance(shape, StructureShape):
        return _json_structure(shape, value, path, op)
    if isinstance(shape, ListShape):
        if not isinstance(value, list):
            return [f"{op}: {path}: {_show(value)} is not a list"]
        return [
            p
            for i, item in enumerate(value)
            for p in _json_value(shape.member, item, f"{path}[{i}]", op)
        ]
    if isinstance(shape, MapShape):
        if not isinstance(value, dict):
            return [f"{op}: {path}: {_show(value)} is not a map"]
        problems = []
        for key, item in value.items():
            problems += _json_value(shape.key, key, f"{path}.<key>", op)
            problems += _json_value(shape.value, item, f"{path}[{key!r}]", op)
        return problems
    ok = {
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "long": isinstance(value, int) and not isinstance(value, bool),
        "double": isinstance(value, int | float) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        # REST-JSON's default timestamp form is epoch seconds (a JSON number).
        "timestamp": _is_json_timestamp(shape, value),
        "blob": isinstance(value, str) and _is_base64(value),
    }.get(kind)
    if ok is None:
        return [f"{op}: {path}: unexpected shape type {kind}"]
    if not ok:
        return [f"{op}: {path}: {_show(value)} is not a {kind}"]
    return _enum(shape, value, path, op) if kind == "string" else []


def _json_structure(
    shape: StructureShape, value: Any, path: str, op: str, *, body_only: bool = False
) -> list[str]:
    if not isinstance(value, dict):
        return [f"{op}: {path}: {_show(value)} is not an object ({shape.name})"]
    members = {
        m.serialization.get("name", n): (n, m)
        for n, m in shape.members.items()
        if not (body_only and m.serialization.get("location"))
    }
    problems = []
    for key, item in value.items():
        found = members.get(key)
        if found is None:
            problems.append(f"{op}: {path}: unknown member {key!r} (not in {shape.name})")
            continue
        member_name, member = found
        if item is None:
            problems.append(f"{op}: {path}.{member_name}: null (leave the member out instead)")
            continue
        problems += _json_value(member, item, f"{path}.{member_name}", op)
    wire_of = {n: w for w, (n, _) in members.items()}
    for required in shape.required_members:
        if required in wire_of and wire_of[required] not in value:
            problems.append(f"{op}: {path}: required member {required} is missing")
    return problems


# -- shared -----------------------------------------------------------------------------------


def _enum(shape: Shape, value: str, path: str, op: str) -> list[str]:
    allowed = shape.metadata.get("enum")
    if allowed and value not in allowed:
        return [f"{op}: {path}: {value!r} is not one of {shape.name}: {', '.join(allowed)}"]
    return []


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _text(element: ElementTree.Element | None) -> str:
    return "" if element is None or element.text is None else element.text


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) < 60 else text[:57] + "..."


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_iso_timestamp(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_json_timestamp(shape: Shape, value: Any) -> bool:
    form = shape.serialization.get("timestampFormat")
    if form == "iso8601":
        return isinstance(value, str) and _is_iso_timestamp(value)
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def report(problems: Iterable[str]) -> str:
    """Problems as one numbered block for an assertion message."""
    return "\n".join(f"{i}. {p}" for i, p in enumerate(problems, 1))
