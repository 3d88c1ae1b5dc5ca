"""A censored laboratory result typed on the visit page, as a coordinator has it from the laboratory's report:
"<<10" is refused beside the anti-dsDNA field with the rule, "<10" is saved, and the visit page and the
patient's chart show "<10", in English and in Chinese. Screenshots go to test-artifacts/."""

from __future__ import annotations

import pytest

from followup.constants import VisitOutcome
from followup.models import Result, Visit
from tests.e2e import test_coordinator_browser as coordinator_day
from tests.e2e.test_coordinator_browser import sign_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# The coordinator's day's patient (baseline recorded, M3 open) and coordinator.
clinical = coordinator_day.clinical
coordinator = coordinator_day.coordinator

REFUSED = {
    "en": "write one of <, <=, >=, > before the number",
    "zh-hans": "请在数字前写 <、<=、>=、> 之一",
}


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_anti_dsdna_below_the_limit_is_typed_saved_and_shown_with_its_sign(
    page, live, clinical, coordinator, artifacts, language
):
    m3 = clinical.visit("M3")
    sign_in(page, live, coordinator.username)
    if language != "en":
        with page.expect_navigation():
            page.select_option("#language-select", language)
    url = f"{live}/admin/followup/visit/{m3.pk}/change/"
    page.goto(url)
    page.fill("#id_actual_date", "2025-06-02")
    page.fill("#id_ADSDNA_value", "<<10")
    with page.expect_navigation():
        page.click('input[name="_save"]')
    row = page.locator(".form-row.field-ADSDNA_value")
    assert REFUSED[language] in row.locator(".errorlist").inner_text(), row.inner_text()
    assert page.input_value("#id_ADSDNA_value") == "<<10"
    assert not Result.objects.filter(visit=m3).exists()
    page.screenshot(path=str(artifacts / f"visit-censored-refused-{language}.png"), full_page=True)

    page.fill("#id_ADSDNA_value", "<10")
    with page.expect_navigation():
        page.click('input[name="_complete"]')
    stored = Result.objects.get(visit=m3, code="ADSDNA")
    assert (stored.comparator, stored.value) == ("<", 10)
    assert Visit.objects.get(pk=m3.pk).outcome == VisitOutcome.COMPLETED

    page.goto(url)
    assert page.input_value("#id_ADSDNA_value") == "<10"
    results = page.locator("#results-group")
    cells = [" ".join(t.split()) for t in results.locator("td.field-shown_value p").all_inner_texts()]
    assert "<10" in cells, cells
    page.screenshot(path=str(artifacts / f"visit-censored-saved-{language}.png"), full_page=True)

    page.goto(f"{live}/admin/patients/patient/{clinical.patient.pk}/change/")
    charts = page.locator(".field-charts").inner_html()
    assert "<!-- &lt;10 -->" in charts  # the point labelled with its sign on the anti-dsDNA chart
    page.locator(".field-charts").screenshot(path=str(artifacts / f"patient-censored-chart-{language}.png"))
