"""`/healthz`: is the registry working? One JSON object naming each check, 200 when all pass, 503 otherwise.

Cheap enough for a load balancer every few seconds: one query for the database, one count of failed
e-mails, one cache read for the heartbeats (`config.heartbeats`), a Redis PING or a folder check for the
broker, and the migrations checked against the database until they are found applied (then remembered by
the process: a deployment that migrates restarts it). The body names checks and ages, never a host, a
URL or a record.

`python -m config.health CHECK...` runs checks from the command line and exits 1 when one fails
(docker-compose's health check of beat: `python -m config.health beat`).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from dataclasses import dataclass, field

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config import heartbeats
from config.schedule import SWEEP_INTERVAL
from core.liveness import WORKER_STALE_SECONDS

BEAT_STALE = 2 * SWEEP_INTERVAL  # beat publishes at least every 5 minutes; twice the sweep interval is stale
WORKER_STALE = dt.timedelta(seconds=WORKER_STALE_SECONDS)  # core/liveness.py, as the report page reads it
FAILED_WINDOW = dt.timedelta(days=1)
BROKER_TIMEOUT = 1.0  # seconds for the broker's PING

_migrations_applied = {"ok": False}


@dataclass
class Check:
    ok: bool
    detail: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"ok": self.ok, **self.detail}


def check_database() -> Check:
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return Check(False, {"error": exc.__class__.__name__})
    return Check(True)


def check_migrations() -> Check:
    if _migrations_applied["ok"]:
        return Check(True)
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        return Check(False, {"error": exc.__class__.__name__})
    if plan:
        return Check(False, {"unapplied": len(plan)})
    _migrations_applied["ok"] = True
    return Check(True)


def check_broker() -> Check:
    url = str(settings.CELERY_BROKER_URL or "")
    if url.startswith("filesystem://"):
        folder = (settings.CELERY_BROKER_TRANSPORT_OPTIONS or {}).get("data_folder_in", "")
        writable = bool(folder) and os.path.isdir(folder) and os.access(folder, os.W_OK)
        return Check(
            writable, {"transport": "filesystem"} if writable else {"transport": "filesystem", "error": "not writable"}
        )
    if url.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=BROKER_TIMEOUT, socket_timeout=BROKER_TIMEOUT)
        try:
            client.ping()
        except Exception as exc:
            return Check(False, {"transport": "redis", "error": exc.__class__.__name__})
        finally:
            client.close()
        return Check(True, {"transport": "redis"})
    return Check(False, {"error": "unknown transport"})


def _age(timestamp, now: dt.datetime) -> float | None:
    if not isinstance(timestamp, int | float):
        return None
    return round(max(0.0, now.timestamp() - timestamp), 1)


def check_heartbeats(beats: dict | None = None) -> tuple[Check, Check]:
    """Beat's last tick and the workers' last heartbeat (one cache read for both)."""
    if beats is None:
        beats = heartbeats.read([heartbeats.BEAT_KEY, heartbeats.WORKER_KEY])
    now = timezone.now()
    results = []
    for key, stale in ((heartbeats.BEAT_KEY, BEAT_STALE), (heartbeats.WORKER_KEY, WORKER_STALE)):
        age = _age(beats.get(key), now)
        detail = {"age_seconds": age, "stale_after_seconds": int(stale.total_seconds())}
        results.append(Check(age is not None and age <= stale.total_seconds(), detail))
    return results[0], results[1]


def check_failed_notifications() -> Check:
    from notifications.constants import NotificationState
    from notifications.models import Notification

    since = timezone.now() - FAILED_WINDOW
    try:
        failed = Notification.objects.filter(state=NotificationState.FAILED, failed_at__gte=since).count()
    except Exception as exc:
        return Check(False, {"error": exc.__class__.__name__})
    return Check(failed == 0, {"count": failed})


def run_checks() -> dict[str, Check]:
    database = check_database()
    beat, workers = check_heartbeats()
    checks = {
        "database": database,
        "migrations": check_migrations() if database.ok else Check(False, {"error": "no database"}),
        "broker": check_broker(),
        "beat": beat,
        "workers": workers,
        "notifications_failed": (
            check_failed_notifications() if database.ok else Check(False, {"error": "no database"})
        ),
    }
    return checks


@never_cache
@require_GET
def healthz(request):
    checks = run_checks()
    healthy = all(check.ok for check in checks.values())
    body = {"status": "ok" if healthy else "failing", "checks": {name: c.as_json() for name, c in checks.items()}}
    return JsonResponse(body, status=200 if healthy else 503)


@never_cache
def livez(request):
    """The process answers: for a test or a start script waiting for gunicorn, not for a load balancer."""
    return HttpResponse("ok", content_type="text/plain")


def main(argv: list[str]) -> int:
    import django

    django.setup()
    single = {
        "database": check_database,
        "migrations": check_migrations,
        "broker": check_broker,
        "beat": lambda: check_heartbeats()[0],
        "workers": lambda: check_heartbeats()[1],
        "notifications_failed": check_failed_notifications,
    }
    names = argv or list(single)
    unknown = [name for name in names if name not in single]
    if unknown:
        print(f"unknown check(s): {', '.join(unknown)}; choose from {', '.join(single)}", file=sys.stderr)
        return 2
    failing = 0
    for name in names:
        check = single[name]()
        print(f"{name}: {'ok' if check.ok else 'FAILING'} {check.detail or ''}".rstrip())
        failing += not check.ok
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
