"""`/metrics`: the registry's figures in Prometheus' text format, for an operator's scraper.

Refused unless configured: 404 when neither `METRICS_TOKEN` nor `METRICS_ALLOWED_IPS` is set; otherwise a
request must carry `Authorization: Bearer <METRICS_TOKEN>` or come from an allowed address (403 if not).

Request counts and latencies are counted by `MetricsMiddleware` in each web process (a scrape sees the
process that answers it; with several gunicorn workers, scrape each or sum what they report). Everything else
is read when scraped: ledger rows by state, e-mails failed in the last day, export jobs by state, the broker's
queue length, and the last run of the reminder sweep and the safety checks (`config.heartbeats`). Every figure
is a count or a time over the whole registry: no record, name or address appears.
"""

from __future__ import annotations

import hmac
import time

from django.conf import settings
from django.db.models import Count
from django.http import Http404, HttpResponse, HttpResponseForbidden
from django.utils import timezone
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from config import heartbeats

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "registry_http_requests",
    "HTTP requests answered, by view, method and status.",
    ["view", "method", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "registry_http_request_duration_seconds",
    "Time to answer a request, by view.",
    ["view"],
    registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def view_label(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unresolved"
    return match.view_name or match._func_path


class MetricsMiddleware:
    """Counts every request and its time, labelled by the view that answered it (a bounded set of names)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        began = time.perf_counter()
        response = self.get_response(request)
        view = view_label(request)
        REQUESTS.labels(view=view, method=request.method, status=str(response.status_code)).inc()
        LATENCY.labels(view=view).observe(time.perf_counter() - began)
        return response


class RegistryCollector:
    """Figures read from the database, the cache and the broker at each scrape."""

    def collect(self):
        from config.health import FAILED_WINDOW
        from notifications.constants import NotificationState
        from notifications.models import Notification
        from reporting.constants import ExportState
        from reporting.models import ExportJob

        by_state = dict(Notification.objects.order_by().values_list("state").annotate(n=Count("pk")))
        family = GaugeMetricFamily("registry_notifications", "E-mail ledger rows, by state.", labels=["state"])
        for state in NotificationState.values:
            family.add_metric([state], by_state.get(state, 0))
        yield family

        failed = Notification.objects.filter(
            state=NotificationState.FAILED, claimed_at__gte=timezone.now() - FAILED_WINDOW
        ).count()
        yield GaugeMetricFamily(
            "registry_notifications_failed_last_day",
            "E-mail ledger rows that failed in the last 24 hours.",
            value=failed,
        )

        exports = dict(ExportJob.objects.order_by().values_list("state").annotate(n=Count("pk")))
        family = GaugeMetricFamily("registry_export_jobs", "Export jobs, by state.", labels=["state"])
        for state in ExportState.values:
            family.add_metric([state], exports.get(state, 0))
        yield family

        queued = queue_length()
        if queued is not None:
            yield GaugeMetricFamily("registry_celery_queue_length", "Tasks waiting in the broker.", value=queued)

        run_keys = {job: heartbeats.RUNS_KEY.format(task=job) for job in heartbeats.RECORDED_RUNS.values()}
        found = heartbeats.read([heartbeats.BEAT_KEY, heartbeats.WORKER_KEY, *run_keys.values()])
        at = GaugeMetricFamily(
            "registry_job_last_run_timestamp_seconds", "When a periodic job last ended.", labels=["job"]
        )
        took = GaugeMetricFamily(
            "registry_job_last_run_duration_seconds", "How long its last run took.", labels=["job"]
        )
        for job, key in run_keys.items():
            run = found.get(key)
            if isinstance(run, dict) and run.get("at") is not None:
                at.add_metric([job], run["at"])
                if run.get("seconds") is not None:
                    took.add_metric([job], run["seconds"])
        yield at
        yield took
        for key, name, text in (
            (heartbeats.BEAT_KEY, "registry_beat_last_tick_timestamp_seconds", "When beat last queued a job."),
            (
                heartbeats.WORKER_KEY,
                "registry_worker_last_heartbeat_timestamp_seconds",
                "A worker's last sign of life.",
            ),
        ):
            if isinstance(found.get(key), int | float):
                yield GaugeMetricFamily(name, text, value=found[key])


def queue_length() -> int | None:
    """Tasks waiting in Redis' default queue; None with the filesystem broker or when Redis does not answer."""
    url = str(settings.CELERY_BROKER_URL or "")
    if not url.startswith(("redis://", "rediss://")):
        return None
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return int(client.llen("celery"))
    except redis.RedisError:
        return None
    finally:
        client.close()


def allowed(request) -> bool:
    """Whether `request` may read the metrics; Http404 when metrics are not configured at all."""
    token = settings.METRICS_TOKEN
    addresses = settings.METRICS_ALLOWED_IPS
    if not token and not addresses:
        raise Http404
    if token:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode()):
            return True
    return request.META.get("REMOTE_ADDR", "") in addresses


@never_cache
def metrics(request):
    if not allowed(request):
        return HttpResponseForbidden("Forbidden", content_type="text/plain")
    scrape = CollectorRegistry()
    scrape.register(RegistryCollector())
    body = generate_latest(REGISTRY) + generate_latest(scrape)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
