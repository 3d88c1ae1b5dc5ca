"""One run at a time across processes and hosts: a named lock for periodic jobs that two beats (or a beat and a
command) may start at the same moment (docs/operations.md, "Two beats")."""

from __future__ import annotations

import contextlib
import uuid
import zlib
from collections.abc import Iterator

from django.core.cache import cache
from django.db import connection

DEFAULT_TIMEOUT = 6 * 3600  # the cache lock of other databases expires should its holder die


def lock_key(name: str) -> int:
    """A stable 32-bit key for PostgreSQL's advisory locks."""
    return zlib.crc32(name.encode())


@contextlib.contextmanager
def single_run(name: str, *, timeout: int = DEFAULT_TIMEOUT) -> Iterator[bool]:
    """Hold the lock `name` for the block: yields True when this run holds it, False when another run does
    (the caller then skips). PostgreSQL: a session advisory lock, released when the block ends or the
    connection closes; other databases: an entry in the shared cache that expires after `timeout` seconds."""
    if connection.vendor == "postgresql":
        key = lock_key(name)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
            held = cursor.fetchone()[0]
        try:
            yield held
        finally:
            if held:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        return
    token = uuid.uuid4().hex
    held = cache.add(name, token, timeout=timeout)
    try:
        yield held
    finally:
        if held and cache.get(name) == token:
            cache.delete(name)
