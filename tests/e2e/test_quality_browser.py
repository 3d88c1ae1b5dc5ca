"""Data quality in a real browser, one walk through a creatinine value's life, in English and in Chinese:

1. the monitor raises a query on the M1 creatinine (75 umol/L) from the visit page;
2. the coordinator finds it on the worklist and corrects the value, first to 180 by a slip: the creatinine
   edit check opens its own query (more than 50% above the baseline's 70; the eGFR check its own too), and
   the correction to 80 closes them with a note; the coordinator answers the monitor's query;
3. the monitor reads the thread (the value at each message), closes the query and verifies the visit
   against source;
4. the investigator signs the visit: the page shows the meaning, a wrong password is refused, the right one
   signs;
5. the data manager locks the patient: the visit page is read only with the reason, a new adverse event is
   refused in the admin, and the partner API answers 423 to a correction of the visit and to a new adverse
   event.

The reference patient (tests.factories defaults) was infused on 2025-03-03 in Nanjing; BL and M1 are recorded
in progress before the browser opens, creatinine 70 and 75 umol/L (no edit check fires). Screenshots go to
test-artifacts/quality-<language>-<step>.png (and /tmp/).
"""

from __future__ import annotations

import datetime as dt
import shutil

import pytest

from followup.models import Result
from followup.services import visit_record
from quality.constants import QueryState, Resolution
from quality.models import Lock, Query, Signature, SourceVerification
from registry import constants as rc
from registry.api_keys import api_key_issue
from registry.models import ApiKeyScope
from tests.api.conftest import adverse_event_payload, call, client_for, visit_record_payload
from tests.e2e import browser
from tests.factories import DAY_ZERO, make_clinical, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PASSWORD = "Browser-quality-2026"
REASON = "Source documents under review"
WORDS = {
    "en": {
        "raise": "Raise query on CREAT",
        "panel": "Queries",
        "answered": "Answered",
        "closed": "Closed",
        "verify": "Verify against source",
        "verified": "Verified against source:",
        "sign": "Sign",
        "meaning": "Meaning of this signature",
        "wrong": "The password is not correct",
        "signed": "Signed:",
        "lock": "Lock the patient",
        "read_only": f"Read only: Patient locked: {REASON}",
        "refused": f"Patient locked: {REASON}",
    },
    "zh-hans": {
        "raise": "对 CREAT 提出质疑",
        "panel": "质疑",
        "answered": "已回复",
        "closed": "已关闭",
        "verify": "源数据核查",
        "verified": "已完成源数据核查",
        "sign": "签名",
        "meaning": "签名的含义",
        "wrong": "密码不正确",
        "signed": "已签名",
        "lock": "锁定患者",
        "read_only": f"只读：患者已锁定：{REASON}",
        "refused": f"患者已锁定：{REASON}",
    },
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
    return browser.window(chromium, live, username, PASSWORD, language)


def save_creatinine(page, visit_url: str, value: str, reason: str) -> None:
    page.goto(visit_url)
    page.fill("#id_CREAT_value", value)
    page.fill("#id_reason", reason)
    with page.expect_navigation():
        page.click('input[name="_save"]')


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_a_creatinine_value_from_query_to_lock(chromium, live, clinical, artifacts, language):
    words = WORDS[language]
    people = {
        role: make_user(f"{role}.{language}", clinical.site, role=role, password=PASSWORD)
        for role in (rc.Role.MONITOR, rc.Role.COORDINATOR, rc.Role.INVESTIGATOR, rc.Role.DATA_MANAGER)
    }
    m1 = clinical.visit("M1")
    visit_url = f"{live}/admin/followup/visit/{m1.pk}/change/"

    def shot(page, name):
        path = artifacts / f"quality-{language}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shutil.copy(path, f"/tmp/quality-{language}-{name}.png")

    # 1. The monitor raises a query on the creatinine value, from the visit page.
    monitor_context, page = window(chromium, live, people[rc.Role.MONITOR].username, language)
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
    query = Query.objects.get(rule="")
    assert (query.field, query.state) == ("CREAT", QueryState.OPEN)
    assert words["panel"] in page.locator("#query-panel h2").inner_text()
    page.wait_for_selector(".field-CREAT_value .query-mark")
    assert page.locator(".query-mark").all_inner_texts() == ["? 1"]  # once, beside the CREAT value
    shot(page, "2-visit-marked")

    # 2. The coordinator finds it on the worklist and corrects the value: a slip first (180), which the
    # creatinine edit check questions by itself, then 80, which closes the check's query.
    coordinator_context, cpage = window(chromium, live, people[rc.Role.COORDINATOR].username, language)
    assert cpage.locator("#queries + table a", has_text=f"#{query.pk}").count() == 1
    shot(cpage, "3-worklist")
    save_creatinine(cpage, visit_url, "180", "Corrected from the source document")
    check = Query.objects.get(rule="creatinine_rise")
    assert check.state == QueryState.OPEN and check.target.code == "CREAT"
    cpage.goto(visit_url)
    assert cpage.locator(f"#query-panel tr.query-open a:text-is('#{check.pk}')").count() == 1
    shot(cpage, "4-edit-check-opened")
    save_creatinine(cpage, visit_url, "80", "Typing slip: 80 per the source document")
    assert Result.objects.get(visit=m1, code="CREAT").value == 80
    check.refresh_from_db()
    assert (check.state, check.resolution) == (QueryState.CLOSED, Resolution.CORRECTED)
    assert check.messages.last().value == "80 umol/L"
    # The eGFR derived from 180 fell by more than 30% from baseline: that check opened and closed itself too.
    assert set(Query.objects.exclude(rule="").values_list("rule", "state", "resolution")) == {
        ("creatinine_rise", QueryState.CLOSED, Resolution.CORRECTED),
        ("egfr_drop", QueryState.CLOSED, Resolution.CORRECTED),
    }
    cpage.goto(visit_url)
    assert cpage.locator(f"#query-panel tr.query-closed a:text-is('#{check.pk}')").count() == 1
    shot(cpage, "5-edit-check-closed")
    cpage.goto(f"{live}/admin/quality/query/{query.pk}/change/")
    assert cpage.locator('button[value="close"]').count() == 0  # not the coordinator's to close
    cpage.fill("#id_text", "Corrected to 80 umol/L from the source document.")
    with cpage.expect_navigation():
        cpage.click('button[value="answer"]')
    assert words["answered"] in cpage.locator(".field-state").inner_text()
    shot(cpage, "6-answered")
    coordinator_context.close()

    # 3. The monitor reads the thread (the value at each message), closes the query and verifies the visit.
    page.goto(f"{live}/admin/quality/query/{query.pk}/change/")
    thread = page.locator("#query-thread tbody tr")
    assert thread.count() == 2
    assert "75 umol/L" in thread.nth(0).inner_text() and "80 umol/L" in thread.nth(1).inner_text()
    with page.expect_navigation():
        page.click('button[value="close"]')
    assert words["closed"] in page.locator(".field-state").inner_text()
    shot(page, "7-closed")
    query.refresh_from_db()
    assert query.state == QueryState.CLOSED
    assert list(query.messages.values_list("kind", flat=True)) == ["raised", "answer", "close"]
    page.goto(visit_url)
    with page.expect_navigation():
        page.locator("a.quality-action", has_text=words["verify"]).click()
    with page.expect_navigation():
        page.click('input[name="_confirm"]')
    assert page.url == visit_url
    assert words["verified"] in page.locator(".messagelist").inner_text()
    assert SourceVerification.objects.get(cleared_at__isnull=True).visit_id == m1.pk
    monitor_context.close()

    # 4. The investigator signs the visit: the meaning shown, a wrong password refused, then the right one.
    context, page = window(chromium, live, people[rc.Role.INVESTIGATOR].username, language)
    page.goto(visit_url)
    with page.expect_navigation():
        page.locator("a.quality-action", has_text=words["sign"]).first.click()
    assert words["meaning"] in page.locator("#signature-meaning").inner_text()
    page.fill("#id_password", "not my password")
    with page.expect_navigation():
        page.click('input[name="_confirm"]')
    assert words["wrong"] in page.locator("#content").inner_text()
    assert not Signature.objects.exists()
    page.fill("#id_password", PASSWORD)
    shot(page, "8-sign")
    with page.expect_navigation():
        page.click('input[name="_confirm"]')
    assert page.url == visit_url
    assert words["signed"] in page.locator(".messagelist").inner_text()
    assert Signature.objects.get().visit_id == m1.pk
    context.close()

    # 5. The data manager locks the patient; the visit page is read only and says why.
    context, page = window(chromium, live, people[rc.Role.DATA_MANAGER].username, language)
    page.goto(f"{live}/admin/patients/patient/{clinical.patient.pk}/change/")
    with page.expect_navigation():
        page.locator("a.quality-action", has_text=words["lock"]).click()
    page.fill("#id_reason", REASON)
    with page.expect_navigation():
        page.click('input[name="_confirm"]')
    assert Lock.objects.get().patient_id == clinical.patient.pk
    page.goto(visit_url)
    assert words["read_only"] in page.locator(".messagelist").inner_text()
    assert page.locator('input[name="_save"]').count() == 0
    shot(page, "9-locked-visit")

    # A new adverse event for the patient is refused in the admin, beside the form.
    page.goto(f"{live}/admin/followup/adverseevent/add/")
    page.evaluate(
        """(pk) => { const s = document.querySelector('#id_patient');
        s.add(new Option('patient', pk, true, true)); }""",
        str(clinical.patient.pk),
    )
    page.fill("#id_term", "Fever")
    page.select_option("#id_category", "other")
    page.fill("#id_onset_date", "2025-05-02")
    page.select_option("#id_grade", "1")
    page.select_option("#id_relatedness", "unlikely")
    page.fill("#id_aware_date", "2025-05-02")
    with page.expect_navigation():
        page.click('input[name="_save"]')
    assert words["refused"] in " ".join(page.locator(".errornote, .errorlist").all_inner_texts())
    shot(page, "10-refused-ae")
    context.close()

    # The partner API answers 423 to a correction of the visit and to a new adverse event; nothing changed.
    _, raw = api_key_issue(site=clinical.site, name=f"partner-{language}", scope=ApiKeyScope.READ_WRITE)
    client = client_for(raw)
    etag = call(client, "GET", f"/api/v1/visits/{m1.pk}/")["ETag"]
    correction = visit_record_payload(actual_date="2025-04-02", results={"CREAT": {"value": 95}})
    response = call(client, "POST", f"/api/v1/visits/{m1.pk}/record/", correction, **{"If-Match": etag})
    assert response.status_code == 423, response.content
    assert response.json()["errors"][0]["message"] == f"Patient locked: {REASON}"
    response = call(
        client,
        "POST",
        "/api/v1/adverse-events/",
        adverse_event_payload(clinical.study.code, clinical.patient.subject_code),
    )
    assert response.status_code == 423
    assert Result.objects.get(visit=m1, code="CREAT").value == 80
    # Neither signing nor locking changed the visit: its source verification holds.
    assert SourceVerification.objects.get(cleared_at__isnull=True).visit_id == m1.pk
