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


# What the answer to a create or a recording leads to (OpenAPI links): reading the object, changing it with the
# ETag just received, acting on it. Clients and the fuzzer's stateful runs follow them.
# (method, path, status) -> {link name: (operationId, {parameter: expression})}
_BY_ID = {"path.id": "$response.body#/id"}
_CHANGE = {**_BY_ID, "header.If-Match": "$response.header.ETag"}
_LOT = {"path.lot_number": "$response.body#/lot_number"}
LINKS = {
    ("post", "/api/v1/patients/", "201"): {
        "GetPatient": ("v1_patients_retrieve", _BY_ID),
        "UpdatePatient": ("v1_patients_partial_update", _CHANGE),
        "ChangePatientStatus": ("v1_patients_status_create", _CHANGE),
    },
    ("post", "/api/v1/transplants/", "201"): {"GetTransplant": ("v1_transplants_retrieve", _BY_ID)},
    ("post", "/api/v1/medications/", "201"): {
        "GetMedication": ("v1_medications_retrieve", _BY_ID),
        "UpdateMedication": ("v1_medications_partial_update", _CHANGE),
    },
    ("post", "/api/v1/adverse-events/", "201"): {
        "GetAdverseEvent": ("v1_adverse_events_retrieve", _BY_ID),
        "UpdateAdverseEvent": ("v1_adverse_events_partial_update", _CHANGE),
        "RecordSubmission": ("v1_adverse_events_submissions_create", _BY_ID),
    },
    ("post", "/api/v1/lots/", "201"): {
        "GetLot": ("v1_lots_retrieve", _LOT),
        "UpdateLot": ("v1_lots_partial_update", {**_LOT, "header.If-Match": "$response.header.ETag"}),
    },
    ("post", "/api/v1/visits/{id}/record/", "200"): {
        "GetVisit": ("v1_visits_retrieve", _BY_ID),
        "CorrectVisit": ("v1_visits_record", _CHANGE),
    },
    ("post", "/api/v1/visits/record/", "200"): {
        "GetVisit": ("v1_visits_retrieve", _BY_ID),
        "CorrectVisit": ("v1_visits_record", _CHANGE),
    },
    ("post", "/api/v1/exports/", "202"): {"GetExport": ("v1_exports_retrieve", _BY_ID)},
}


def add_links(result, generator, request, public):
    """Add `LINKS` to the answers they start from (an operation not served is left out)."""
    paths = result.get("paths", {})
    for (method, path, status), links in LINKS.items():
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is None:
            continue
        response["links"] = {
            name: {"operationId": operation_id, "parameters": dict(parameters)}
            for name, (operation_id, parameters) in links.items()
        }
    return result
