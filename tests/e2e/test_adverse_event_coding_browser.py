"""Coding an adverse event to MedDRA in a real browser, in English and in Chinese: a coordinator sees the coding
read only and, adding the field to the page by hand, is refused with the rule's words and nothing is saved; a
data manager of the site finds the LLT by name in the coding field and codes the event.

The release is the made-up dictionary of tests/followup/meddra_sample/. Screenshots go to
test-artifacts/ae-coding-<language>-<step>.png.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from followup import constants as c
from followup.models import MedDRATerm
from followup.services import ae_record, meddra_release_load
from registry import constants as rc
from tests.e2e.browser import window
from tests.factories import make_clinical, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PASSWORD = "Browser-meddra-2026"
SAMPLE = Path(__file__).resolve().parent.parent / "followup" / "meddra_sample"
SHINGLES = 94000001
CODED = (
    "MedDRA 99.0 – LLT 94000001 Invented shingles LLT; PT 93000001 Invented zoster PT; HLT 92000001 Invented "
    "herpes viral HLT; HLGT 91000001 Invented viral infections HLGT; SOC 90000001 Invented infections SOC"
)
WORDS = {
    "en": {
        "title": "{code}: Shingles, left flank (grade 2)",
        "not_coded": "not coded",
        "refused": (
            "MedDRA lowest level term: Only a data manager of the patient's site can code an adverse event to MedDRA."
        ),
        "saved": "was changed successfully",
    },
    "zh-hans": {
        "title": "{code}：Shingles, left flank（2 级）",
        "not_coded": "未编码",
        "refused": "MedDRA 低位语: 只有该患者所在中心的数据管理员可以将不良事件编码为 MedDRA 术语。",
        "saved": "成功修改了",
    },
}


@pytest.fixture
def event():
    clinical = make_clinical()
    meddra_release_load(directory=SAMPLE, version="99.0")
    return ae_record(
        patient=clinical.patient,
        term="Shingles, left flank",
        category=c.AECategory.INFECTION,
        onset_date=dt.date(2025, 5, 8),
        aware_date=dt.date(2025, 5, 10),
        grade=c.CTCAEGrade.MODERATE,
        relatedness=c.Relatedness.UNLIKELY,
        expected=True,
    )


def open_event(chromium, live, username: str, language: str, ae):
    """A browser window of its own, signed in as `username` in `language`, on the event's page."""
    context, page = window(chromium, live, username, PASSWORD, language)
    page.goto(f"{live}/admin/followup/adverseevent/{ae.pk}/change/")
    return context, page


def readonly(page, field: str) -> str:
    return page.locator(f".field-{field} .readonly").inner_text().strip()


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_a_coordinator_cannot_code_an_event_and_a_data_manager_does(chromium, live, event, artifacts, language):
    words = WORDS[language]
    site = event.patient.site
    coordinator = make_user(f"ae.coordinator.{language}", site, role=rc.Role.COORDINATOR, password=PASSWORD)
    manager = make_user(f"ae.manager.{language}", site, role=rc.Role.DATA_MANAGER, password=PASSWORD)
    title = words["title"].format(code=event.patient.subject_code)
    history = event.history.count()

    # The coordinator: the coding shown, not offered.
    context, page = open_event(chromium, live, coordinator.username, language, event)
    assert page.locator("#content h2").first.inner_text() == title
    assert page.locator("#id_meddra_term").count() == 0
    assert (readonly(page, "meddra_term"), readonly(page, "meddra_coding")) == ("-", words["not_coded"])
    page.screenshot(path=str(artifacts / f"ae-coding-{language}-1-coordinator.png"), full_page=True)

    # ... who adds the field to the page by hand and saves: refused with the rule, nothing saved.
    term = MedDRATerm.objects.get(llt_code=SHINGLES)
    page.evaluate(
        """(pk) => { const input = document.createElement('input');
            input.type = 'hidden'; input.name = 'meddra_term'; input.value = pk;
            document.getElementById('adverseevent_form').appendChild(input); }""",
        str(term.pk),
    )
    page.fill("#id_reason", "coding it myself")
    with page.expect_navigation():
        page.click('input[name="_save"]')
    assert page.url.endswith(f"/admin/followup/adverseevent/{event.pk}/change/")
    assert page.locator(".errornote").is_visible()
    assert page.locator("ul.errorlist.nonfield").inner_text().strip() == words["refused"]
    assert page.locator(".messagelist .success").count() == 0
    event.refresh_from_db()
    assert (event.meddra_term_id, event.meddra_llt_code, event.history.count()) == (None, None, history)
    page.screenshot(path=str(artifacts / f"ae-coding-{language}-2-refused.png"), full_page=True)
    context.close()

    # The data manager of the site: finds the LLT by name and codes the event.
    from playwright.sync_api import expect

    context, page = open_event(chromium, live, manager.username, language, event)
    page.click(".field-meddra_term .select2-selection")
    page.fill(".select2-search__field", "shingles")
    # The search's answer: the one current LLT (the old shingles LLT is not current), once the first list is gone.
    expect(page.locator(".select2-results__option")).to_have_count(1)
    choice = page.locator(".select2-results__option", has_text="Invented shingles LLT (94000001)")
    expect(choice).to_have_count(1)
    page.screenshot(path=str(artifacts / f"ae-coding-{language}-3-search.png"), full_page=True)
    choice.click()
    page.fill("#id_reason", "coded to MedDRA")
    with page.expect_navigation():
        page.click('input[name="_continue"]')
    assert words["saved"] in page.locator(".messagelist .success").inner_text()
    assert readonly(page, "meddra_coding") == CODED
    chosen = page.locator(".field-meddra_term .select2-selection__rendered")
    assert chosen.get_attribute("title") == str(term)
    # The chosen term in full, its code and path not cut off by the field's width.
    assert chosen.evaluate("(e) => e.scrollWidth <= e.clientWidth"), chosen.evaluate(
        "(e) => [e.scrollWidth, e.clientWidth]"
    )
    assert page.locator("#content h2").first.inner_text() == title  # the term stays as entered
    event.refresh_from_db()
    assert (event.term, event.meddra_llt_code, event.meddra_soc_code) == ("Shingles, left flank", SHINGLES, 90000001)
    assert event.history.first().history_change_reason == "coded to MedDRA"
    page.screenshot(path=str(artifacts / f"ae-coding-{language}-4-coded.png"), full_page=True)
    context.close()
