"""The worklist, the patient's print view and saving a visit, in a real browser (English and Chinese).
Screenshots go to test-artifacts/.

The tests run on the real clock. The reference patient (tests.factories defaults) was infused on 2025-03-03
in Nanjing: every visit of it from D7 on whose window has closed is overdue. A second patient of the same
site was infused 20 days before today: its BL and D7 are overdue, and its M1 window opens in 3 days.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest

from followup.constants import VisitOutcome
from followup.services import visit_record
from registry import constants as rc
from tests.factories import DAY_ZERO, make_clinical, make_lot, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PASSWORD = "Browser-worklist-2026"
WORDS = {
    "en": {"late": r"(\d+) days? late", "in": r"in (\d+) days?", "today": "Today at"},
    "zh-hans": {"late": r"逾期 (\d+) 天", "in": r"(\d+) 天后", "today": "今天"},
}


@pytest.fixture
def clinical():
    clinical = make_clinical()
    visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, sledai_items=["rash"], results={"CREAT": "70"})
    return clinical


@pytest.fixture
def recent(clinical):
    today = dt.datetime.now(clinical.site.zone).date()
    lot = make_lot(clinical.study, clinical.site, lot_number="UC-WL-RECENT", expires_on=today + dt.timedelta(days=365))
    return make_clinical(site=clinical.site, study=clinical.study, lot=lot, day_zero=today - dt.timedelta(days=20))


@pytest.fixture
def coordinator(clinical):
    return make_user("browser.worklist", clinical.site, role=rc.Role.COORDINATOR, password=PASSWORD)


def sign_in(page, base: str, username: str, language: str = "en") -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.click("#login-form input[type=submit]")
    assert page.url == f"{base}/admin/", page.url
    if language != "en":
        with page.expect_navigation():
            page.select_option("#language-select", language)


def section_rows(page, section: str) -> list[tuple[str, str]]:
    """(link text, last cell) of each row of the worklist table that follows the h2 `section`."""
    return page.evaluate(
        """(id) => {
            const table = document.getElementById(id).nextElementSibling;
            return [...table.querySelectorAll('tr')].map(tr => {
                const a = tr.querySelector('a'); const cells = tr.querySelectorAll('td');
                return [a ? a.textContent.trim() : '', cells[cells.length - 1].textContent.trim()];
            });
        }""",
        section,
    )


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_worklist_lists_visits_by_date_with_the_days_late_or_left(
    page, live, clinical, recent, coordinator, artifacts, language
):
    words = WORDS[language]
    sign_in(page, live, coordinator.username, language)
    worklist = page.locator("#worklist")
    today = dt.datetime.now(clinical.site.zone).date().isoformat()
    assert words["today"] in worklist.inner_text() and today in page.locator("#site-today").inner_text()

    overdue = section_rows(page, "overdue")
    late = [int(re.fullmatch(words["late"], days).group(1)) for _, days in overdue]
    assert late == sorted(late, reverse=True), late  # the window that closed first, first
    old, new = clinical.patient.subject_code, recent.patient.subject_code
    assert overdue[0][0] == f"{old} – D7"
    assert [link for link, _ in overdue if link.startswith(new)] == [f"{new} – BL", f"{new} – D7"]
    assert late[-1] == 11 and overdue[-1][0] == f"{new} – D7"  # D7 (7 ± 2) closed 11 days ago
    upcoming = dict(section_rows(page, "upcoming"))
    assert re.fullmatch(words["in"], upcoming[f"{new} – M1"]).group(1) == "3"  # M1 opens on day 23

    # The sections: visits, then reports, then open findings (the severe first), then routine checks.
    order = page.evaluate("() => [...document.querySelectorAll('#worklist h2[id]')].map(h => h.id)")
    assert order.index("overdue") < order.index("due") < order.index("signals") < order.index("routine-checks")
    assert order[-1] == "quality"
    dashboard = page.locator("#quality-dashboard").inner_text()
    assert clinical.site.code in dashboard and clinical.study.code in dashboard
    page.screenshot(path=str(artifacts / f"worklist-days-{language}.png"), full_page=True)


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_patient_print_view_fits_one_page(page, live, clinical, coordinator, artifacts, language):
    sign_in(page, live, coordinator.username, language)
    page.goto(f"{live}/admin/patients/patient/{clinical.patient.pk}/change/")
    assert page.locator("#add-adverse-event").is_visible() and page.locator("#add-medication").is_visible()
    page.screenshot(path=str(artifacts / f"patient-links-{language}.png"))
    href = page.locator("#print-summary").get_attribute("href")
    assert href == f"/admin/patients/patient/{clinical.patient.pk}/print/"
    page.goto(f"{live}{href}")
    assert clinical.patient.subject_code in page.locator("h1").inner_text()
    assert page.locator(".toolbar").is_visible()
    page.screenshot(path=str(artifacts / f"patient-print-{language}.png"), full_page=True)
    page.emulate_media(media="print")
    assert page.locator(".toolbar").is_hidden()  # the buttons do not print
    page.screenshot(path=str(artifacts / f"patient-print-paper-{language}.png"), full_page=True)
    pdf = page.pdf(format="A4")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert pages == 1, f"the summary prints on {pages} pages"

    # "Add adverse event" opens the form with this patient chosen.
    page.emulate_media(media="screen")
    page.goto(f"{live}/admin/patients/patient/{clinical.patient.pk}/change/")
    with page.expect_navigation():
        page.click("#add-adverse-event")
    chosen = page.locator("#id_patient").input_value()
    assert chosen == str(clinical.patient.pk)


def test_saving_a_visit_returns_to_the_worklist_or_opens_the_next_overdue(page, live, clinical, coordinator, artifacts):
    d7, m1 = clinical.visit("D7"), clinical.visit("M1")
    sign_in(page, live, coordinator.username)
    with page.expect_navigation():
        page.locator("#worklist").get_by_role("link", name=f"{clinical.patient.subject_code} – D7", exact=True).click()
    page.fill("#id_actual_date", (DAY_ZERO + dt.timedelta(days=7)).isoformat())
    page.screenshot(path=str(artifacts / "visit-complete-next.png"), full_page=True)
    with page.expect_navigation():
        page.click('input[name="_complete_next"]')
    assert page.url == f"{live}/admin/followup/visit/{m1.pk}/change/"  # the next overdue visit
    d7.refresh_from_db()
    assert d7.outcome == VisitOutcome.COMPLETED
    page.fill("#id_actual_date", (DAY_ZERO + dt.timedelta(days=30)).isoformat())
    with page.expect_navigation():
        page.click('input[name="_complete"]')
    assert page.url == f"{live}/admin/"  # back to the worklist
    assert page.locator(".messagelist .success").count() == 1
    overdue = [link for link, _ in section_rows(page, "overdue")]
    assert (
        f"{clinical.patient.subject_code} – D7" not in overdue
        and f"{clinical.patient.subject_code} – M1" not in overdue
    )
    page.screenshot(path=str(artifacts / "visit-saved-worklist.png"), full_page=True)
