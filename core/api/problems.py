"""Errors as RFC 9457 problem details: one shape for every API error, field errors as {field, message, code}."""

from __future__ import annotations

import re

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError
from django.http import Http404, JsonResponse
from django.views import defaults
from django.views.csrf import csrf_failure as django_csrf_failure
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.api.parsers import too_large_message

PROBLEM_BASE = "https://msct-registry.example.org/problems/"


class PreconditionError(DjangoValidationError):
    """A change that names no version, or a stale one, of what it changes: 428 or 412 (`status`) with the
    fields at fault. A ValidationError, so a door other than the API shows it as one.


    `header`: the version was the request's If-Match on the object it names, so the answer is the one every
    If-Match check gives (`precondition_problem`), without field errors.
    """

    def __init__(self, errors: dict[str, list[str]], *, status: int, etag: str | None = None, header: bool = False):
        super().__init__(errors)
        self.status, self.etag, self.header = status, etag, header


class RecordLocked(DjangoValidationError):
    """A write to a locked record (a data manager's lock, or an investigator's signature): the API answers
    423 Locked naming the record; any other door shows it as a validation error."""


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


def precondition_problem(status_code: int, etag: str | None = None) -> Response:
    """The answer to an If-Match that is missing (428) or names no current version (412, with the current
    ETag)."""
    if status_code == 428:
        return problem(
            428, "Send If-Match with the ETag of the version you are changing.", kind="precondition-required"
        )
    return problem(
        412,
        "The object changed since you read it.",
        "GET it again and re-apply your change. If-Match compares strongly: send the ETag exactly as given, "
        "without W/.",
        kind="precondition-failed",
        headers={"ETag": etag} if etag else None,
    )


def _problem_response(status_code: int, title: str, detail: str, *, kind: str) -> JsonResponse:
    body = problem_body(status_code, title, detail, kind=kind)
    return JsonResponse(body, status=status_code, content_type="application/problem+json")


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


@csrf_exempt
def not_found(request, exception=None):
    """The project's 404 for paths under /api/: problem details, like every other API error."""
    detail = f"No API endpoint at {request.path}. The endpoints are listed at /api/schema/."
    return _problem_response(404, "Not found.", detail, kind="not-found")


# Errors Django answers itself (`handler400`...`handler500` of the root URLconf, CSRF_FAILURE_VIEW): under
# /api/ they are problems too, elsewhere Django's own pages.


def page_not_found(request, exception=None):
    if _is_api(request):
        return not_found(request, exception)
    return defaults.page_not_found(request, exception)


def bad_request(request, exception=None):
    if _is_api(request):
        if isinstance(exception, RequestDataTooBig):
            return _problem_response(413, "The request body is too large.", too_large_message(), kind="too-large")
        return _problem_response(400, "Bad request.", "The request could not be understood.", kind="bad-request")
    return defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    if _is_api(request):
        return _problem_response(403, "Not allowed.", str(exception or "") or "Not allowed.", kind="forbidden")
    return defaults.permission_denied(request, exception)


def server_error(request):
    if _is_api(request):
        return _problem_response(
            500, "Server error.", "The request failed on the server; nothing of it was kept.", kind="server-error"
        )
    return defaults.server_error(request)


def csrf_failure(request, reason=""):
    if _is_api(request):
        detail = "A request with a session cookie needs a CSRF token; a partner sends its API key instead."
        return _problem_response(403, "CSRF check failed.", detail, kind="forbidden")
    return django_csrf_failure(request, reason)


_UNIQUE_PG = re.compile(r"Key \(([^)]*)\)=")
_UNIQUE_SQLITE = re.compile(r"UNIQUE constraint failed: (.+)")


def unique_violation_field(exc: IntegrityError) -> str | None:
    """The field a unique constraint refused, when `exc` is a unique violation (None otherwise): of the
    constraint's columns the last that is not a reference to another row (`subject_code` of (study,
    subject_code)). The value is never read: it may be another site's."""
    cause = exc.__cause__
    if getattr(cause, "sqlstate", None) == "23505" or getattr(cause, "pgcode", None) == "23505":
        detail = getattr(getattr(cause, "diag", None), "message_detail", "") or ""
        found = _UNIQUE_PG.search(detail)
        columns = [c.strip().strip('"') for c in found.group(1).split(",")] if found else []
    else:
        found = _UNIQUE_SQLITE.search(str(exc))
        if found is None:
            return None
        columns = [c.strip().rsplit(".", 1)[-1] for c in found.group(1).split(",")]
    if not columns:
        return "non_field_errors"
    own = [c for c in columns if not c.endswith("_id")] or columns
    return own[-1].removesuffix("_id")


def exception_handler(exc, context):
    """Every error as application/problem+json, with field errors as a list of {field, message, code}.

    A unique violation (two requests that create the same thing at once: the checks of both passed, the
    database kept one) is a 409 naming the field, in words that do not say who holds the value."""
    if isinstance(exc, IntegrityError):
        field = unique_violation_field(exc)
        if field is None:
            return None
        message = (
            f"This {field} is not available: choose another. If you sent the same request twice at once, "
            "GET the list to see the one that was stored."
        )
        return problem(
            409,
            "Conflict with a record being stored.",
            message,
            kind="conflict",
            errors=[{"field": field, "message": message, "code": "unique"}],
        )
    if isinstance(exc, DataError):
        # A value the fields let through but the column refuses (a NUL character, a number beyond its range):
        # the request's fault, said without echoing the value.
        detail = "A value of the request cannot be stored (a NUL character, or a number or text out of range)."
        return problem(400, "The request is not valid.", detail, kind="validation")
    if isinstance(exc, PreconditionError) and exc.header:
        return precondition_problem(exc.status, exc.etag)
    if isinstance(exc, PreconditionError):
        errors = _field_errors(exc.message_dict)
        required = exc.status == 428
        return problem(
            exc.status,
            "Say which version you are changing." if required else "The object changed since you read it.",
            "; ".join(f"{e['field']}: {e['message']}" for e in errors),
            kind="precondition-required" if required else "precondition-failed",
            errors=errors,
            headers={"ETag": exc.etag} if exc.etag else None,
        )
    if isinstance(exc, RecordLocked):
        return _locked_problem(exc)
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
        413: "too-large",
        415: "unsupported-media-type",
        429: "throttled",
    }.get(response.status_code, "error")
    title = {
        401: "Authentication needed.",
        403: "Not allowed.",
        404: "Not found.",
        413: "The request body is too large.",
        429: "Too many requests.",
    }.get(response.status_code, detail)
    return problem(response.status_code, title, detail, kind=kind, headers=_retry_headers(response))


def _locked_problem(exc: RecordLocked) -> Response:
    """423 Locked, naming each locked record (a batch: its items) and why."""
    errors = _field_errors(exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages})
    detail = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors)
    return problem(423, "The record is locked.", detail, kind="locked", errors=errors)


def _retry_headers(response) -> dict:
    return {name: response[name] for name in ("Retry-After", "WWW-Authenticate", "Allow") if name in response}
