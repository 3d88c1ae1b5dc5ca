"""`/metrics`: Prometheus text, refused without the token or an allowed address."""

from __future__ import annotations

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from config import heartbeats
from notifications.constants import NotificationState
from notifications.models import Notification
from reporting.models import ExportJob

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-tests-0123456789"


@pytest.fixture(autouse=True)
def _empty_cache():
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def samples(response) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a Prometheus text body."""
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_not_found_when_neither_token_nor_addresses_are_configured(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = []
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def test_refused_without_the_right_bearer_token(client, settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_IPS = []
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Token {TOKEN}").status_code == 403
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")


def test_an_allowed_address_needs_no_token(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["10.0.0.5"]
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.6").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.5").status_code == 200


def test_the_figures(client, settings, site_a, study):
    settings.METRICS_TOKEN = TOKEN
    now = timezone.now()
    for state in (NotificationState.PENDING, NotificationState.PENDING, NotificationState.FAILED):
        Notification.objects.create(
            kind="visit_reminder",
            object_id=1000 + Notification.objects.count(),
            stage="due",
            recipient_email="someone@registry.example",
            site=site_a,
            state=state,
            send_after=now,
            claimed_at=now,
        )
    ExportJob.objects.create(study=study, site_ids=[site_a.pk])
    from notifications.tasks import sweep_reminders

    heartbeats._task_started(task=sweep_reminders, task_id="t-1")
    heartbeats._task_finished(task=sweep_reminders, task_id="t-1", state="SUCCESS")
    heartbeats.record_beat_tick()
    client.get("/healthz")

    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    found = samples(response)
    assert found[("registry_notifications", (("state", "pending"),))] == 2
    assert found[("registry_notifications", (("state", "failed"),))] == 1
    assert found[("registry_notifications", (("state", "sent"),))] == 0
    assert found[("registry_notifications_failed_last_day", ())] == 1
    assert found[("registry_export_jobs", (("state", "queued"),))] == 1
    assert found[("registry_export_jobs", (("state", "done"),))] == 0
    sweep_at = found[("registry_job_last_run_timestamp_seconds", (("job", "sweep"),))]
    assert abs(sweep_at - now.timestamp()) < 60
    assert ("registry_job_last_run_duration_seconds", (("job", "sweep"),)) in found
    assert ("registry_job_last_run_timestamp_seconds", (("job", "safety_checks"),)) not in found  # never ran
    assert ("registry_beat_last_tick_timestamp_seconds", ()) in found
    healthz = (("method", "GET"), ("status", "503"), ("view", "healthz"))
    assert found[("registry_http_requests_total", healthz)] >= 1
    assert found[("registry_http_request_duration_seconds_count", (("view", "healthz"),))] >= 1
    assert "someone@registry.example" not in response.content.decode()


def test_metrics_cost_a_fixed_number_of_queries(client, settings, site_a, django_assert_num_queries):
    settings.METRICS_TOKEN = TOKEN
    # Ledger rows by state, failed in the last day, export jobs by state.
    with django_assert_num_queries(3):
        assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
