"""Text a database column cannot store: a NUL character (PostgreSQL refuses it in text) or a lone UTF-16
surrogate (no character at all). The API refuses both where they arrive: a path naming an object (404), a
query parameter or a body field (400 naming it)."""

from __future__ import annotations

import re

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

UNSTORABLE_MESSAGE = "Text may not hold a NUL character or an unpaired UTF-16 surrogate."


def unstorable(value) -> bool:
    return isinstance(value, str) and _UNSTORABLE.search(value) is not None
