"""ETags and If-Match: a change names the version it changes; a stale one answers 412."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

from drf_spectacular.utils import OpenApiParameter
from rest_framework.response import Response

from core.api.problems import PreconditionError, precondition_problem

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


_ENTITY_TAG = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\uffff]*")\s*(?:,|$)')


def if_match_tags(header: str) -> list[str] | None:
    """The strong entity tags an If-Match header lists (RFC 9110, 8.8.3): `*`, or a comma-separated list
    of tags. A weak tag (`W/"..."`) is left out, since If-Match compares strongly and a weak tag matches
    nothing; None when the header is not such a list."""
    header = header.strip()
    if header == "*":
        return ["*"]
    tags, position = [], 0
    while position < len(header):
        found = _ENTITY_TAG.match(header, position)
        if found is None or found.end() == position:
            return None
        if not found.group(1):
            tags.append(found.group(2))
        position = found.end()
    return tags


def if_match_holds(header: str, obj) -> bool:
    """Whether If-Match `header` names the current version of `obj` (which exists, so `*` holds)."""
    tags = if_match_tags(header)
    return bool(tags) and ("*" in tags or etag_of(obj) in tags)


def check_if_match(request, obj) -> Response | None:
    """428 without If-Match, 412 when it names no current version of `obj`: strong comparison (a weak tag
    never matches), `*` or a list of tags as RFC 9110 says. The caller holds `obj`'s row locked (the viewset's
    `get_object` does for a write), so the version compared is the one the change replaces."""
    given = request.headers.get("If-Match")
    if not given:
        return precondition_problem(428)
    if not if_match_holds(given, obj):
        return precondition_problem(412, etag_of(obj))
    return None


def version_refusal(obj, version: str | dt.datetime | None) -> tuple[int, str] | None:
    """Why `version` does not name the current version of `obj` (412), or is missing (428); None when it
    does. `version` is an ETag (or an If-Match list of them) or the `updated_at` the caller read."""
    if version is None or version == "":
        return 428, (
            "It is recorded already: to correct it, send the version you are correcting (If-Match with its "
            "ETag, or its updated_at)."
        )
    if isinstance(version, dt.datetime):
        holds = getattr(obj, "updated_at", None) == version
    else:
        holds = if_match_holds(version, obj)
    if holds:
        return None
    current = getattr(obj, "updated_at", None)
    return 412, (
        f"It changed since you read it (now ETag {etag_of(obj)}"
        + (f", updated_at {current.isoformat()}" if current else "")
        + "): GET it again and re-apply your correction."
    )


def require_version(obj, version: str | dt.datetime | None, *, field: str, header: bool = False) -> None:
    """Raise PreconditionError (428 or 412, naming `field`) unless `version` names `obj`'s current version.
    `header`: `version` is the If-Match header of a request on `obj` itself (the API answers as to any If-Match)."""
    refusal = version_refusal(obj, version)
    if refusal is not None:
        status, message = refusal
        raise PreconditionError({field: [message]}, status=status, etag=etag_of(obj), header=header)
