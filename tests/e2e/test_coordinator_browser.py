"""A coordinator's day in a real browser: sign in, the worklist, recording an overdue visit with the live
SLEDAI-2K total, the computed outcomes, the patient's charts, a refused value, another site's coordinator
kept out, and the Chinese interface. Screenshots of the pages go to test-artifacts/.

The tests run on the real clock. The reference patient (tests.factories defaults) was infused
on 2025-03-03 in Nanjing, so M1 (window 2025-03-26..04-09) has been overdue ever since. The baseline is
recorded before the browser opens: SLEDAI-2K 16, creatinine 70 µmol/L, proteinuria 3 g/24h, C3 0.5 g/L.
"""

from __future__ import annotations

import re

import pytest

from followup.constants import VisitOutcome
from followup.models import Result, Visit
from followup.services import visit_record
from registry import constants as rc
from tests.factories import DAY_ZERO, make_clinical, make_site, make_study, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PASSWORD = "Browser-coordinator-2026"
BASELINE_ITEMS = ["arthritis", "rash", "alopecia", "low_complement", "increased_dna_binding", "proteinuria"]  # 16
SLEDAI_CHART_MARKERS = """() => {
    const chart = [...document.querySelectorAll('.field-charts svg')].find(s => s.innerHTML.includes('SLEDAI-2K'));
    return chart ? chart.querySelectorAll('use[style*="#1f77b4"]').length : 0;
}"""


def person(username: str, site):
    return make_user(username, site, role=rc.Role.COORDINATOR, password=PASSWORD)


@pytest.fixture
def clinical():
    clinical = make_clinical()
    visit_record(
        visit=clinical.visit("BL"),
        actual_date=DAY_ZERO,
        sledai_items=BASELINE_ITEMS,
        results={"CREAT": "70", "PROT24H": "3.0", "C3": "0.5"},
    )
    return clinical


@pytest.fixture
def coordinator(clinical):
    return person("browser.coordinator", clinical.site)


def sign_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.click("#login-form input[type=submit]")
    assert page.url == f"{base}/admin/", page.url


def sledai_markers_in(html: str) -> int:
    """Points on the SLEDAI-2K chart of a patient page's HTML (0 when there is no such chart)."""
    for svg in re.findall(r"<svg.*?</svg>", html, flags=re.S):
        if "<!-- SLEDAI-2K -->" in svg:
            return len(re.findall(r'<use [^>]*style="fill: #1f77b4', svg))
    return 0


def readonly_text(page, field: str) -> str:
    return " ".join(page.locator(f".field-{field} .readonly").first.inner_text().split())


def test_coordinator_records_an_overdue_visit_and_sees_outcomes_and_chart(page, live, clinical, coordinator, artifacts):
    patient_url = f"{live}/admin/patients/patient/{clinical.patient.pk}/change/"
    code = clinical.patient.subject_code
    m1 = clinical.visit("M1")

    sign_in(page, live, coordinator.username)
    worklist = page.locator("#worklist")
    assert worklist.is_visible()
    assert "Your sites today" in worklist.inner_text()
    overdue_link = worklist.get_by_role("link", name=f"{code} – M1", exact=True)
    assert overdue_link.count() == 1
    page.screenshot(path=str(artifacts / "worklist.png"), full_page=True)

    markers_before = sledai_markers_in(page.request.get(patient_url).text())
    assert markers_before == 1  # the baseline

    with page.expect_navigation():
        overdue_link.click()
    assert page.url == f"{live}/admin/followup/visit/{m1.pk}/change/"
    assert readonly_text(page, "state_display") == "Overdue"

    total = page.locator("#sledai-live-total")
    assert total.get_attribute("data-total") == "0"
    for item in ("arthritis", "rash", "low_complement"):  # 4 + 2 + 2
        page.check(f'input[name="sledai_items"][value="{item}"]')
    page.wait_for_function("document.querySelector('#sledai-live-total').dataset.total === '8'")
    assert total.inner_text() == "SLEDAI-2K total: 8 / 105"
    assert page.is_checked('input[name="sledai_assessed"]')  # ticking an item marks the score assessed

    page.fill("#id_actual_date", "2025-04-02")
    page.fill("#id_CREAT_value", "0.9")
    page.select_option("#id_CREAT_unit", "mg/dL")
    page.fill("#id_PROT24H_value", "2505")
    page.select_option("#id_PROT24H_unit", "mg/24h")
    page.screenshot(path=str(artifacts / "visit-entry.png"), full_page=True)
    assert Result.objects.filter(visit=m1).count() == 0  # nothing saved before the button

    with page.expect_navigation():
        page.click('input[name="_complete"]')
    assert page.url == f"{live}/admin/"  # back to the worklist
    assert page.locator(".messagelist .success").count() == 1
    page.goto(f"{live}/admin/followup/visit/{m1.pk}/change/")
    assert page.locator(".errornote").count() == 0
    assert readonly_text(page, "state_display") == "Completed"
    outcomes = readonly_text(page, "outcome_summary")
    assert "SLEDAI-2K 8 (change -8)" in outcomes
    assert "SRI-4 (simplified)" in outcomes
    assert re.search(r"PROT24H 2\.505 vs baseline 3(\.0+)? ", outcomes), outcomes
    page.screenshot(path=str(artifacts / "visit-saved.png"), full_page=True)

    m1.refresh_from_db()
    assert m1.outcome == VisitOutcome.COMPLETED
    assert sorted(m1.sledai_items) == ["arthritis", "low_complement", "rash"]
    stored = {
        code: str(value.normalize()) for code, value in Result.objects.filter(visit=m1).values_list("code", "value")
    }
    assert stored["CREAT"] == "79.56" and stored["PROT24H"] == "2.505"  # µmol/L and g/24h
    assert stored["SLEDAI2K"] == "8"

    page.goto(patient_url)
    assert code in page.locator("#content").inner_text()
    summary = readonly_text(page, "summary")
    assert "Day 0 2025-03-03" in summary and "Umbilical cord" in summary
    timeline = page.locator(".field-timeline tr", has=page.get_by_role("link", name="M1", exact=True))
    assert "Completed" in timeline.inner_text()
    markers_after = page.evaluate(SLEDAI_CHART_MARKERS)
    assert markers_after == markers_before + 1
    assert page.locator(".field-charts svg").count() >= 3  # SLEDAI-2K, proteinuria, eGFR, C3
    page.screenshot(path=str(artifacts / "patient.png"), full_page=True)


def test_worklist_per_site_table_is_legible(page, live, clinical, coordinator):
    sign_in(page, live, coordinator.username)
    header = page.locator("#worklist table thead tr").first
    row = page.locator("#worklist table tbody tr").first
    header_height = header.bounding_box()["height"]
    row_height = row.bounding_box()["height"]
    headings = [" ".join(t.split()).lower() for t in header.locator("th").all_text_contents()]
    assert headings == [
        "site",
        "in progress",
        "overdue",
        "due",
        "next 14 days",
        "safety reports due or late",
        "signals to review",
    ]
    assert header_height <= 3 * row_height, (
        f"the per-site headings are squeezed into a {header_height:.0f}px tall header (rows are {row_height:.0f}px)"
    )


def test_cohort_report_page(page, live, clinical, coordinator, artifacts):
    sign_in(page, live, coordinator.username)
    response = page.goto(f"{live}/admin/reporting/cohortreport/{clinical.study.pk}/change/")
    assert response.status == 200
    content = page.locator("#content")
    assert f"Cohort report: {clinical.study.code}" in content.inner_text()
    assert "Table 1" in content.inner_text()
    assert content.locator("svg").count() >= 1
    page.screenshot(path=str(artifacts / "cohort-report.png"), full_page=True)


def test_a_large_cohorts_report_page_updates_itself_once_a_worker_has_rendered_it(
    page, live, clinical, coordinator, artifacts, settings, monkeypatch
):
    """Above REPORT_INLINE_MAX_PATIENTS the page says the report is being computed and polls its status view
    (reporting/static/reporting/report_progress.js); the task, run here as a worker would, keeps the report
    and the page reloads itself to show it."""
    from celery import current_app
    from django.core.cache import cache

    from reporting import tasks

    cache.clear()
    settings.REPORT_INLINE_MAX_PATIENTS = 0
    sent = []
    monkeypatch.setattr(current_app, "send_task", lambda name, kwargs: sent.append(kwargs))
    sign_in(page, live, coordinator.username)
    page.goto(f"{live}/admin/reporting/cohortreport/{clinical.study.pk}/change/")
    content = page.locator("#content")
    assert f"The cohort report of your sites ({clinical.site.code}) is being computed" in content.inner_text()
    assert "Table 1" not in content.inner_text()
    page.screenshot(path=str(artifacts / "cohort-report-computing.png"), full_page=True)
    assert len(sent) == 1
    tasks.render_cohort_report(**sent[0])
    page.wait_for_selector("text=Table 1. Baseline characteristics")  # no reload by the user
    assert "being computed" not in content.inner_text()
    assert content.locator("svg").count() >= 1
    assert len(sent) == 1
    page.screenshot(path=str(artifacts / "cohort-report-computed.png"), full_page=True)
    cache.clear()


def test_an_out_of_range_value_is_shown_beside_its_field(page, live, clinical, coordinator, artifacts):
    m3 = clinical.visit("M3")
    sign_in(page, live, coordinator.username)
    page.goto(f"{live}/admin/followup/visit/{m3.pk}/change/")
    page.fill("#id_actual_date", "2025-06-02")
    page.fill("#id_ALB_value", "7")
    page.select_option("#id_ALB_unit", "g/dL")  # 70 g/L, above 60
    with page.expect_navigation():
        page.click('input[name="_save"]')
    message = "ALB: 7 g/dL (= 70 g/L) is outside the plausible range 5–60 g/L."
    assert message in page.locator("#content").inner_text()
    page.screenshot(path=str(artifacts / "visit-error.png"), full_page=True)
    row = page.locator(".form-row.field-ALB_value")
    assert message in row.inner_text(), "the message is not shown beside the ALB field"
    assert row.locator(".errorlist").count() == 1
    assert Visit.objects.get(pk=m3.pk).outcome == VisitOutcome.OPEN
    assert not Result.objects.filter(visit=m3).exists()


def test_a_coordinator_of_another_site_gets_nothing_of_the_patient(page, live, clinical):
    elsewhere = make_site(time_zone="Europe/London", country="GB")
    make_study(elsewhere)
    outsider = person("browser.outsider", elsewhere)
    code = clinical.patient.subject_code
    sign_in(page, live, outsider.username)
    assert code not in page.content()
    for url in (
        f"{live}/admin/patients/patient/{clinical.patient.pk}/change/",
        f"{live}/admin/patients/patient/{clinical.patient.pk}/history/",
        f"{live}/admin/followup/visit/{clinical.visit('M1').pk}/change/",
    ):
        response = page.goto(url)
        assert response.status in (403, 404) or page.url != url, f"{url} opened ({response.status})"
        assert code not in page.content(), url
        assert page.locator("#id_CREAT_value").count() == 0


def test_switching_the_language_selector_to_chinese(page, live, clinical, coordinator, artifacts):
    sign_in(page, live, coordinator.username)
    assert "Worklist" in page.locator("#content").inner_text()
    with page.expect_navigation():
        page.select_option("#language-select", "zh-hans")
    assert page.url == f"{live}/admin/"
    assert page.get_attribute("html", "lang") == "zh-hans"
    content = page.locator("#content").inner_text()
    assert "工作清单" in content
    assert "逾期访视" in content  # "Overdue visits"
    assert page.locator("#language-select").input_value() == "zh-hans"
    page.screenshot(path=str(artifacts / "worklist-zh-hans.png"), full_page=True)

    with page.expect_navigation():
        page.select_option("#language-select", "en")
    assert "Worklist" in page.locator("#content").inner_text()


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_wrong_input_is_refused_at_each_field_in_one_pass(page, live, clinical, coordinator, artifacts, language):
    """A decimal comma, text in a number field and a day-first date, typed as a coordinator would: each is
    refused beside its field in one pass, the typed text kept, nothing stored."""
    m3 = clinical.visit("M3")
    sign_in(page, live, coordinator.username)
    if language != "en":
        with page.expect_navigation():
            page.select_option("#language-select", language)
    page.goto(f"{live}/admin/followup/visit/{m3.pk}/change/")
    assert page.get_attribute("#id_CREAT_value", "type") == "text"
    assert page.get_attribute("#id_CREAT_value", "inputmode") == "decimal"
    page.fill("#id_actual_date", "02/06/2025")
    page.fill("#id_CREAT_value", "68,5")
    page.fill("#id_PLT_value", "abc")
    page.fill("#id_ALB_value", "7")
    page.select_option("#id_ALB_unit", "g/dL")  # 70 g/L, above 60: a rule of the service, not of the field
    with page.expect_navigation():
        page.click('input[name="_save"]')
    page.screenshot(path=str(artifacts / f"visit-wrong-input-{language}.png"), full_page=True)
    expected = {
        "en": {
            "actual_date": "year first: 2026-10-01",
            "CREAT_value": "Use a point for decimals",
            "PLT_value": "is not a number",
            "ALB_value": "outside the plausible range",
        },
        "zh-hans": {
            "actual_date": "日期请按年-月-日填写",
            "CREAT_value": "小数请用小数点",
            "PLT_value": "不是数字",
            "ALB_value": "ALB",
        },
    }[language]
    for field, words in expected.items():
        row = page.locator(f".form-row.field-{field}")
        assert words in row.locator(".errorlist").inner_text(), (field, row.inner_text())
    assert page.input_value("#id_CREAT_value") == "68,5"
    assert page.input_value("#id_PLT_value") == "abc"
    assert Visit.objects.get(pk=m3.pk).outcome == VisitOutcome.OPEN
    assert not Result.objects.filter(visit=m3).exists()


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_enter_saves_in_progress_and_completing_asks_for_each_missing_item(page, live, artifacts, language):
    """Enter in a field saves the visit in progress (it stays on the worklist); "Complete visit" lists each
    required item missing beside its field; a reason for each completes it."""
    site = make_site()
    clinical = make_clinical(site=site, study=make_study(site, required_items=True))
    coordinator = person(f"completion.{language}", clinical.site)
    bl = clinical.visit("BL")
    words = {
        "en": {
            "saved": "is saved in progress",
            "state": "In progress",
            "list": "Visits in progress",
            "required": "is required to complete visit BL",
        },
        "zh-hans": {
            "saved": "已保存为进行中",
            "state": "进行中",
            "list": "进行中的访视",
            "required": "完成访视 BL 需要",
        },
    }[language]
    sign_in(page, live, coordinator.username)
    if language != "en":
        with page.expect_navigation():
            page.select_option("#language-select", language)
    page.goto(f"{live}/admin/followup/visit/{bl.pk}/change/")
    page.fill("#id_actual_date", DAY_ZERO.isoformat())
    page.fill("#id_CREAT_value", "70")
    with page.expect_navigation():
        page.press("#id_CREAT_value", "Enter")
    assert page.url == f"{live}/admin/"
    assert words["saved"] in page.locator(".messagelist").inner_text()
    in_progress = page.locator("#worklist")
    assert words["list"] in in_progress.inner_text()
    assert in_progress.get_by_role("link", name=f"{clinical.patient.subject_code} – BL", exact=True).count() == 1
    page.screenshot(path=str(artifacts / f"worklist-in-progress-{language}.png"), full_page=True)
    bl.refresh_from_db()
    assert bl.outcome == VisitOutcome.IN_PROGRESS

    page.goto(f"{live}/admin/followup/visit/{bl.pk}/change/")
    assert readonly_text(page, "state_display") == words["state"]
    assert page.input_value("#id_CREAT_value") == "70"
    page.fill("#id_C3_value", "0.9")
    with page.expect_navigation():
        page.click('input[name="_complete"]')
    page.screenshot(path=str(artifacts / f"visit-complete-missing-{language}.png"), full_page=True)
    for field, code in [("PROT24H_value", "PROT24H"), ("C4_value", "C4"), ("ADSDNA_value", "ADSDNA")]:
        errors = page.locator(f".form-row.field-{field} .errorlist").inner_text()
        assert code in errors and "BL" in errors, (field, errors)
        assert words["required"] in errors, (field, errors)
    assert page.locator(".form-row.field-sledai_total_only .errorlist").count() == 1
    bl.refresh_from_db()
    assert bl.outcome == VisitOutcome.IN_PROGRESS and not Result.objects.filter(visit=bl, code="C3").exists()

    page.check('input[name="sledai_assessed"]')
    for code in ("PROT24H", "C4", "ADSDNA"):
        page.select_option(f"#id_{code}_not_done", "not_available")
    with page.expect_navigation():
        page.click('input[name="_complete"]')
    assert page.url == f"{live}/admin/"
    bl.refresh_from_db()
    assert bl.outcome == VisitOutcome.COMPLETED
    assert bl.not_done == {"ADSDNA": "not_available", "C4": "not_available", "PROT24H": "not_available"}
    assert in_progress.get_by_role("link", name=f"{clinical.patient.subject_code} – BL", exact=True).count() == 0

    page.goto(f"{live}/admin/followup/visit/{bl.pk}/history/")
    history = page.locator("#visit-history").inner_text()
    page.screenshot(path=str(artifacts / f"visit-history-{language}.png"), full_page=True)
    assert coordinator.username in history and "CREAT" in history and "C3" in history
    assert words["state"] in history  # the outcome went from open to in progress, then to completed


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_adverse_event_and_medication_pages_refuse_a_day_first_date_with_the_rule(
    page, live, clinical, coordinator, artifacts, language
):
    """The date rule of the visit page holds on the other pages with dates: a day-first date is refused at
    its field with the year-first hint, in the reader's language; nothing is stored."""
    from followup.models import AdverseEvent
    from patients.models import ConcomitantMedication

    hint = {"en": "year first: 2026-10-01", "zh-hans": "日期请按年-月-日填写"}[language]
    sign_in(page, live, coordinator.username)
    if language != "en":
        with page.expect_navigation():
            page.select_option("#language-select", language)
    for path, fields, name in [
        ("followup/adverseevent", {"onset_date": "05/11/2025", "aware_date": "2025-11-05"}, "ae"),
        ("patients/concomitantmedication", {"start_date": "05/11/2025", "dose": "10"}, "medication"),
    ]:
        page.goto(f"{live}/admin/{path}/add/")
        for field, typed in fields.items():
            page.fill(f"#id_{field}", typed)
        with page.expect_navigation():
            page.press(f"#id_{next(iter(fields))}", "Enter")
        page.screenshot(path=str(artifacts / f"{name}-day-first-date-{language}.png"), full_page=True)
        field = next(iter(fields))
        assert hint in page.locator(f".form-row.field-{field} .errorlist").inner_text(), field
        assert page.input_value(f"#id_{field}") == "05/11/2025"  # what was typed is kept
    assert not AdverseEvent.objects.exists() and not ConcomitantMedication.objects.exists()


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_patient_pages_adverse_events_and_medications_open_their_own_pages(
    page, live, clinical, coordinator, artifacts, language
):
    """The patient page lists the patient's adverse events and medications, in the reader's language, each
    row's first cell a link to the record's own page."""
    import datetime as dt
    from decimal import Decimal

    from followup import constants as fc
    from followup.services import ae_record
    from patients.constants import DoseUnit, Drug, Frequency
    from patients.services import medication_record

    event = ae_record(
        patient=clinical.patient,
        term="Herpes <b>zoster</b>",
        category=fc.AECategory.INFECTION,
        grade=fc.CTCAEGrade.MODERATE,
        relatedness=fc.Relatedness.UNLIKELY,
        expected=True,
        onset_date=DAY_ZERO + dt.timedelta(days=20),
        aware_date=DAY_ZERO + dt.timedelta(days=21),
    )
    medication = medication_record(
        patient=clinical.patient,
        drug=Drug.HYDROXYCHLOROQUINE,
        dose=Decimal("200"),
        unit=DoseUnit.MG,
        frequency=Frequency.BID,
        start_date=DAY_ZERO,
    )
    sign_in(page, live, coordinator.username)
    if language != "en":
        with page.expect_navigation():
            page.select_option("#language-select", language)
    page.goto(f"{live}/admin/patients/patient/{clinical.patient.pk}/change/")
    events = page.locator("#adverse_events-group")
    words = {"en": ("Infection", "Hydroxychloroquine"), "zh-hans": ("感染", "羟氯喹")}[language]
    assert words[0] in events.inner_text()
    assert words[1] in page.locator("#medications-group").inner_text()
    page.locator("#adverse_events-group").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / f"patient-tables-{language}.png"), full_page=True)
    with page.expect_navigation():
        events.get_by_role("link", name="Herpes <b>zoster</b>").click()  # the term as typed, not markup
    assert page.url == f"{live}/admin/followup/adverseevent/{event.pk}/change/"
    page.go_back()
    with page.expect_navigation():
        page.locator("#medications-group a").first.click()
    assert page.url == f"{live}/admin/patients/concomitantmedication/{medication.pk}/change/"
