"""OpenAPI additions: the problem-details error shape and the errors every operation can answer."""

PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string", "nullable": True},
                    "message": {"type": "string"},
                    "code": {"type": "string"},
                },
                "required": ["field", "message", "code"],
            },
        },
    },
    "required": ["type", "title", "status", "detail"],
}

DESCRIPTIONS = {
    "400": "The request is not valid: `errors` names each field and rule.",
    "401": "No key, or an unknown, revoked or expired key.",
    "403": "The key may not do this (read-only, or not a manufacturing site).",
    "404": "Not found, or not your site's.",
    "409": "A request with this Idempotency-Key is still being processed; retry.",
    "412": "If-Match names an older version; GET again.",
    "415": "Send JSON.",
    "422": "This Idempotency-Key was used with a different request.",
    "428": "Send If-Match.",
    "429": "Too many requests; see Retry-After.",
}

BY_METHOD = {
    "get": ["400", "401", "403", "404", "429"],
    "post": ["400", "401", "403", "404", "409", "412", "415", "422", "428", "429"],
    "patch": ["400", "401", "403", "404", "412", "415", "428", "429"],
}


def add_problem_responses(result, generator, request, public):
    """Declare the Problem component and add the error responses each method can give."""
    result.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM
    ref = {"$ref": "#/components/schemas/Problem"}
    for url, path in result.get("paths", {}).items():
        if not url.startswith("/api/v1/"):
            continue
        for method, operation in path.items():
            for status in BY_METHOD.get(method, []):
                operation["responses"].setdefault(
                    status,
                    {"description": DESCRIPTIONS[status], "content": {"application/problem+json": {"schema": ref}}},
                )
    return result
