"""The OpenAPI schema at /api/schema/ describes every route the router serves, with the key scheme, the
headers (Idempotency-Key, If-Match) and the problem-details errors."""

from __future__ import annotations

import json
import re

import pytest
from rest_framework.test import APIClient

from tests.api.routes import ROUTES, router_routes, served_routes

pytestmark = pytest.mark.django_db

JSON = "application/vnd.oai.openapi+json"


@pytest.fixture(scope="module")
def schema(django_db_setup, django_db_blocker) -> dict:
    with django_db_blocker.unblock():
        response = APIClient().get("/api/schema/", HTTP_ACCEPT=JSON)
    assert response.status_code == 200, response.content[:500]
    return json.loads(response.content)


def _shape(path: str) -> str:
    """A path with its parameters blanked: /api/v1/patients/{id}/status/ -> /api/v1/patients/{}/status/."""
    return re.sub(r"\{[^}]+\}", "{}", path)


def served_operations() -> set[tuple[str, str]]:
    """(path shape, method) of every partner API v1 route, read from the URL configuration itself."""
    return {(shape, method.lower()) for (_, method), shape in served_routes().items()}


def path_of(route) -> str:
    return served_routes()[(route.name, route.method)]


def documented_operations(schema: dict) -> set[tuple[str, str]]:
    return {
        (_shape(path), method)
        for path, item in schema["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }


def operation(schema: dict, path_shape: str, method: str) -> dict:
    for path, item in schema["paths"].items():
        if _shape(path) == path_shape and method in item:
            return item[method]
    raise AssertionError(f"{method.upper()} {path_shape} is not in the schema")


def test_schema_is_served_without_a_key_and_parses():
    response = APIClient().get("/api/schema/", HTTP_ACCEPT=JSON)
    assert response.status_code == 200
    body = json.loads(response.content)
    assert body["openapi"].startswith("3.")
    assert body["info"]["title"]
    # The default rendering is YAML, which parses too.
    import yaml

    yaml_body = yaml.safe_load(APIClient().get("/api/schema/").content)
    assert yaml_body["paths"].keys() == body["paths"].keys()


def test_schema_is_valid_openapi(schema):
    from drf_spectacular.validation import validate_schema

    validate_schema(schema)


def test_schema_generates_without_errors_or_warnings():
    """A view the generator cannot read is left out or described wrongly; it says so as an error."""
    from drf_spectacular.drainage import GENERATOR_STATS, reset_generator_stats
    from drf_spectacular.generators import SchemaGenerator

    reset_generator_stats()
    GENERATOR_STATS.silent = True
    try:
        SchemaGenerator().get_schema(request=None, public=True)
        problems = sorted(GENERATOR_STATS._error_cache) + sorted(GENERATOR_STATS._warn_cache)
    finally:
        GENERATOR_STATS.silent = False
        reset_generator_stats()
    assert problems == []


def test_every_router_route_is_in_the_schema_with_its_method(schema):
    missing = served_operations() - documented_operations(schema)
    assert missing == set(), f"served but not documented: {sorted(missing)}"


def test_the_schema_documents_no_route_the_router_does_not_serve(schema):
    v1 = {(path, method) for path, method in documented_operations(schema) if path.startswith("/api/v1/")}
    extra = v1 - served_operations()
    assert extra == set(), f"documented but not served: {sorted(extra)}"


def test_route_table_of_the_tests_matches_the_schema(schema):
    """The routes the other API tests exercise are the routes partners are told about."""
    assert {(r.name, r.method) for r in ROUTES} == router_routes()


def test_schema_declares_the_api_key_scheme_and_every_operation_requires_it(schema):
    scheme = schema["components"]["securitySchemes"]["ApiKey"]
    assert scheme == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": scheme["description"],
    }
    assert "Api-Key" in scheme["description"]
    for path, method in served_operations():
        security = operation(schema, path, method).get("security", schema.get("security"))
        assert security and {"ApiKey": []} in security, (method, path, security)


def test_every_operation_documents_the_problem_responses(schema):
    for path, method in served_operations():
        responses = operation(schema, path, method)["responses"]
        for status in ("401", "403", "404", "429"):
            assert status in responses, (method, path, status)
            content = responses[status]["content"]
            assert content["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
        if method in ("post", "patch"):
            assert "400" in responses, (method, path)
    problem = schema["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert set(problem["properties"]["errors"]["items"]["required"]) == {"field", "message", "code"}


def _header_parameters(op: dict) -> dict[str, dict]:
    return {p["name"]: p for p in op.get("parameters", []) if p["in"] == "header"}


def test_updates_document_a_required_if_match(schema):
    for route in ROUTES:
        if not route.if_match:
            continue
        path = path_of(route)
        headers = _header_parameters(operation(schema, path, route.method.lower()))
        assert "If-Match" in headers and headers["If-Match"]["required"], (route.id, headers)


def test_posts_document_the_idempotency_key(schema):
    for route in ROUTES:
        if route.method != "POST" or route.if_match:
            continue
        path = path_of(route)
        headers = _header_parameters(operation(schema, path, "post"))
        assert "Idempotency-Key" in headers, route.id
        assert not headers["Idempotency-Key"].get("required", False)


def test_creates_document_201_and_a_request_body(schema):
    for route in ROUTES:
        if route.success != 201:
            continue
        path = path_of(route)
        op = operation(schema, path, "post")
        assert "201" in op["responses"], route.id
        assert "application/json" in op["requestBody"]["content"], route.id


# Links: what a created or recorded object's answer leads to (OpenAPI links; the fuzzer's stateful runs follow
# them). Each names an operation of the schema, and each parameter an expression of the answer.
LINKED = {
    ("post", "/api/v1/patients/", "201"): {
        "v1_patients_retrieve",
        "v1_patients_partial_update",
        "v1_patients_status_create",
    },
    ("post", "/api/v1/transplants/", "201"): {"v1_transplants_retrieve"},
    ("post", "/api/v1/medications/", "201"): {"v1_medications_retrieve", "v1_medications_partial_update"},
    ("post", "/api/v1/adverse-events/", "201"): {
        "v1_adverse_events_retrieve",
        "v1_adverse_events_partial_update",
        "v1_adverse_events_submissions_create",
    },
    ("post", "/api/v1/lots/", "201"): {"v1_lots_retrieve", "v1_lots_partial_update"},
    ("post", "/api/v1/visits/{id}/record/", "200"): {"v1_visits_retrieve", "v1_visits_record"},
    ("post", "/api/v1/visits/record/", "200"): {"v1_visits_retrieve", "v1_visits_record"},
    ("post", "/api/v1/exports/", "202"): {"v1_exports_retrieve"},
}


def test_created_and_recorded_objects_link_to_their_reads_and_updates(schema):
    operations = {
        op["operationId"]: op for path in schema["paths"].values() for op in path.values() if isinstance(op, dict)
    }
    for (method, path, status), targets in LINKED.items():
        links = schema["paths"][path][method]["responses"][status].get("links", {})
        assert {link["operationId"] for link in links.values()} == targets, (path, links)
        for link in links.values():
            target = operations[link["operationId"]]
            names = {f"{p['in']}.{p['name']}" for p in target.get("parameters", []) if p.get("required")}
            given = set(link["parameters"])
            assert names <= given | {"header.Idempotency-Key"}, (link, names)
            for expression in link["parameters"].values():
                assert expression.startswith(("$response.body#/", "$response.header.")), expression
