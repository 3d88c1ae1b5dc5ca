"""A cohort report page too large to compute in the request, rendered by a real `celery -A config worker` on
PostgreSQL and a private Redis: the page answers at once that the report is being computed and queues one task,
the status view it polls says "ready" once the worker has kept the report in the cache, and the page then shows
the report of the coordinator's site only (the hand cohort of tests/reporting/hand_cohort.py; the threshold
REPORT_INLINE_MAX_PATIENTS = 0 makes it "large")."""

from __future__ import annotations

import time

import pytest
from celery import current_app
from django.core.cache.backends.redis import RedisCache
from django.urls import reverse

from reporting import report_page
from tests.factories import make_user
from tests.integration.support import Worker, free_port, private_redis, process_env, queue_task, report, wait_until
from tests.reporting.hand_cohort import admin_url, build_cohort, page_text

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_queued_report_is_rendered_by_a_worker_and_the_page_then_shows_it(client, settings, tmp_path, monkeypatch):
    settings.REPORT_INLINE_MAX_PATIENTS = 0
    cohort = build_cohort()
    client.force_login(make_user("report.worker", cohort.site_a))
    status = reverse("admin:reporting_cohortreport_status", args=[cohort.study.pk])
    with private_redis(tmp_path) as redis:
        # This process plays the web server: its cache and its broker are the Redis the worker reads.
        monkeypatch.setattr(report_page, "caches", {"default": RedisCache(redis.url, {})})
        sent = []

        def send_task(name, kwargs):
            sent.append(name)
            return queue_task(redis.url, name, kwargs=kwargs)

        monkeypatch.setattr(current_app, "send_task", send_task)
        began = time.monotonic()
        first = client.get(admin_url(cohort.study))
        answered = time.monotonic() - began
        assert first.status_code == 200
        assert "The cohort report of your sites (RPA) is being computed" in page_text(first.content.decode())
        assert client.get(admin_url(cohort.study)).status_code == 200
        assert sent == [report_page.RENDER_REPORT_TASK]
        assert client.get(status).json() == {"state": "computing"}

        env = process_env(redis_url=redis.url, smtp_port=free_port(), var_dir=tmp_path)
        worker = Worker("reports", env, tmp_path).start().wait_ready()
        try:
            began = time.monotonic()
            wait_until(lambda: client.get(status).json()["state"] == "ready", timeout=120, interval=0.2,
                       what="the worker to render the report")  # fmt: skip
            rendered = time.monotonic() - began
        finally:
            worker.stop()
        assert "render_cohort_report" in worker.text() and "succeeded" in worker.text(), worker.text()[-2000:]

        html = client.get(admin_url(cohort.study)).content.decode()
        assert client.get(admin_url(cohort.study), {"format": "json"}).json()["n_patients"] == 4
    text = page_text(html)
    assert "Table 1" in text and "<svg" in html
    assert "being computed" not in text and "taken on" not in text
    assert "B-01" not in html
    assert sent == [report_page.RENDER_REPORT_TASK]
    report(
        f"report worker: the page answered in {answered:.2f} s; the worker's report was ready {rendered:.1f} s later"
    )
