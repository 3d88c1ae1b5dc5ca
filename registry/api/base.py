"""What every partner endpoint shares: key authentication, scoping to the key's site, the audit door,
problem-details errors, idempotent POSTs, ETag/If-Match on updates, and per-key throttling."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from contextlib import nullcontext

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.http import Http404, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, status
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.viewsets import GenericViewSet

from registry.api.auth import ApiKeyAuthentication, PartnerPermission
from registry.audit import Door, audit_context
from registry.models import ApiKey, IdempotencyRecord

PROBLEM_BASE = "https://msct-registry.example.org/problems/"
IDEMPOTENCY_STALE_AFTER = dt.timedelta(minutes=2)


class ApiKeyThrottle(SimpleRateThrottle):
    scope = "api_key"

    def get_cache_key(self, request, view):
        if isinstance(request.auth, ApiKey):
            return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class UpdatedCursorPagination(CursorPagination):
    """Stable pages for incremental sync: ordered by last change, then id."""

    ordering = ("updated_at", "id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


# Errors (RFC 9457 problem details) ---------------------------------------------------------------------


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


# Idempotency -------------------------------------------------------------------------------------------


IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="Makes the POST safe to retry: the same key and body replay the first response; the same key "
    "with another body answers 422; a retry while the first is still running answers 409.",
)
IF_MATCH_HEADER = OpenApiParameter(
    "If-Match",
    str,
    OpenApiParameter.HEADER,
    required=True,
    description="The ETag of the version you are changing (from a GET); a stale one answers 412.",
)
IF_MATCH_CORRECTION_HEADER = OpenApiParameter(
    "If-Match",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="Needed only to correct a visit already recorded (or missed): the ETag of the version you are "
    "correcting (from a GET); without it 428, a stale one 412.",
)


def _request_hash(request) -> str:
    body = json.dumps(request.data, sort_keys=True, default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


class _AsciiJSONRenderer(JSONRenderer):
    # A stored answer is ASCII: a text column refuses some characters a refusal may echo (NUL).
    ensure_ascii = True


def idempotent(handler):
    """Run a POST handler at most once per (API key, Idempotency-Key).

    The key is claimed first, in a transaction of its own, so that a concurrent duplicate sees it and is told
    to retry. The handler's work and the answer kept for replays then commit together: a failure between
    them cannot leave the work done and the claim open, which a retry would take over and do again."""

    def wrapper(self, request, *args, **kwargs):
        key = request.headers.get("Idempotency-Key")
        if not key:
            return handler(self, request, *args, **kwargs)
        if len(key) > 200:
            return problem(
                400,
                "The Idempotency-Key is too long (200 characters at most).",
                kind="validation",
                errors=[{"field": "Idempotency-Key", "message": "At most 200 characters.", "code": "max_length"}],
            )
        digest = _request_hash(request)
        record, replay = _claim_idempotency(request.auth, key, digest)
        if replay is not None:
            return replay
        kept = False
        try:
            with transaction.atomic():
                try:
                    response = handler(self, request, *args, **kwargs)
                except Exception as exc:
                    response = exception_handler(exc, {"request": request, "view": self})
                    if response is None:
                        raise
                if response.status_code >= 500:
                    transaction.set_rollback(True)
                elif not transaction.get_connection().needs_rollback:
                    _keep_answer(record, response)
                    kept = True
        except BaseException:
            IdempotencyRecord.objects.filter(pk=record.pk).delete()
            raise
        if kept:
            return response
        if 400 <= response.status_code < 500:  # the work failed and was rolled back; its refusal is the answer
            _keep_answer(record, response)
            return response
        # A server error, or a success whose work was rolled back (an error swallowed on the way): nothing is
        # kept, so a retry runs afresh, and a success that stored nothing is not reported as one.
        IdempotencyRecord.objects.filter(pk=record.pk).delete()
        if response.status_code < 400:
            return problem(500, "The request could not be completed; nothing was stored.", kind="error")
        return response

    wrapper.__name__ = handler.__name__
    wrapper.__doc__ = handler.__doc__
    return wrapper


def _keep_answer(record: IdempotencyRecord, response) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        completed=True,
        response_status=response.status_code,
        response_body=_AsciiJSONRenderer().render(response.data).decode(),
        response_headers={k: response[k] for k in ("Location", "ETag") if k in response},
    )


def _claim_idempotency(api_key: ApiKey, key: str, digest: str):
    # Outside a transaction the claim is one INSERT, committed as it runs; inside a caller's, a savepoint keeps
    # a duplicate's IntegrityError from breaking it.
    within = transaction.atomic() if transaction.get_connection().in_atomic_block else nullcontext()
    try:
        with within:
            return IdempotencyRecord.objects.create(api_key=api_key, key=key, request_hash=digest), None
    except IntegrityError:
        pass
    existing = IdempotencyRecord.objects.get(api_key=api_key, key=key)
    if existing.request_hash != digest:
        return existing, problem(
            422,
            "This Idempotency-Key was used with a different request.",
            "Use a new key for a different request.",
            kind="idempotency-mismatch",
        )
    if existing.completed:
        response = Response(
            json.loads(existing.response_body) if existing.response_body else None,
            status=existing.response_status,
            headers={**existing.response_headers, "Idempotent-Replayed": "true"},
            content_type="application/problem+json" if existing.response_status >= 400 else None,
        )
        return existing, response
    stale = timezone.now() - IDEMPOTENCY_STALE_AFTER
    if existing.created_at < stale and IdempotencyRecord.objects.filter(
        pk=existing.pk, completed=False, created_at__lt=stale
    ).update(created_at=timezone.now()):
        return existing, None  # the first attempt died without an answer: this retry takes over
    return existing, problem(
        409,
        "A request with this Idempotency-Key is still being processed.",
        "Retry after a moment.",
        kind="idempotency-in-progress",
        headers={"Retry-After": "2"},
    )


# ETags -------------------------------------------------------------------------------------------------


def etag_of(obj) -> str:
    """A strong validator of the object's version: its last change (`updated_at`, or `computed_at` for
    outcomes), so the ETag moves whenever the row does."""
    changed = getattr(obj, "updated_at", None) or getattr(obj, "computed_at", None)
    stamp = changed.isoformat() if changed else str(obj.pk)
    return '"' + hashlib.sha256(f"{type(obj).__name__}:{obj.pk}:{stamp}".encode()).hexdigest()[:32] + '"'


def check_if_match(request, obj) -> Response | None:
    """428 without If-Match, 412 when it names another version than the current one."""
    given = request.headers.get("If-Match")
    if not given:
        return problem(
            428, "Send If-Match with the ETag of the version you are changing.", kind="precondition-required"
        )
    if given.strip() not in (etag_of(obj), "W/" + etag_of(obj)):
        return problem(
            412,
            "The object changed since you read it.",
            "GET it again and re-apply your change.",
            kind="precondition-failed",
            headers={"ETag": etag_of(obj)},
        )
    return None


# Base viewset ------------------------------------------------------------------------------------------


class PartnerViewSet(GenericViewSet):
    """Every queryset starts from the key's site; every write is attributed to the key in the audit trail."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [PartnerPermission]
    throttle_classes = [ApiKeyThrottle]
    pagination_class = UpdatedCursorPagination
    base_queryset = None  # a callable returning the unscoped queryset

    def get_exception_handler(self):
        return exception_handler

    @property
    def site_id(self) -> int:
        return self.request.auth.site_id

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no key and may have no database
            model = getattr(getattr(self.serializer_class, "Meta", None), "model", None)
            return model._default_manager.none() if model is not None else self.base_queryset().none()
        return self.scoped(self.base_queryset())

    def scoped(self, queryset):
        return queryset.for_sites([self.site_id])

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if isinstance(request.auth, ApiKey):
            self._audit = audit_context(door=Door.API, actor=str(request.user))
            self._audit.__enter__()

    def _close_audit(self) -> None:
        audit = getattr(self, "_audit", None)
        if audit is not None:
            self._audit = None
            audit.__exit__(None, None, None)

    def handle_exception(self, exc):
        try:
            return super().handle_exception(exc)
        except BaseException:
            self._close_audit()  # an error that escapes the view must not leave this thread attributed to the key
            raise

    def finalize_response(self, request, response, *args, **kwargs):
        self._close_audit()
        return super().finalize_response(request, response, *args, **kwargs)

    def respond(self, obj, serializer_class, status_code=status.HTTP_200_OK, headers=None) -> Response:
        data = serializer_class(obj, context=self.get_serializer_context()).data
        return Response(data, status=status_code, headers={"ETag": etag_of(obj), **(headers or {})})

    def retrieve(self, request, *args, **kwargs):
        obj = self.get_object()
        return self.respond(obj, self.get_serializer_class())

    def list(self, request, *args, **kwargs):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        serializer = self.get_serializer(page, many=True)
        return self.get_paginated_response(serializer.data)
