"""The cohort report page of a large cohort is never computed in the web request: the page queues one task
(claimed by a marker in the cache), says the report of the user's sites is being computed and polls a small
JSON view; the worker's report is then shown. A report of an older data version is shown at once with a banner
naming the time its figures were taken. A small cohort is still computed in the request.

REPORT_INLINE_MAX_PATIENTS = 0 makes the hand cohort (tests/reporting/hand_cohort.py) a "large" one.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from celery import current_app
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from reporting import rendering, tasks
from reporting.report_page import RENDER_REPORT_TASK
from tests.factories import make_patient, make_user
from tests.reporting.hand_cohort import admin_url, page_text

pytestmark = pytest.mark.django_db

COMPUTING = "The cohort report of your sites (RPA) is being computed"
BANNER = "The figures below were taken on 2026-09-01 at 17:00 CST"  # 09:00 UTC in site A's Nanjing
NEWER = "Newer data are being computed"


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def large(settings):
    settings.REPORT_INLINE_MAX_PATIENTS = 0
    return settings


@pytest.fixture
def sent(monkeypatch):
    """The tasks handed to the broker (nothing is sent): a test runs them itself, as a worker would."""
    queued: list[tuple[str, dict]] = []
    monkeypatch.setattr(current_app, "send_task", lambda name, kwargs: queued.append((name, kwargs)))
    return queued


@pytest.fixture
def no_inline(monkeypatch):
    """Any computation of the report in the request fails the test."""

    def refuse(**kwargs):
        raise AssertionError("the report was computed in the web request")

    monkeypatch.setattr(rendering, "render_html", refuse)
    monkeypatch.setattr("reporting.report_page.cohort_report", refuse)


def run(sent_tasks):
    """Run the queued tasks as a worker would (their arguments are JSON)."""
    for name, kwargs in sent_tasks:
        assert name == RENDER_REPORT_TASK
        tasks.render_cohort_report(**kwargs)


def status_url(study, **params):
    url = reverse("admin:reporting_cohortreport_status", args=[study.pk])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


@pytest.fixture
def coordinator_a(client, cohort):
    client.force_login(make_user("bg_coord_a", cohort.site_a))
    return client


def test_a_large_cohorts_page_answers_without_computing_and_five_loads_queue_one_task(
    coordinator_a, cohort, large, sent, no_inline
):
    for _ in range(5):
        with CaptureQueriesContext(connection) as ctx:
            response = coordinator_a.get(admin_url(cohort.study))
        assert response.status_code == 200
        text = page_text(response.content.decode())
        assert COMPUTING in text
        assert "Table 1" not in text
        assert len(ctx.captured_queries) <= 16
    assert len(sent) == 1
    name, kwargs = sent[0]
    assert name == RENDER_REPORT_TASK
    # The sites are resolved in the request: the task renders for exactly the coordinator's site.
    assert kwargs["site_ids"] == [cohort.site_a.pk]
    assert kwargs["study_id"] == cohort.study.pk
    assert kwargs["time_zone"] == "Asia/Shanghai"  # the zone of the coordinator's site, as the page writes times
    html = response.content.decode()
    assert status_url(cohort.study) in html.replace("&amp;", "&")
    assert "reporting/report_progress.js" in html


def test_the_worker_renders_the_queued_report_and_the_page_then_shows_it(coordinator_a, cohort, large, sent):
    assert coordinator_a.get(admin_url(cohort.study)).status_code == 200
    assert coordinator_a.get(status_url(cohort.study)).json()["state"] == "computing"
    run(sent)
    assert coordinator_a.get(status_url(cohort.study)).json()["state"] == "ready"
    html = coordinator_a.get(admin_url(cohort.study)).content.decode()
    text = page_text(html)
    assert "Table 1" in text and "<svg" in html
    assert COMPUTING not in text and BANNER not in text
    assert "B-01" not in html
    assert "generated 2026-09-01 17:00 CST" in text  # written in the site's zone, as the request would
    assert len(sent) == 1  # nothing queued again


def test_a_report_of_older_data_is_shown_at_once_with_the_time_of_its_figures(
    coordinator_a, cohort, large, sent, frozen_now
):
    coordinator_a.get(admin_url(cohort.study))
    run(sent)
    frozen_now.shift(dt.timedelta(minutes=30))
    make_patient(cohort.study, cohort.site_a, subject_code="A-05")  # the data change: a new version
    text = page_text(coordinator_a.get(admin_url(cohort.study)).content.decode())
    assert "Table 1" in text
    assert BANNER in text and NEWER in text
    assert COMPUTING not in text
    assert len(sent) == 2  # the newer data are computed
    assert coordinator_a.get(status_url(cohort.study)).json()["state"] == "computing"
    run(sent[1:])
    text = page_text(coordinator_a.get(admin_url(cohort.study)).content.decode())
    assert "Table 1" in text and BANNER not in text and NEWER not in text


def test_another_filter_or_language_is_not_an_older_version(coordinator_a, cohort, large, sent, settings):
    coordinator_a.get(admin_url(cohort.study))
    run(sent)
    text = page_text(coordinator_a.get(admin_url(cohort.study), {"compare": "infusions"}).content.decode())
    assert COMPUTING in text and "Table 1" not in text
    coordinator_a.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    assert "Table 1" not in page_text(coordinator_a.get(admin_url(cohort.study)).content.decode())


def test_the_status_view_answers_only_for_the_users_own_sites_and_studies(client, cohort, large, sent):
    client.force_login(make_user("bg_coord_a2", cohort.site_a))
    client.get(admin_url(cohort.study))
    run(sent)
    assert client.get(status_url(cohort.study)).json() == {"state": "ready"}
    # Another filter is another report, not computed yet.
    assert client.get(status_url(cohort.study, compare="infusions")).json() == {"state": "missing"}
    # Site B's coordinator asks for B's report: the key comes from their own sites, never from the client.
    client.force_login(make_user("bg_coord_b", cohort.site_b))
    assert client.get(status_url(cohort.study)).json() == {"state": "missing"}
    # A coordinator of a site outside the study, and a study that does not exist: 404.
    client.force_login(make_user("bg_coord_c", cohort.site_c))
    assert client.get(status_url(cohort.study)).status_code == 404
    assert client.get(status_url(cohort.study).replace(f"/{cohort.study.pk}/", "/999999/")).status_code == 404


def test_json_and_csv_of_a_large_cohort_come_from_the_computed_report(coordinator_a, cohort, large, sent, no_inline):
    response = coordinator_a.get(admin_url(cohort.study), {"format": "json"})
    assert response.status_code == 202
    assert response.json()["state"] == "computing"
    assert response.json()["status_url"] == status_url(cohort.study)
    response = coordinator_a.get(admin_url(cohort.study), {"format": "csv"})
    assert response.status_code == 202
    assert response["Content-Type"].startswith("text/html")
    assert COMPUTING in page_text(response.content.decode())
    coordinator_a.get(admin_url(cohort.study))
    assert len(sent) == 1  # the page and its downloads share one computation
    run(sent)
    response = coordinator_a.get(admin_url(cohort.study), {"format": "json"})
    assert response.status_code == 200
    assert response.json()["n_patients"] == 4
    response = coordinator_a.get(admin_url(cohort.study), {"format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response.content.decode().startswith("section,group,time_point,variable,statistic,value")


def test_a_worker_that_cannot_be_reached_is_said_and_nothing_is_computed(
    coordinator_a, cohort, large, monkeypatch, no_inline
):
    tries = []

    def broker_down(name, kwargs):
        tries.append(name)
        raise ConnectionRefusedError("no broker")

    monkeypatch.setattr(current_app, "send_task", broker_down)
    text = page_text(coordinator_a.get(admin_url(cohort.study)).content.decode())
    assert "cannot be reached" in text and "Table 1" not in text
    response = coordinator_a.get(admin_url(cohort.study), {"format": "json"})
    assert response.status_code == 503 and response.json()["state"] == "unreachable"
    # The claim was given back: the next load tries again.
    assert len(tries) == 2


def test_a_lost_task_is_queued_again_once_its_marker_expires(coordinator_a, cohort, large, sent, frozen_now):
    large.REPORT_COMPUTE_SECONDS = 1
    coordinator_a.get(admin_url(cohort.study))
    coordinator_a.get(admin_url(cohort.study))
    assert len(sent) == 1
    # The task never ran (the broker lost it): the marker expires, in memory (the frozen clock) as in Redis.
    frozen_now.shift(dt.timedelta(seconds=2))
    time.sleep(1.2)
    assert coordinator_a.get(status_url(cohort.study)).json()["state"] == "missing"
    coordinator_a.get(admin_url(cohort.study))
    assert len(sent) == 2


def test_a_failed_computation_is_said_and_tried_again_later(coordinator_a, cohort, large, sent, monkeypatch):
    coordinator_a.get(admin_url(cohort.study))

    def broken(**kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("reporting.rendering.cohort_report", broken)
    with pytest.raises(RuntimeError):
        run(sent)
    assert coordinator_a.get(status_url(cohort.study)).json()["state"] == "failed"
    text = page_text(coordinator_a.get(admin_url(cohort.study)).content.decode())
    assert "could not be computed" in text
    assert len(sent) == 1


def test_the_page_speaks_chinese_while_the_report_is_computed(coordinator_a, cohort, large, sent, settings):
    coordinator_a.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    text = page_text(coordinator_a.get(admin_url(cohort.study)).content.decode())
    assert "您的中心（RPA）的队列报告正在计算" in text
    assert sent[0][1]["language"] == "zh-hans"
    run(sent)
    text = page_text(coordinator_a.get(admin_url(cohort.study)).content.decode())
    assert "正在计算" not in text
    assert "表 1. 基线特征" in text


def test_a_small_cohort_is_still_computed_in_the_request(coordinator_a, cohort, sent):
    text = page_text(coordinator_a.get(admin_url(cohort.study)).content.decode())
    assert "Table 1" in text and COMPUTING not in text
    assert coordinator_a.get(admin_url(cohort.study), {"format": "json"}).json()["n_patients"] == 4
    assert sent == []
