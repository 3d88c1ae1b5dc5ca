"""ETags and If-Match: a change names the version it changes; a stale one answers 412."""

from __future__ import annotations

import hashlib

from drf_spectacular.utils import OpenApiParameter
from rest_framework.response import Response

from core.api.problems import problem

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
