"""A worklist section longer than the page shows, in a real browser (English and Chinese): eight patients of one
site infused on 2025-03-03 (tests.factories defaults) have more than 50 overdue visits; the worklist lists the
first 50, says how many there are, and its link opens the visits list with exactly those visits, none of the
other site's. The same for 51 adverse events to code to MedDRA, a data manager's task (a coordinator of the
site is not given it). Screenshots go to test-artifacts/worklist-full-<language>-<step>.png.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from followup import constants as c
from followup.constants import VisitState
from followup.models import Visit
from followup.selectors import WORKLIST_ROWS
from followup.services import ae_record, meddra_release_load
from patients.constants import INACTIVE_STATUSES
from registry import constants as rc
from tests.e2e import browser
from tests.factories import make_clinical, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PASSWORD = "Browser-worklist-full-2026"
WORDS = {
    "en": {
        "heading": "Overdue visits ({total})",
        "more": "The first {shown} of {total}. See them all in the list",
        "link": "See them all in the list",
        "counted": "{total} visits",
        "to_code": "Adverse events to code to MedDRA ({total})",
        "events": "{total} adverse events",
    },
    "zh-hans": {
        "heading": "逾期访视 ({total})",
        "more": "共 {total} 项，此处列出前 {shown} 项。 在列表中查看全部",
        "link": "在列表中查看全部",
        "counted": "{total} 访视",
        "to_code": "待进行 MedDRA 编码的不良事件 ({total})",
        "events": "{total} 不良事件",
    },
}


SAMPLE = Path(__file__).resolve().parent.parent / "followup" / "meddra_sample"


def sign_in(page, live: str, username: str, language: str) -> None:
    browser.sign_in(page, live, username, PASSWORD, language)


@pytest.fixture
def sites():
    """Eight patients at one site (the coordinator's), one at another site."""
    first = make_clinical()
    for _ in range(7):
        make_clinical(site=first.site, study=first.study, lot=first.lot)
    return first, make_clinical()


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_overdue_section_shows_its_first_50_and_links_to_all_of_them(page, live, sites, artifacts, language):
    words = WORDS[language]
    ours, theirs = sites
    coordinator = make_user(f"worklist.full.{language}", ours.site, role=rc.Role.COORDINATOR, password=PASSWORD)
    overdue = (
        Visit.objects.for_user(coordinator)
        .in_state(VisitState.OVERDUE)
        .exclude(patient__status__in=INACTIVE_STATUSES)
        .order_by("window_end", "patient__subject_code", "pk")
    )
    expected = [f"{v.patient.subject_code} – {v.code}" for v in overdue.select_related("patient")]
    total = len(expected)
    assert total > WORKLIST_ROWS  # eight patients, every visit from BL to the last closed window
    assert Visit.objects.in_state(VisitState.OVERDUE).filter(patient=theirs.patient).exists()

    sign_in(page, live, coordinator.username, language)
    assert page.locator("#overdue").inner_text() == words["heading"].format(total=total)
    rows = page.locator("#overdue + table tr:not(.more)")
    assert rows.count() == WORKLIST_ROWS
    assert rows.locator("td:first-child a").all_inner_texts() == expected[:WORKLIST_ROWS]  # the most urgent first
    more = page.locator("#overdue + table tr.more")
    assert " ".join(more.inner_text().split()) == words["more"].format(shown=WORKLIST_ROWS, total=total)
    per_site = page.locator("#worklist .site-counts tbody tr").all_inner_texts()
    assert [row.split("\t")[:3] for row in per_site] == [[ours.site.code, "0", str(total)]]
    more.screenshot(path=str(artifacts / f"worklist-full-{language}-1-more.png"))
    page.screenshot(path=str(artifacts / f"worklist-full-{language}-1-worklist.png"), full_page=True)

    with page.expect_navigation():
        more.get_by_role("link", name=words["link"], exact=True).click()
    assert page.url == f"{live}/admin/followup/visit/?worklist=overdue"
    assert page.locator("p.paginator").inner_text().strip() == words["counted"].format(total=total)
    listed = page.locator("#result_list tbody tr")
    assert listed.count() == total
    patients = listed.locator("th.field-patient a, td.field-patient a").all_inner_texts()
    codes = listed.locator("td.field-code").all_inner_texts()
    assert [f"{p} – {c}" for p, c in zip(patients, codes, strict=True)] == expected  # as the worklist orders them
    assert theirs.patient.subject_code not in page.locator("#content").inner_text()
    assert theirs.site.code not in page.locator("#changelist-filter").inner_text()  # nor is the other site offered
    page.screenshot(path=str(artifacts / f"worklist-full-{language}-2-list.png"), full_page=True)


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_events_to_code_show_their_first_50_to_the_data_manager_and_link_to_all(page, live, artifacts, language):
    words = WORDS[language]
    clinical, theirs = make_clinical(), make_clinical()
    meddra_release_load(directory=SAMPLE, version="99.0")
    fields = {
        "category": c.AECategory.INFECTION,
        "grade": c.CTCAEGrade.MILD,
        "relatedness": c.Relatedness.UNLIKELY,
        "expected": True,
    }
    for number in range(WORKLIST_ROWS + 1):
        onset = dt.date(2025, 4, 1) + dt.timedelta(days=number)
        ae_record(patient=clinical.patient, term=f"Event {number:02d}", onset_date=onset, aware_date=onset, **fields)
    ae_record(
        patient=theirs.patient, term="Theirs", onset_date=dt.date(2025, 4, 1), aware_date=dt.date(2025, 4, 1), **fields
    )
    manager = make_user(f"to.code.{language}", clinical.site, role=rc.Role.DATA_MANAGER, password=PASSWORD)
    coordinator = make_user(f"not.to.code.{language}", clinical.site, role=rc.Role.COORDINATOR, password=PASSWORD)
    total = WORKLIST_ROWS + 1

    sign_in(page, live, coordinator.username, language)
    assert page.locator("#uncoded").count() == 0  # coding is not the coordinator's task
    page.context.clear_cookies()

    sign_in(page, live, manager.username, language)
    assert page.locator("#uncoded").inner_text() == words["to_code"].format(total=total)
    rows = page.locator("#uncoded + table tr:not(.more) td:first-child a").all_inner_texts()
    code = clinical.patient.subject_code
    assert rows == [f"{code} – Event {number:02d}" for number in range(WORKLIST_ROWS)]  # the oldest onset first
    more = page.locator("#uncoded + table tr.more")
    assert " ".join(more.inner_text().split()) == words["more"].format(shown=WORKLIST_ROWS, total=total)
    page.locator("#uncoded").scroll_into_view_if_needed()
    more.screenshot(path=str(artifacts / f"worklist-full-{language}-3-to-code.png"))

    with page.expect_navigation():
        more.get_by_role("link", name=words["link"], exact=True).click()
    assert page.url == f"{live}/admin/followup/adverseevent/?to_code=yes"
    assert page.locator("p.paginator").inner_text().strip() == words["events"].format(total=total)
    listed = page.locator("#result_list tbody tr td.field-term").all_inner_texts()
    assert listed == [f"Event {number:02d}" for number in range(total)]
    assert "Theirs" not in page.locator("#content").inner_text()
    page.screenshot(path=str(artifacts / f"worklist-full-{language}-4-events-to-code.png"), full_page=True)
