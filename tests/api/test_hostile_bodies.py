"""Hostile bodies over every write operation of the API (the routes of `tests/api/routes.py`): nesting too
deep, too large, NUL characters and lone surrogates in every string, numbers past any range (1e400, 10**400,
NaN), every field given the wrong type, duplicated keys, bodies of the wrong shape or content type.

The bar is no 5xx, and every refusal an RFC 9457 problem. The count of cases run is printed at the end."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.api.conftest import client_for
from tests.api.routes import ROUTES, Route

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

WRITES = [route for route in ROUTES if route.is_write and route.payload is not None]

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


def key_for(world, route: Route) -> str:
    return world.keys["a_lots"] if route.lots else world.keys["a_rw"]


def test_no_hostile_body_gets_a_server_error(world, capsys, monkeypatch):
    from registry.api.base import ApiKeyThrottle

    monkeypatch.setattr(ApiKeyThrottle, "allow_request", lambda self, request, view: True)  # thousands a minute
    failures: list[str] = []
    statuses: Counter = Counter()
    cases = 0
    for route in WRITES:
        client = client_for(key_for(world, route))
        url = route.url(world, "a")
        payload = route.payload(world, "a")
        for case, body, content_type in hostile_bodies(payload):
            headers = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in route.headers(world, "a").items()}
            response = getattr(client, route.method.lower())(url, body, content_type=content_type, **headers)
            cases += 1
            statuses[response.status_code] += 1
            problem = response["Content-Type"].startswith("application/problem+json")
            if response.status_code >= 500 or (response.status_code >= 400 and not problem):
                failures.append(f"{route.id} [{case}]: {response.status_code} {response.content[:200]!r}")
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    with capsys.disabled():
        print(
            f"\nhostile bodies: {cases} cases over {len(WRITES)} write operations; {server_errors} 5xx; "
            f"statuses {dict(sorted(statuses.items()))}"
        )
    assert not failures, "\n".join(failures[:50])
    assert server_errors == 0
    assert cases > 1_000
