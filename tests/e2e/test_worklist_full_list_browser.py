"""A worklist section longer than the page shows, in a real browser (English and Chinese): eight patients of one
site infused on 2025-03-03 (tests.factories defaults) have more than 50 overdue visits; the worklist lists the
first 50, says how many there are, and its link opens the visits list with exactly those visits, none of the
other site's. Screenshots go to test-artifacts/worklist-full-<language>-<step>.png.
"""

from __future__ import annotations

import pytest

from followup.constants import VisitState
from followup.models import Visit
from followup.selectors import WORKLIST_ROWS
from patients.constants import INACTIVE_STATUSES
from registry import constants as rc
from tests.factories import make_clinical, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PASSWORD = "Browser-worklist-full-2026"
WORDS = {
    "en": {
        "heading": "Overdue visits ({total})",
        "more": "The first {shown} of {total}. See them all in the list",
        "link": "See them all in the list",
        "counted": "{total} visits",
    },
    "zh-hans": {
        "heading": "逾期访视 ({total})",
        "more": "共 {total} 项，此处列出前 {shown} 项。 在列表中查看全部",
        "link": "在列表中查看全部",
        "counted": "{total} 访视",
    },
}


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

    page.goto(f"{live}/admin/login/?next=/admin/")
    page.fill("#id_username", coordinator.username)
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.click("#login-form input[type=submit]")
    if language != "en":
        with page.expect_navigation():
            page.select_option("#language-select", language)

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
