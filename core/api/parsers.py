"""Request bodies: JSON only, and JSON whose strings are text."""

import codecs
import io
import re

from django.conf import settings
from rest_framework import exceptions
from rest_framework.parsers import JSONParser

_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _lone_surrogate(value) -> str | None:
    """The first string of a parsed body holding a lone UTF-16 surrogate (a \\uD800-\\uDFFF escape not in a pair)."""
    if isinstance(value, str):
        return value if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        found = _lone_surrogate(item)
        if found is not None:
            return found
    return None


class StrictJSONParser(JSONParser):
    """JSON whose strings are text: an escaped lone surrogate decodes to no character, so it is refused."""

    def parse(self, stream, media_type=None, parser_context=None):
        body = stream.read()
        data = super().parse(io.BytesIO(body), media_type, parser_context)
        # In UTF-8 (or ASCII) a surrogate can only come from an escape, which the bytes show: without one, no
        # walk. Another charset (UTF-16: two bytes a character) is always walked.
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        escaped = codecs.lookup(encoding).name not in ("utf-8", "ascii") or _SURROGATE_ESCAPE.search(body)
        if escaped and _lone_surrogate(data) is not None:
            raise exceptions.ParseError("JSON parse error - a string holds an unpaired UTF-16 surrogate escape.")
        return data
