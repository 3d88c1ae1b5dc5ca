"""Signs of life that `/healthz` and `/metrics` read: beat's last tick, the workers' last heartbeat, and the
last run of the reminder sweep and of the safety checks.

Each is a small entry in the shared cache (Redis, or the database table without Redis), written by a Celery
signal, so nothing is broadcast and nothing waits on a worker. A write that fails (the cache is down) is
logged and dropped: a missing sign of life shows on `/healthz`, it never stops a worker or beat.
"""

from __future__ import annotations

import logging
import time

from celery import signals
from django.core.cache import cache
from django.utils import timezone

from core.liveness import WORKER_KEY

logger = logging.getLogger(__name__)

BEAT_KEY = "registry:heartbeat:beat"
RUNS_KEY = "registry:last-run:{task}"
KEEP = 7 * 24 * 3600  # seconds an entry is kept: long enough to say "stale", not forever
WORKER_EVERY = 30.0  # seconds between two worker heartbeats written by one process

# The periodic jobs whose last run is recorded (task name -> the name used in /metrics).
RECORDED_RUNS = {
    "notifications.tasks.sweep_reminders": "sweep",
    "notifications.tasks.run_safety_checks": "safety_checks",
}

_state = {"in_beat": False, "worker_written": 0.0}
_started: dict[str, float] = {}


def _write(key: str, value) -> None:
    try:
        cache.set(key, value, timeout=KEEP)
    except Exception as exc:  # the cache is the broker's Redis, which may be away
        logger.warning("could not record %s: %s", key, exc.__class__.__name__)


def record_beat_tick() -> None:
    _write(BEAT_KEY, timezone.now().timestamp())


def record_worker_alive(*, force: bool = False) -> None:
    now = time.monotonic()
    if not force and now - _state["worker_written"] < WORKER_EVERY:
        return
    _state["worker_written"] = now
    _write(WORKER_KEY, timezone.now().timestamp())


def read(keys: list[str]) -> dict:
    """The entries under `keys` (one round trip to the cache); missing or unreadable ones are left out."""
    try:
        return cache.get_many(keys)
    except Exception as exc:
        logger.warning("could not read the heartbeats: %s", exc.__class__.__name__)
        return {}


@signals.beat_init.connect
def _beat_started(sender=None, **kwargs):
    _state["in_beat"] = True
    record_beat_tick()


@signals.before_task_publish.connect
def _beat_published(sender=None, **kwargs):
    # Beat publishes every periodic job; each publish is a tick. Other processes publish too (the web
    # queuing an export), which is why only the process where beat started records it.
    if _state["in_beat"]:
        record_beat_tick()


@signals.worker_ready.connect
def _worker_ready(sender=None, **kwargs):
    record_worker_alive(force=True)


@signals.heartbeat_sent.connect
def _worker_heartbeat(sender=None, **kwargs):
    record_worker_alive()


@signals.task_prerun.connect
def _task_started(sender=None, task_id=None, task=None, **kwargs):
    if task is not None and task.name in RECORDED_RUNS and task_id:
        _started[task_id] = time.monotonic()


@signals.task_postrun.connect
def _task_finished(sender=None, task_id=None, task=None, state=None, **kwargs):
    record_worker_alive()
    if task is None or task.name not in RECORDED_RUNS:
        return
    began = _started.pop(task_id, None)
    duration = time.monotonic() - began if began is not None else None
    _write(
        RUNS_KEY.format(task=RECORDED_RUNS[task.name]),
        {"at": timezone.now().timestamp(), "seconds": duration, "state": state},
    )
