"""A query's life in a real browser: the monitor raises a query on a creatinine value from the visit page, the
coordinator finds it on the worklist, corrects the value and answers, the monitor closes it; in English and
in Chinese. Screenshots go to test-artifacts/ (queries-*.png).

The reference patient (tests.factories defaults) was infused on 2025-03-03 in Nanjing; BL and M1 are
recorded in progress before the browser opens, creatinine 70 and 75 µmol/L (no edit check fires).
"""

from __future__ import annotations

import datetime as dt

import pytest

from followup.models import Result
from followup.services import visit_record
from quality.constants import QueryState
from quality.models import Query
from registry import constants as rc
from tests.factories import DAY_ZERO, make_clinical, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PASSWORD = "Browser-queries-2026"
WORDS = {
    "en": {"raise": "Raise query on CREAT", "panel": "Queries", "answered": "Answered", "closed": "Closed"},
    "zh-hans": {"raise": "对 CREAT 提出质疑", "panel": "质疑", "answered": "已回复", "closed": "已关闭"},
}


@pytest.fixture
def clinical():
    clinical = make_clinical()
    visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, results={"CREAT": "70"}, status="in_progress")
    visit_record(
        visit=clinical.visit("M1"), actual_date=dt.date(2025, 4, 2), results={"CREAT": "75"}, status="in_progress"
    )
    return clinical


def window(chromium, live, username: str, language: str):
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, locale="en-GB")
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto(f"{live}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.click("#login-form input[type=submit]")
    assert page.url == f"{live}/admin/", page.url
    if language != "en":
        with page.expect_navigation():
            page.select_option("#language-select", language)
    return context, page


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_monitor_raises_coordinator_corrects_and_answers_monitor_closes(chromium, live, clinical, artifacts, language):
    words = WORDS[language]
    monitor = make_user(f"monitor.{language}", clinical.site, role=rc.Role.MONITOR, password=PASSWORD)
    coordinator = make_user(f"coordinator.{language}", clinical.site, role=rc.Role.COORDINATOR, password=PASSWORD)
    m1 = clinical.visit("M1")
    visit_url = f"{live}/admin/followup/visit/{m1.pk}/change/"
    shots = []

    def shot(page, name):
        path = f"/tmp/q20a-{language}-{name}.png"
        page.screenshot(path=path, full_page=True)
        page.screenshot(path=str(artifacts / f"queries-{language}-{name}.png"), full_page=True)
        shots.append(path)

    # The monitor raises a query on the creatinine value, from the visit page.
    monitor_context, page = window(chromium, live, monitor.username, language)
    page.goto(visit_url)
    link = page.locator('a.raise-query[data-field="CREAT"]')
    assert link.inner_text() == words["raise"]
    with page.expect_navigation():
        link.click()
    assert "75 umol/L" in page.locator("#current-value").inner_text()
    assert page.input_value("#id_field") == "CREAT"
    page.fill("#id_text", "Creatinine 75 umol/L: the source document says 80. Please check.")
    shot(page, "1-raise")
    with page.expect_navigation():
        page.click("#raise-query button[type=submit]")
    assert page.url == visit_url
    query = Query.objects.get()
    assert (query.field, query.state, query.raised_by_id) == ("CREAT", QueryState.OPEN, monitor.pk)
    assert words["panel"] in page.locator("#query-panel h2").inner_text()
    page.wait_for_selector(".field-CREAT_value .query-mark")
    assert page.locator(".query-mark").all_inner_texts() == ["? 1"]  # once, beside the CREAT value
    shot(page, "2-visit-marked")

    # The coordinator finds it on the worklist, corrects the value, and answers.
    coordinator_context, cpage = window(chromium, live, coordinator.username, language)
    row = cpage.locator("#queries + table a", has_text=f"#{query.pk}")
    assert row.count() == 1
    shot(cpage, "3-worklist")
    cpage.goto(visit_url)
    cpage.fill("#id_CREAT_value", "80")
    cpage.fill("#id_reason", "Corrected from the source document")
    with cpage.expect_navigation():
        cpage.click('input[name="_save"]')
    assert Result.objects.get(visit=m1, code="CREAT").value == 80
    cpage.goto(f"{live}/admin/quality/query/{query.pk}/change/")
    assert cpage.locator('button[value="close"]').count() == 0  # not the coordinator's to close
    cpage.fill("#id_text", "Corrected to 80 umol/L from the source document.")
    with cpage.expect_navigation():
        cpage.click('button[value="answer"]')
    assert words["answered"] in cpage.locator(".field-state").inner_text()
    shot(cpage, "4-answered")
    coordinator_context.close()

    # The monitor reads the thread (the value then at each message) and closes the query.
    page.goto(f"{live}/admin/quality/query/{query.pk}/change/")
    thread = page.locator("#query-thread tbody tr")
    assert thread.count() == 2
    assert "75 umol/L" in thread.nth(0).inner_text() and "80 umol/L" in thread.nth(1).inner_text()
    with page.expect_navigation():
        page.click('button[value="close"]')
    assert words["closed"] in page.locator(".field-state").inner_text()
    shot(page, "5-closed")
    monitor_context.close()
    query.refresh_from_db()
    assert query.state == QueryState.CLOSED
    assert list(query.messages.values_list("kind", flat=True)) == ["raised", "answer", "close"]
