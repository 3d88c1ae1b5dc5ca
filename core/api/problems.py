"""Errors as RFC 9457 problem details: one shape for every API error, field errors as {field, message, code}."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

PROBLEM_BASE = "https://msct-registry.example.org/problems/"


def _field_errors(detail, prefix: str = "") -> list[dict]:
    errors = []
    if isinstance(detail, dict):
        for field, value in detail.items():
            name = "" if field in ("non_field_errors", "__all__") else str(field)
            errors += _field_errors(value, f"{prefix}.{name}" if prefix and name else (name or prefix))
    elif isinstance(detail, list):
        for item in detail:
            if isinstance(item, dict | list):
                errors += _field_errors(item, prefix)
            else:
                errors.append({"field": prefix or None, "message": str(item), "code": getattr(item, "code", "invalid")})
    else:
        errors.append({"field": prefix or None, "message": str(detail), "code": getattr(detail, "code", "invalid")})
    return errors


def problem_body(status_code: int, title: str, detail: str = "", *, kind: str, errors=None) -> dict:
    body = {"type": PROBLEM_BASE + kind, "title": title, "status": status_code, "detail": detail or title}
    if errors:
        body["errors"] = errors
    return body


def problem(status_code: int, title: str, detail: str = "", *, kind: str, errors=None, headers=None) -> Response:
    body = problem_body(status_code, title, detail, kind=kind, errors=errors)
    return Response(body, status=status_code, headers=headers, content_type="application/problem+json")


@csrf_exempt
def not_found(request, exception=None):
    """The project's 404 for paths under /api/: problem details, like every other API error."""
    detail = f"No API endpoint at {request.path}. The endpoints are listed at /api/schema/."
    body = problem_body(404, "Not found.", detail, kind="not-found")
    return JsonResponse(body, status=404, content_type="application/problem+json")


def exception_handler(exc, context):
    """Every error as application/problem+json, with field errors as a list of {field, message, code}."""
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = _field_errors(exc.detail)
        detail = "; ".join(
            e["message"]
            if not e["field"] or e["message"].startswith(f"{e['field']}:")
            else f"{e['field']}: {e['message']}"
            for e in errors
        )
        return problem(
            400, "The request is not valid.", detail, kind="validation", errors=errors, headers=_retry_headers(response)
        )
    detail = exc.detail if isinstance(getattr(exc, "detail", None), str) else str(getattr(exc, "detail", exc))
    kind = {
        401: "unauthenticated",
        403: "forbidden",
        404: "not-found",
        405: "method-not-allowed",
        406: "not-acceptable",
        415: "unsupported-media-type",
        429: "throttled",
    }.get(response.status_code, "error")
    title = {401: "Authentication needed.", 403: "Not allowed.", 404: "Not found.", 429: "Too many requests."}.get(
        response.status_code, detail
    )
    return problem(response.status_code, title, detail, kind=kind, headers=_retry_headers(response))


def _retry_headers(response) -> dict:
    return {name: response[name] for name in ("Retry-After", "WWW-Authenticate", "Allow") if name in response}
