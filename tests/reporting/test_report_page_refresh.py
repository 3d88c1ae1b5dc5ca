"""The cohort report page of a large cohort on a registry whose data keep changing: one question is computed by
one task at a time, a report taken less than REPORT_REFRESH_SECONDS ago is shown (saying when) instead of
computed again, the page waits for the report taken after it was drawn, a filter naming other sites asks
nothing new, and a worker whose heartbeat has stopped is said to be unreachable.

REPORT_INLINE_MAX_PATIENTS = 0 makes the hand cohort (tests/reporting/hand_cohort.py) a "large" one.
"""

from __future__ import annotations

import re

import pytest
import time_machine
from django.core.cache import cache
from django.utils import timezone

from core.liveness import WORKER_KEY
from tests.factories import make_patient, make_user
from tests.reporting import test_report_page_background as background
from tests.reporting.hand_cohort import admin_url, page_text
from tests.reporting.test_report_page_background import COMPUTING, run, status_url

pytestmark = pytest.mark.django_db

# The fixtures of the background page's tests.
fresh_cache, large, sent = background.fresh_cache, background.large, background.sent


@pytest.fixture
def coord_a(client, cohort):
    client.force_login(make_user("refresh_coord_a", cohort.site_a))
    return client


def since_of(html: str) -> str:
    return re.search(r"since=([0-9.]+)", html).group(1)


def test_data_changing_while_the_page_is_open_do_not_keep_a_worker_computing(coord_a, cohort, large, sent):
    html = coord_a.get(admin_url(cohort.study)).content.decode()
    assert COMPUTING in page_text(html) and len(sent) == 1
    since = since_of(html)
    for i in range(5):
        # Someone at another site, in another study, registers a patient while the worker computes.
        make_patient(cohort.other_study, cohort.site_c, subject_code=f"X-{i:02d}")
        assert coord_a.get(status_url(cohort.study, since=since)).json()["state"] == "computing"
        coord_a.get(admin_url(cohort.study))  # another load asks nothing new: the question is being computed
    assert len(sent) == 1
    run(sent)
    # The report taken after the page was drawn is the one it waited for, though the data changed meanwhile.
    assert coord_a.get(status_url(cohort.study, since=since)).json()["state"] == "ready"
    make_patient(cohort.other_study, cohort.site_c, subject_code="X-LATE")
    html = coord_a.get(admin_url(cohort.study)).content.decode()
    text = page_text(html)
    assert '<li class="warning report-status"' in html  # a note, not an error
    assert "Table 1" in text
    assert "The registry has changed since. A report is computed again at most every 15 minutes" in text
    assert len(sent) == 1  # shown, not computed again
    with time_machine.travel(timezone.now() + timezone.timedelta(minutes=16)):
        coord_a.get(admin_url(cohort.study))
    assert len(sent) == 2  # a quarter of an hour later, newer data are computed


def test_site_codes_of_other_sites_in_the_address_ask_nothing_new(coord_a, cohort, large, sent):
    for i in range(5):
        text = page_text(coord_a.get(admin_url(cohort.study), {"site": f"RPA,NOPE{i},RPA"}).content.decode())
        assert COMPUTING in text
    assert len(sent) == 1
    assert sent[0][1]["filter"]["site_codes"] == ["RPA"]
    run(sent)
    text = page_text(coord_a.get(admin_url(cohort.study), {"site": "RPA,RPB"}).content.decode())
    assert "Table 1" in text and "sites RPA, RPB" not in text  # the figures are RPA's, and the filter says so


def test_a_filter_naming_only_another_site_shows_no_patient(coord_a, cohort, large, sent):
    response = coord_a.get(admin_url(cohort.study), {"site": "RPB", "format": "json"})
    assert response.status_code == 200 and response.json()["n_patients"] == 0  # no site: nothing to queue
    assert sent == []


def test_a_worker_whose_heartbeat_stopped_is_said_unreachable_and_nothing_is_queued(coord_a, cohort, large, sent):
    cache.set(WORKER_KEY, timezone.now().timestamp() - 600)
    text = page_text(coord_a.get(admin_url(cohort.study)).content.decode())
    assert "cannot be computed now: the background worker cannot be reached" in text
    assert sent == []
    cache.set(WORKER_KEY, timezone.now().timestamp())  # the worker is back
    assert COMPUTING in page_text(coord_a.get(admin_url(cohort.study)).content.decode())
    assert len(sent) == 1


def test_one_user_asking_question_after_question_has_two_computations_queued_at_most(coord_a, cohort, large, sent):
    for day in range(1, 6):
        response = coord_a.get(admin_url(cohort.study), {"enrolled_from": f"2020-01-0{day}"})
        assert response.status_code == 200
    assert len(sent) == 2
    text = page_text(response.content.decode())
    assert "Other cohort reports you asked for are being computed" in text
    waiting = status_url(cohort.study, enrolled_from="2020-01-05")
    assert coord_a.get(waiting).json()["state"] == "busy"  # the page keeps waiting, it does not reload
    # Another user is not held up by this one.
    other = coord_a.__class__()
    other.force_login(make_user("refresh_coord_a2", cohort.site_a))
    other.get(admin_url(cohort.study), {"enrolled_from": "2020-02-01"})
    assert len(sent) == 3
    run(sent[:2])  # the worker gives the first user's slots back
    assert coord_a.get(waiting).json()["state"] == "missing"  # the page reloads, and asks
    coord_a.get(admin_url(cohort.study), {"enrolled_from": "2020-01-05"})
    assert len(sent) == 4 and sent[-1][1]["filter"]["enrolled_from"] == "2020-01-05"
