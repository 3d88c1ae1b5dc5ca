"""What the sender needs around one SMTP message: its stable Message-ID, whether an error is permanent, and
database steps that survive a lost connection.

Kept apart from the ledger's rules (`ledger.py`) because none of it knows what a reminder is.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import smtplib
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A temporary error is retried for this long after the item's first attempt, then the item fails.
RETRY_FOR = dt.timedelta(hours=24)
# The longest wait between two attempts.
MAX_BACKOFF = dt.timedelta(hours=2)
# How long a database step keeps reconnecting after its connection was lost.
DB_RETRY_SECONDS = 30.0


def message_id(keys: Iterable[str]) -> str:
    """The Message-ID of the e-mail that says these ledger items: the same keys always give the same id, so
    a copy sent again after a crash carries the id of the first and mail systems can drop it."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:40]
    domain = getattr(settings, "NOTIFICATION_MESSAGE_ID_DOMAIN", "msct-registry")
    return f"<{digest}@{domain}>"


def backoff(attempts: int) -> dt.timedelta:
    """1, 4, 16, 64 minutes... between attempts, at most two hours."""
    return min(dt.timedelta(minutes=4 ** min(max(attempts - 1, 0), 6)), MAX_BACKOFF)


def smtp_code(exc: BaseException) -> int | None:
    """The SMTP reply code an error carries (the first refused recipient's), or None (no reply: connection
    refused or reset, a timeout, a template error)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values() if isinstance(code, int)]
        return min(codes) if codes else None
    code = getattr(exc, "smtp_code", None)
    return code if isinstance(code, int) and code > 0 else None


def is_permanent(exc: BaseException) -> bool:
    """A 5xx reply (message, sender or recipients refused) will be refused again: no retry. A 4xx reply, a
    connection refused, reset or timed out, and anything else may pass later."""
    code = smtp_code(exc)
    return code is not None and 500 <= code < 600


def server_unavailable(exc: BaseException) -> bool:
    """No SMTP conversation took place (connection refused, reset or timed out, the server hung up, or it
    said 421 "service not available"): the next message would fare no better now."""
    return isinstance(exc, OSError) and smtp_code(exc) in (None, 421)


def describe_error(exc: BaseException) -> str:
    code = smtp_code(exc)
    kind = "permanent" if is_permanent(exc) else "temporary"
    return f"{kind} ({code or 'no SMTP reply'}): {exc!r}"


def db_step(step: Callable[..., T], *args, **kwargs) -> T:
    """Run `step` in its own short transaction; if the database connection is lost, reconnect and run it
    again (for up to DB_RETRY_SECONDS). Steps are idempotent: a claim renewal, a re-check, a marking.

    Inside a caller's transaction a lost connection cannot be resumed, so the error goes up unchanged.
    """
    deadline = time.monotonic() + DB_RETRY_SECONDS
    pause = 0.1
    while True:
        outer = connection.in_atomic_block
        try:
            with transaction.atomic():
                return step(*args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            if outer or time.monotonic() > deadline:
                raise
            logger.warning("database connection lost during %s (%s); reconnecting", step.__name__, exc)
            connection.close()
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def close_quietly(backend) -> None:
    """Close an SMTP connection that may be broken (after a timeout or a reset), so the next send opens a
    new one."""
    raw = getattr(backend, "connection", None)
    try:
        backend.close()
    except Exception:  # a dead socket cannot say QUIT; drop it
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.close()
            backend.connection = None
