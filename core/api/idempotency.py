"""Idempotent POSTs: the same Idempotency-Key and body replay the first answer; a retry never repeats the work.

A view using `idempotent` names the model that keeps the answers in `idempotency_model`: a row per (caller's
key, Idempotency-Key) with the fields of `registry.models.IdempotencyRecord`; the caller's key is `request.auth`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from contextlib import nullcontext

from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from core.api.problems import exception_handler, problem

IDEMPOTENCY_STALE_AFTER = dt.timedelta(minutes=2)

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="Makes the POST safe to retry: the same key and body replay the first response; the same key "
    "with another body answers 422; a retry while the first is still running answers 409.",
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
        records = self.idempotency_model.objects
        record, replay = _claim_idempotency(records, request.auth, key, digest)
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
                    _keep_answer(records, record, response)
                    kept = True
        except BaseException:
            records.filter(pk=record.pk).delete()
            raise
        if kept:
            return response
        if 400 <= response.status_code < 500:  # the work failed and was rolled back; its refusal is the answer
            _keep_answer(records, record, response)
            return response
        # A server error, or a success whose work was rolled back (an error swallowed on the way): nothing is
        # kept, so a retry runs afresh, and a success that stored nothing is not reported as one.
        records.filter(pk=record.pk).delete()
        if response.status_code < 400:
            return problem(500, "The request could not be completed; nothing was stored.", kind="error")
        return response

    wrapper.__name__ = handler.__name__
    wrapper.__doc__ = handler.__doc__
    return wrapper


def _keep_answer(records, record, response) -> None:
    records.filter(pk=record.pk).update(
        completed=True,
        response_status=response.status_code,
        response_body=_AsciiJSONRenderer().render(response.data).decode(),
        response_headers={k: response[k] for k in ("Location", "ETag") if k in response},
    )


def _claim_idempotency(records, api_key, key: str, digest: str):
    # Outside a transaction the claim is one INSERT, committed as it runs; inside a caller's, a savepoint keeps
    # a duplicate's IntegrityError from breaking it.
    within = transaction.atomic() if transaction.get_connection().in_atomic_block else nullcontext()
    try:
        with within:
            return records.create(api_key=api_key, key=key, request_hash=digest), None
    except IntegrityError:
        pass
    existing = records.get(api_key=api_key, key=key)
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
    if existing.created_at < stale and records.filter(pk=existing.pk, completed=False, created_at__lt=stale).update(
        created_at=timezone.now()
    ):
        return existing, None  # the first attempt died without an answer: this retry takes over
    return existing, problem(
        409,
        "A request with this Idempotency-Key is still being processed.",
        "Retry after a moment.",
        kind="idempotency-in-progress",
        headers={"Retry-After": "2"},
    )
