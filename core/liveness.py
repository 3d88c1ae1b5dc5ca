"""Where the workers' sign of life is kept in the shared cache, and how to read it.

config/heartbeats.py writes it (a Celery signal, every 30 s of a live worker); `/healthz` and `/metrics` read it,
and so does a page that would queue work no worker is there to do (reporting/report_page.py).
"""

from __future__ import annotations

import logging

from django.core.cache import cache
from django.utils import timezone

logger = logging.getLogger(__name__)

WORKER_KEY = "registry:heartbeat:worker"
WORKER_STALE_SECONDS = 120  # a live worker writes its heartbeat every 30 s: four missed beats is a silent worker


def worker_silent(seconds: float = WORKER_STALE_SECONDS) -> bool:
    """Whether the workers' last heartbeat is older than `seconds`. None recorded yet (a system just started, or
    the cache emptied) or the cache unreadable: not silent, nothing is known against the workers."""
    try:
        beat = cache.get(WORKER_KEY)
    except Exception as exc:  # the cache is the broker's Redis, which may be away
        logger.warning("could not read the workers' heartbeat: %s", exc.__class__.__name__)
        return False
    return beat is not None and timezone.now().timestamp() - float(beat) > seconds
