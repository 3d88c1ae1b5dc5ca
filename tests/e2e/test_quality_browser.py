"""Sign-off and locks in a real browser: the investigator signs a visit, re-entering the password on the page
that shows what the signature means; the data manager locks the patient; the visit page is then read only
with the reason shown, a new adverse event for the patient is refused in the admin, and the partner API
answers 423. In English and in Chinese. Screenshots go to test-artifacts/ (and /tmp/q20b-*.png)."""

from __future__ import annotations

import shutil

import pytest

from followup.services import visit_record
from quality.models import Lock, Signature
from registry import constants as rc
from registry.api_keys import api_key_issue
from registry.models import ApiKeyScope
from tests.api.conftest import adverse_event_payload, call, client_for
from tests.e2e.test_coordinator_browser import BASELINE_ITEMS, PASSWORD, sign_in
from tests.factories import DAY_ZERO, make_clinical, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WORDS = {
    "en": {
        "sign": "Sign",
        "meaning": "Meaning of this signature",
        "wrong": "The password is not correct",
        "signed": "Signed:",
        "lock": "Lock the patient",
        "read_only": "Read only: Patient locked: Source documents under review",
        "refused": "Patient locked: Source documents under review",
    },
    "zh-hans": {
        "sign": "签名",
        "meaning": "签名的含义",
        "wrong": "密码不正确",
        "signed": "已签名",
        "lock": "锁定患者",
        "read_only": "只读：患者已锁定：Source documents under review",
        "refused": "患者已锁定：Source documents under review",
    },
}


def shot(page, artifacts, name: str) -> None:
    path = artifacts / f"q20b-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    shutil.copy(path, f"/tmp/q20b-{name}.png")


def choose_language(page, language: str) -> None:
    if language != "en":
        with page.expect_navigation():
            page.select_option("#language-select", language)


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_investigator_signs_and_data_manager_locks(chromium, live, artifacts, language):
    words = WORDS[language]
    clinical = make_clinical()
    visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, sledai_items=BASELINE_ITEMS, results={"CREAT": "70"})
    investigator = make_user(f"inv.{language}", clinical.site, role=rc.Role.INVESTIGATOR, password=PASSWORD)
    manager = make_user(f"dm.{language}", clinical.site, role=rc.Role.DATA_MANAGER, password=PASSWORD)
    bl = clinical.visit("BL")
    visit_url = f"{live}/admin/followup/visit/{bl.pk}/change/"

    # The investigator signs the baseline visit: a wrong password first, then the right one.
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, locale="en-GB")
    page = context.new_page()
    sign_in(page, live, investigator.username)
    choose_language(page, language)
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
    shot(page, artifacts, f"sign-{language}")
    with page.expect_navigation():
        page.click('input[name="_confirm"]')
    assert page.url == visit_url
    assert words["signed"] in page.locator(".messagelist").inner_text()
    assert Signature.objects.get().visit_id == bl.pk
    context.close()

    # The data manager locks the patient.
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, locale="en-GB")
    page = context.new_page()
    sign_in(page, live, manager.username)
    choose_language(page, language)
    page.goto(f"{live}/admin/patients/patient/{clinical.patient.pk}/change/")
    with page.expect_navigation():
        page.locator("a.quality-action", has_text=words["lock"]).click()
    page.fill("#id_reason", "Source documents under review")
    with page.expect_navigation():
        page.click('input[name="_confirm"]')
    assert Lock.objects.get().patient_id == clinical.patient.pk

    # The visit page is read only and says why.
    page.goto(visit_url)
    assert words["read_only"] in page.locator(".messagelist").inner_text()
    assert page.locator('input[name="_save"]').count() == 0
    shot(page, artifacts, f"locked-visit-{language}")

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
    assert words["refused"] in page.locator(".errornote, .errorlist").all_inner_texts().__str__()
    shot(page, artifacts, f"refused-ae-{language}")
    context.close()

    # The partner API answers 423.
    _, raw = api_key_issue(site=clinical.site, name=f"partner-{language}", scope=ApiKeyScope.READ_WRITE)
    response = call(
        client_for(raw),
        "POST",
        "/api/v1/adverse-events/",
        adverse_event_payload(clinical.study.code, clinical.patient.subject_code),
    )
    assert response.status_code == 423
    assert response.json()["errors"][0]["message"] == "Patient locked: Source documents under review"
