"""Hostile bodies over every write operation of the API: nesting too deep, too large, NUL characters and lone
surrogates in every string, numbers past any range (1e400, 10**400, NaN), every field given the wrong type,
duplicated keys, bodies of the wrong shape or content type.

The write operations are those of the OpenAPI schema, so a new one is covered as soon as it is served. Each
is sent with the valid payload of its row in `tests/api/routes.py`; an operation without one gets a payload made
from its request body's schema (`schema_payload`), and its path parameters named from the world.

The bar is no 5xx, and every refusal an RFC 9457 problem. The count of cases run is printed at the end."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass

import pytest

from core.api.etags import etag_of
from tests.api.conftest import client_for
from tests.api.routes import ROUTES, Route

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

DEEP = "[" * 50_000 + "]" * 50_000
HUGE_INT = "1" + "0" * 400
WRONG_TYPES = ["[]", "{}", "true", "null", "0", "-1", '""', '"x"', "1e400", "-1e400", HUGE_INT, "NaN", "Infinity"]


def _dump(payload) -> str:
    return json.dumps(payload, ensure_ascii=True)


def _with(payload: dict, path: tuple, raw: str) -> str:
    """The payload as JSON text with the value at `path` replaced by the JSON text `raw`."""
    marker = "__HOSTILE_VALUE__"
    target = payload = json.loads(json.dumps(payload))
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = marker
    return _dump(payload).replace(f'"{marker}"', raw)


def _paths(value, prefix=()):
    """Every path to a value of a payload (dict keys and list indexes), containers included."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from _paths(item, (*prefix, index))


def hostile_bodies(payload: dict):
    """(case name, body text, content type) of every hostile variant of a valid payload."""
    as_text = _dump(payload)
    yield "deep list", DEEP, "application/json"
    yield "deep object", '{"a":' * 50_000 + "1" + "}" * 50_000, "application/json"
    yield "deep inside", as_text[:-1] + ', "x": ' + DEEP + "}", "application/json"
    yield "too large", as_text[:-1] + ', "x": "' + "y" * 2_700_000 + '"}', "application/json"
    yield "empty", "", "application/json"
    for raw in ("null", "[]", '"text"', "1e400", HUGE_INT, "[" + as_text + "]"):
        yield f"top level {raw[:10]}", raw, "application/json"
    yield "not json", as_text[:-3], "application/json"
    yield "text/plain", as_text, "text/plain"
    yield "form", "a=1&b=2", "application/x-www-form-urlencoded"
    yield "utf-16", as_text.encode("utf-16"), "application/json; charset=utf-16"
    yield "unknown charset", as_text, "application/json; charset=klingon"
    first = next(iter(payload), None)
    if first is not None:
        yield "duplicated key", as_text[:-1] + f", {json.dumps(first)}: null}}", "application/json"
    yield "NUL key", as_text[:-1] + ', "\\u0000": 1}', "application/json"
    for path in _paths(payload):
        name = ".".join(map(str, path))
        for raw in WRONG_TYPES:
            yield f"{name}={raw[:12]}", _with(payload, path, raw), "application/json"
        yield f"{name} NUL", _with(payload, path, '"A\\u0000B"'), "application/json"
        yield f"{name} surrogate", _with(payload, path, '"A\\ud800B"'), "application/json"
        yield f"{name} long", _with(payload, path, json.dumps("Z" * 100_000)), "application/json"
        yield f"{name} 10**400", _with(payload, path, HUGE_INT), "application/json"
        yield f"{name} deep", _with(payload, path, "[" * 40 + "]" * 40), "application/json"


# The write operations, from the schema ---------------------------------------------------------------------


def api_schema() -> dict:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    for combined in ("allOf", "oneOf", "anyOf"):
        if combined in node:
            return _resolve(schema, node[combined][0])
    return node


def schema_payload(schema: dict, node: dict):
    """A value of the shape `node` describes (an object with every property), for operations no row of
    `tests/api/routes.py` gives a payload to: enough for the hostile variants to reach every field."""
    node = _resolve(schema, node)
    if "enum" in node:
        return next((value for value in node["enum"] if value not in (None, "")), None)
    kind = node.get("type", "object")
    if kind == "object":
        properties = node.get("properties", {})
        if not properties and isinstance(node.get("additionalProperties"), dict):
            return {"X": schema_payload(schema, node["additionalProperties"])}
        return {name: schema_payload(schema, prop) for name, prop in properties.items() if not prop.get("readOnly")}
    if kind == "array":
        return [schema_payload(schema, node.get("items", {}))]
    if kind == "string":
        return {"date": "2025-06-01", "date-time": "2025-06-01T10:00:00+00:00"}.get(node.get("format"), "text")
    return {"integer": 1, "number": 1.5, "boolean": True}.get(kind)


@dataclass
class WriteOperation:
    method: str
    path: str  # as the schema writes it: /api/v1/lots/{lot_number}/
    request_body: dict | None
    if_match: bool
    route: Route | None  # the row of tests/api/routes.py, when there is one

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def matches(self, url: str) -> bool:
        return re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(self.path)), url) is not None


def write_operations(world) -> list[WriteOperation]:
    """Every write operation of the schema, each with its row of `tests/api/routes.py` if it has one."""
    schema = api_schema()
    operations = []
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            if method not in ("post", "put", "patch", "delete"):
                continue
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if_match = any(p["in"] == "header" and p["name"] == "If-Match" for p in operation.get("parameters", []))
            op = WriteOperation(method.upper(), path, body and schema_payload(schema, body), if_match, None)
            op.route = next(
                (
                    r
                    for r in ROUTES
                    if r.method == op.method and r.payload is not None and op.matches(r.url(world, "a"))
                ),
                None,
            )
            operations.append(op)
    return operations


def _object_of(world, resource: str):
    side = world.a
    return {
        "patients": side.patient,
        "transplants": side.transplant,
        "medications": side.medication,
        "adverse-events": side.adverse_event,
        "visits": side.visit("M3"),
        "lots": side.lot,
        "exports": side.export,
    }.get(resource)


def request_of(world, op: WriteOperation) -> tuple[str, str, dict, dict]:
    """(key, URL, payload, headers) of a valid-looking request to `op`."""
    if op.route is not None:
        route = op.route
        key = world.keys["a_lots"] if route.lots else world.keys["a_rw"]
        return key, route.url(world, "a"), route.payload(world, "a"), route.headers(world, "a")
    target = _object_of(world, op.path.split("/")[3])

    def fill(match):
        name = match.group(1)
        return str(getattr(target, name, None) or getattr(target, "pk", 1)) if target is not None else "1"

    url = re.sub(r"\{([^}]+)\}", fill, op.path)
    headers = {"If-Match": etag_of(target) if target is not None else "*"} if op.if_match else {}
    return world.keys["a_lots"], url, op.request_body or {}, headers


def test_every_write_operation_of_the_schema_is_found(world):
    operations = write_operations(world)
    labels = {op.label for op in operations}
    assert len(operations) >= 16, labels
    assert {"POST /api/v1/patients/", "PATCH /api/v1/lots/{lot_number}/", "POST /api/v1/visits/{id}/record/"} <= labels
    # Every write row of the routes table is an operation of the schema.
    rows = {op.route.id for op in operations if op.route is not None}
    assert rows == {route.id for route in ROUTES if route.is_write}


def test_an_operation_without_a_row_gets_a_payload_from_its_schema(world):
    """What a new operation would be sent: every property of its body, of the type the schema says."""
    schema = api_schema()
    for op in write_operations(world):
        if op.request_body is None:
            continue
        op.route = None
        key, url, payload, headers = request_of(world, op)
        assert url.startswith("/api/v1/") and "{" not in url, url
        body = _resolve(
            schema, schema["paths"][op.path][op.method.lower()]["requestBody"]["content"]["application/json"]["schema"]
        )
        writable = {name for name, prop in body.get("properties", {}).items() if not prop.get("readOnly")}
        assert set(payload) == writable, op.label
        assert ("If-Match" in headers) == op.if_match


def test_no_hostile_body_gets_a_server_error(world, capsys, monkeypatch):
    from registry.api.base import ApiKeyThrottle

    monkeypatch.setattr(ApiKeyThrottle, "allow_request", lambda self, request, view: True)  # thousands a minute
    failures: list[str] = []
    statuses: Counter = Counter()
    cases = 0
    operations = write_operations(world)
    for op in operations:
        key, url, payload, _ = request_of(world, op)
        client = client_for(key)
        for case, body, content_type in hostile_bodies(payload):
            _, _, _, fresh = request_of(world, op)  # the current ETag, as a writer would send it
            headers = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in fresh.items()}
            response = getattr(client, op.method.lower())(url, body, content_type=content_type, **headers)
            cases += 1
            statuses[response.status_code] += 1
            problem = response["Content-Type"].startswith("application/problem+json")
            if response.status_code >= 500 or (response.status_code >= 400 and not problem):
                failures.append(f"{op.label} [{case}]: {response.status_code} {response.content[:200]!r}")
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    by_row = sum(op.route is not None for op in operations)
    with capsys.disabled():
        print(
            f"\nhostile bodies: {cases} cases over {len(operations)} write operations of the schema "
            f"({by_row} with a payload of tests/api/routes.py, {len(operations) - by_row} from the schema); "
            f"{server_errors} 5xx; statuses {dict(sorted(statuses.items()))}"
        )
    assert not failures, "\n".join(failures[:50])
    assert server_errors == 0
    assert cases > 1_000
