"""Request bodies: JSON only, of bounded size and depth, whose strings are text.

A NUL character is valid text but no text column stores it: the fields refuse it, each naming itself (REST
framework's CharField does; a parse error here would not be kept for an idempotent replay)."""

from __future__ import annotations

import codecs
import io
import re

from django.conf import settings
from rest_framework import exceptions
from rest_framework.parsers import JSONParser

# Deeper than any body of the API (a batch of visits with results is 5 levels); deeper nesting is refused
# before anything recursive (the JSON decoder, validation, the idempotency hash) walks it.
MAX_JSON_DEPTH = 32

_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class BodyTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "too_large"


def max_body_bytes() -> int:
    """The largest body the API reads: DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB by default)."""
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2_621_440


def too_large_message() -> str:
    return f"The request body is larger than the limit of {max_body_bytes()} bytes; send fewer items at once."


def _walk(data):
    """Every string (keys included) of a parsed body, breadth first and without recursion; raises ParseError
    when the nesting is deeper than MAX_JSON_DEPTH."""
    level = [data]
    depth = 0
    while level:
        following, containers = [], False
        for value in level:
            if isinstance(value, str):
                yield value
            elif isinstance(value, dict):
                yield from value.keys()
                following += value.values()
                containers = True
            elif isinstance(value, list):
                following += value
                containers = True
        depth += containers
        if depth > MAX_JSON_DEPTH:
            raise exceptions.ParseError(_too_deep())
        level = following


def _too_deep() -> str:
    return f"JSON parse error - the body is nested deeper than {MAX_JSON_DEPTH} levels (the API's limit)."


class StrictJSONParser(JSONParser):
    """JSON of at most `max_body_bytes()` bytes (413 beyond), nested at most MAX_JSON_DEPTH levels, whose
    strings hold no lone UTF-16 surrogate (an escape that decodes to no character): each refused with a 400
    naming the rule."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = max_body_bytes()
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise BodyTooLarge(too_large_message())
        # Fewer brackets than the limit: no nesting can be too deep.
        walk_needed = body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        # In UTF-8 (or ASCII) a surrogate can only come from an escape, which the bytes show: without one, no
        # walk for it. Another charset (UTF-16: two bytes a character) is always walked.
        other_charset = codecs.lookup(encoding).name not in ("utf-8", "ascii")
        walk_needed = walk_needed or other_charset or _SURROGATE_ESCAPE.search(body)
        try:
            data = super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError(_too_deep()) from None
        if walk_needed:
            for value in _walk(data):
                if isinstance(value, str) and _SURROGATE.search(value):
                    raise exceptions.ParseError(
                        "JSON parse error - a string holds an unpaired UTF-16 surrogate escape."
                    )
        return data
