"""The admin pages of the clinical data: recording a visit (SLEDAI-2K items and results in any accepted
unit) as a site coordinator, refusals shown on the form, site scoping, and the lot look-back."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.utils import translation

from followup.admin import ENTERED_ANALYTES, VisitRecordForm
from followup.computations import plain
from followup.constants import VisitOutcome
from followup.models import Result, Visit
from followup.services import visit_record
from tests.factories import make_clinical, make_patient, make_site, make_transplant, make_user

pytestmark = pytest.mark.django_db

D = Decimal
M1 = dt.date(2025, 4, 2)


@pytest.fixture
def clinical():
    return make_clinical(sex="F", birth_year=1990)


@pytest.fixture
def coordinator(clinical):
    return make_user("coord_here", clinical.site)


def change_url(visit: Visit) -> str:
    return f"/admin/followup/visit/{visit.pk}/change/"


def stored(visit) -> dict[str, Decimal]:
    return dict(Result.objects.filter(visit=visit).values_list("code", "value"))


# The management form of the page's read-only results table, as a browser sends it back.
RESULTS_TABLE = {"results-TOTAL_FORMS": "0", "results-INITIAL_FORMS": "0"}


def visit_form(**fields) -> dict:
    """The visit page as sent by "Complete visit"."""
    data = {"actual_date": M1.isoformat(), "deviation_reason": "", "reason": "", "_complete": "1", **RESULTS_TABLE}
    data.update(fields)
    return data


def as_shown(response) -> dict:
    """What a browser sends back from the page: every field as the form shows it (unticked boxes and empty
    fields absent), and the inline tables' management forms and hidden fields."""
    form = response.context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        data.update({f"{formset.prefix}-{name}": management[name].value() for name in management.fields})
        for row in formset.forms:
            data.update({row.add_prefix(name): row[name].value() for name in row.fields})
    return {name: value for name, value in data.items() if value not in (None, False, "")}


def test_coordinator_records_a_visit_with_items_and_results_in_other_units(client, clinical, coordinator):
    client.force_login(coordinator)
    visit = clinical.visit("M1")
    response = client.post(
        change_url(visit),
        visit_form(
            sledai_assessed="on",
            sledai_items=["arthritis", "rash", "low_complement"],  # 4 + 2 + 2 = 8
            CREAT_value="0.9",
            CREAT_unit="mg/dL",  # 0.9 x 88.4 = 79.56 umol/L
            ALB_value="3.5",
            ALB_unit="g/dL",  # 35 g/L
            PROT24H_value="2505",
            PROT24H_unit="mg/24h",  # 2.505 g/24h
            WBC_value="4500",
            WBC_unit="/uL",  # 4.5 x 10^9/L
            PRED_value="10",
            PRED_unit="mg/day",
        ),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    visit.refresh_from_db()
    assert visit.outcome == VisitOutcome.COMPLETED
    assert visit.actual_date == M1
    assert visit.sledai_items == ["arthritis", "low_complement", "rash"]
    assert stored(visit) == {
        "SLEDAI2K": D(8),
        "CREAT": D("79.56"),
        "EGFR": D("85.5"),  # woman of 35: worked out in test_egfr
        "ALB": D("35"),
        "PROT24H": D("2.505"),
        "WBC": D("4.5"),
        "PRED": D("10"),
    }
    creat = Result.objects.get(visit=visit, code="CREAT")
    assert (creat.entered_value, creat.entered_unit) == (D("0.9"), "mg/dL")


def test_sledai_assessed_with_no_item_ticked_records_zero(client, clinical, coordinator):
    client.force_login(coordinator)
    visit = clinical.visit("M1")
    response = client.post(change_url(visit), visit_form(sledai_assessed="on"))
    assert response.status_code == 302
    visit.refresh_from_db()
    assert visit.sledai_items == []
    assert stored(visit) == {"SLEDAI2K": D(0)}


def test_sledai_total_only_is_recorded_without_items(client, clinical, coordinator):
    client.force_login(coordinator)
    visit = clinical.visit("M1")
    response = client.post(change_url(visit), visit_form(sledai_total_only="6"))
    assert response.status_code == 302
    visit.refresh_from_db()
    assert visit.sledai_items is None
    assert stored(visit) == {"SLEDAI2K": D(6)}


def test_out_of_range_value_re_renders_the_form_with_the_message_and_stores_nothing(client, clinical, coordinator):
    client.force_login(coordinator)
    visit = clinical.visit("M1")
    response = client.post(
        change_url(visit),
        visit_form(
            sledai_assessed="on",
            sledai_items=["rash"],
            CREAT_value="0.9",
            CREAT_unit="mg/dL",
            ALB_value="7",
            ALB_unit="g/dL",  # 70 g/L > 60
        ),
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert "ALB: 7 g/dL (= 70 g/L) is outside the plausible range 5–60 g/L." in content
    assert stored(visit) == {}
    visit.refresh_from_db()
    assert visit.outcome == VisitOutcome.OPEN
    assert visit.actual_date is None


def test_visit_outside_its_window_shows_the_window_and_stores_nothing(client, clinical, coordinator):
    client.force_login(coordinator)
    visit = clinical.visit("M1")
    response = client.post(change_url(visit), visit_form(actual_date="2025-04-20", PRED_value="10"))
    assert response.status_code == 200
    assert "outside the window of visit M1" in response.content.decode()
    assert stored(visit) == {}
    response = client.post(
        change_url(visit), visit_form(actual_date="2025-04-20", PRED_value="10", deviation_reason="strike at clinic")
    )
    assert response.status_code == 302
    visit.refresh_from_db()
    assert (visit.outcome, visit.deviation_reason) == (VisitOutcome.COMPLETED, "strike at clinic")


def test_correction_through_the_admin_needs_a_reason(client, clinical, coordinator):
    visit = visit_record(visit=clinical.visit("M1"), actual_date=M1, results={"C3": "0.6"})
    client.force_login(coordinator)
    response = client.post(change_url(visit), visit_form(C3_value="0.7", C3_unit="g/L"))
    assert response.status_code == 200
    assert "give a reason for the correction" in response.content.decode()
    assert stored(visit) == {"C3": D("0.6")}
    response = client.post(change_url(visit), visit_form(C3_value="0.7", C3_unit="g/L", reason="lab re-issued"))
    assert response.status_code == 302
    assert stored(visit) == {"C3": D("0.7")}
    row = Result.objects.get(visit=visit, code="C3")
    assert row.history.order_by("-history_date", "-history_id").first().history_change_reason == "lab re-issued"


def test_resaving_the_form_as_shown_with_one_corrected_value_changes_only_that_value(client, clinical, coordinator):
    visit = visit_record(
        visit=clinical.visit("M1"),
        actual_date=M1,
        sledai_items=["rash"],
        results={"CREAT": ("0.9", "mg/dL"), "UPCR": ("56.56", "mg/mmol"), "C3": "0.6"},
    )
    client.force_login(coordinator)
    data = as_shown(client.get(change_url(visit)))
    assert (data["CREAT_value"], data["CREAT_unit"]) == ("0.9", "mg/dL")
    assert (data["UPCR_value"], data["UPCR_unit"]) == ("56.56", "mg/mmol")
    assert data["sledai_items"] == ["rash"]
    data.update(C3_value="0.7", reason="C3 re-run", _save="Save")
    response = client.post(change_url(visit), data)
    assert response.status_code == 302
    assert stored(visit) == {
        "SLEDAI2K": D(2),
        "CREAT": D("79.56"),
        "EGFR": D("85.5"),
        "UPCR": D("0.5"),  # 56.56 / 113.12
        "C3": D("0.7"),
    }
    history_rows = {r.code: r.history.count() for r in Result.objects.filter(visit=visit)}
    assert history_rows == {"SLEDAI2K": 1, "CREAT": 1, "EGFR": 1, "UPCR": 1, "C3": 2}


# Refusals shown beside the field they are about -------------------------------------------------------


def field_errors(response) -> dict[str, list[str]]:
    """The form's errors by field ("__all__" for those shown above the form)."""
    assert response.status_code == 200
    return {name: list(errors) for name, errors in response.context["adminform"].form.errors.items()}


def row_of(html: str, field: str) -> str:
    """The HTML of the admin form row that holds `field` (where Django shows that field's errors)."""
    start = html.rindex('<div class="form-row', 0, html.index(f"field-{field}"))
    end = html.find('<div class="form-row', start + 1)
    return html[start:end]


@pytest.mark.parametrize("analyte", ENTERED_ANALYTES, ids=lambda analyte: analyte.code)
def test_a_refused_result_is_shown_beside_its_field_naming_the_code_once(client, clinical, coordinator, analyte):
    client.force_login(coordinator)
    visit = clinical.visit("M1")
    too_high = analyte.high + 1
    response = client.post(
        change_url(visit),
        visit_form(**{f"{analyte.code}_value": str(too_high), f"{analyte.code}_unit": analyte.unit}),
    )
    message = (
        f"{analyte.code}: {plain(too_high)} {analyte.unit} is outside the plausible range "
        f"{analyte.low}–{analyte.high} {analyte.unit}."
    )
    assert field_errors(response) == {f"{analyte.code}_value": [message]}
    html = response.content.decode()
    assert f"{analyte.code}: {analyte.code}:" not in html
    assert 'class="errorlist nonfield"' not in html
    row = row_of(html, f"{analyte.code}_value")
    assert 'class="errorlist' in row and "plausible range" in row
    assert stored(visit) == {}


def test_several_refused_results_are_each_shown_beside_their_own_field(client, clinical, coordinator):
    client.force_login(coordinator)
    visit = clinical.visit("M1")
    response = client.post(
        change_url(visit),
        visit_form(ALB_value="7", ALB_unit="g/dL", CREAT_value="1", CREAT_unit="umol/L", PLT_value="150"),
    )
    errors = field_errors(response)
    assert errors == {
        "ALB_value": ["ALB: 7 g/dL (= 70 g/L) is outside the plausible range 5–60 g/L."],
        "CREAT_value": ["CREAT: 1 umol/L is outside the plausible range 10–2000 umol/L."],
    }
    assert stored(visit) == {}


def test_a_sledai_total_that_disagrees_with_the_items_is_shown_beside_the_total(client, clinical, coordinator):
    client.force_login(coordinator)
    visit = clinical.visit("M1")
    response = client.post(change_url(visit), visit_form(sledai_assessed="on", sledai_total_only="6"))
    assert field_errors(response) == {
        "sledai_total_only": ["SLEDAI2K: the submitted total 6 disagrees with the items recorded, which sum to 0."]
    }
    assert "SLEDAI2K: SLEDAI2K:" not in response.content.decode()
    assert "disagrees with the items" in row_of(response.content.decode(), "sledai_total_only")


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"actual_date": "2099-01-01"}, "The visit date cannot be in the future."),
        ({"actual_date": ""}, "Give the date the visit took place."),
        ({"actual_date": "2025-04-20"}, "give a deviation reason to record it anyway."),
    ],
    ids=["future", "missing", "outside the window without a deviation reason"],
)
def test_a_refused_date_is_shown_beside_the_date(client, clinical, coordinator, fields, message):
    client.force_login(coordinator)
    visit = clinical.visit("M1")
    response = client.post(change_url(visit), visit_form(PRED_value="10", **fields))
    errors = field_errors(response)
    assert list(errors) == ["actual_date"]
    assert message in errors["actual_date"][0]
    assert message in row_of(response.content.decode(), "actual_date")
    assert stored(visit) == {}


def test_a_correction_without_a_reason_is_shown_beside_the_reason(client, clinical, coordinator):
    visit = visit_record(visit=clinical.visit("M1"), actual_date=M1, results={"C3": "0.6"})
    client.force_login(coordinator)
    response = client.post(change_url(visit), visit_form(C3_value="0.7", C3_unit="g/L"))
    errors = field_errors(response)
    assert list(errors) == ["reason"]
    assert "give a reason for the correction" in row_of(response.content.decode(), "reason")


def test_sledai_items_are_offered_in_groups_by_weight():
    groups = [label for label, _ in VisitRecordForm().fields["sledai_items"].choices]
    assert groups == ["8 points each", "4 points each", "2 points each", "1 point each"]


def test_every_key_the_visit_service_refuses_with_has_its_place_on_the_form():
    form = VisitRecordForm()
    places = {
        **{analyte.code: f"{analyte.code}_value" for analyte in ENTERED_ANALYTES},
        "SLEDAI2K": "sledai_total_only",
        "EGFR": "CREAT_value",  # computed from creatinine
        "sledai_items": "sledai_items",
        "actual_date": "actual_date",
        "deviation_reason": "deviation_reason",
        "reason": "reason",
        "outcome_reason": "missed_reason",
        "remove": None,  # shown above the form
        "visit": None,
    }
    assert {key: form.service_error_field(key) for key in places} == places


def test_an_error_about_no_field_of_the_page_is_named_once_above_the_form(client, clinical, coordinator):
    visit = visit_record(visit=clinical.visit("M1"), actual_date=M1, results={"C3": "0.6"})
    client.force_login(coordinator)
    response = client.post(change_url(visit), visit_form(actual_date="", missed_reason="patient unreachable"))
    assert field_errors(response) == {"__all__": ["outcome: Visit M1 is completed, not open; correct it instead."]}


def test_missed_reason_marks_the_visit_missed(client, clinical, coordinator):
    client.force_login(coordinator)
    visit = clinical.visit("M1")
    response = client.post(change_url(visit), visit_form(actual_date="", missed_reason="patient unreachable"))
    assert response.status_code == 302
    visit.refresh_from_db()
    assert (visit.outcome, visit.outcome_reason) == (VisitOutcome.MISSED, "patient unreachable")


def test_coordinator_of_another_site_gets_no_access_to_the_visit(client, clinical):
    outsider = make_user("coord_elsewhere", make_site(time_zone="Europe/London", country="GB"))
    client.force_login(outsider)
    visit = clinical.visit("M1")
    response = client.get(change_url(visit))
    assert response.status_code in (302, 403, 404)
    assert b"CREAT_value" not in response.content
    response = client.post(change_url(visit), visit_form(PRED_value="10"))
    assert response.status_code in (302, 403, 404)
    visit.refresh_from_db()
    assert visit.outcome == VisitOutcome.OPEN
    assert stored(visit) == {}


def test_monitor_of_the_site_can_see_but_not_record_the_visit(client, clinical):
    monitor = make_user("monitor_here", clinical.site, role="monitor")
    client.force_login(monitor)
    visit = clinical.visit("M1")
    assert client.get(change_url(visit)).status_code == 200
    response = client.post(change_url(visit), visit_form(PRED_value="10"))
    assert response.status_code in (302, 403)
    visit.refresh_from_db()
    assert visit.outcome == VisitOutcome.OPEN
    assert stored(visit) == {}


def test_visit_list_shows_only_the_visits_of_the_users_sites(client, clinical, coordinator):
    other = make_clinical(time_zone="Europe/London", country="GB")
    client.force_login(coordinator)
    response = client.get("/admin/followup/visit/")
    assert response.status_code == 200
    content = response.content.decode()
    assert clinical.patient.subject_code in content
    assert other.patient.subject_code not in content


# Lot look-back ----------------------------------------------------------------------------------------


@pytest.fixture
def shared_lot(clinical):
    """The lot of `clinical` (made at its site) also infused at a second site of the study."""
    from registry.services import study_add_site

    london = make_site(time_zone="Europe/London", country="GB")
    study_add_site(study=clinical.study, site=london)
    london_patient = make_patient(clinical.study, london)
    make_transplant(london_patient, clinical.lot, day=dt.date(2025, 3, 10))
    return clinical.lot, london, london_patient


def lookback_url(lot) -> str:
    return f"/admin/followup/lotlookback/{lot.pk}/change/"


def test_lot_lookback_lists_the_recipients_of_the_users_sites_only(client, clinical, coordinator, shared_lot):
    lot, _, london_patient = shared_lot
    client.force_login(coordinator)
    response = client.get(lookback_url(lot))
    assert response.status_code == 200
    content = response.content.decode()
    assert "Patients who received this lot" in content
    assert clinical.patient.subject_code in content
    assert london_patient.subject_code not in content


def test_lot_lookback_at_an_infusing_site_lists_its_own_recipients_only(client, clinical, shared_lot):
    # The lot was made at the first site; the second site infused it and must see its own recipient.
    lot, london, london_patient = shared_lot
    client.force_login(make_user("coord_london", london))
    response = client.get(lookback_url(lot))
    assert response.status_code == 200
    content = response.content.decode()
    assert london_patient.subject_code in content
    assert clinical.patient.subject_code not in content


def test_lot_lookback_is_closed_to_a_site_outside_the_study(client, clinical, shared_lot):
    lot, _, london_patient = shared_lot
    client.force_login(make_user("coord_outside", make_site(time_zone="UTC", country="GB")))
    response = client.get(lookback_url(lot))
    assert response.status_code in (302, 403, 404)
    assert clinical.patient.subject_code.encode() not in response.content
    assert london_patient.subject_code.encode() not in response.content


# How the visit page shows what was recorded -----------------------------------------------------------


def outcome_rows(html: str) -> dict[str, str]:
    """The "Computed outcomes" box: its rows by heading."""
    box = html[html.index("field-outcome_summary") :]
    box = box[: box.index("</table>")]
    return {th.strip(): td.strip() for th, td in re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", box, flags=re.S)}


def results_table(html: str) -> str:
    table = html[html.index('id="results-group"') :]
    return table[: table.index("</table>")]


def recorded_m1(clinical) -> Visit:
    visit_record(
        visit=clinical.visit("BL"),
        actual_date=dt.date(2025, 3, 3),
        sledai_items=["arthritis", "rash", "alopecia", "low_complement", "increased_dna_binding", "proteinuria"],
        results={"CREAT": "70", "PROT24H": "3.0", "C3": "0.5"},
    )
    return visit_record(
        visit=clinical.visit("M1"),
        actual_date=M1,
        sledai_items=["arthritis", "rash", "low_complement"],
        results={"CREAT": ("0.9", "mg/dL"), "PROT24H": ("2505", "mg/24h")},
    )


def test_computed_outcomes_say_yes_or_no_rather_than_true_or_false(client, clinical, coordinator):
    visit = recorded_m1(clinical)
    client.force_login(coordinator)
    rows = outcome_rows(client.get(change_url(visit)).content.decode())
    # SLEDAI-2K 16 -> 8: a fall of 8 (>= 4) without a new item; BILAG is not assessed.
    assert rows["SLEDAI-2K"] == "8 (change -8)"
    assert rows["SRI-4 (simplified)"].startswith("Yes – ")
    assert "BILAG not assessed" in rows["SRI-4 (simplified)"]
    assert rows["Relapse"] == "No"
    assert rows["Remission"] in ("complete", "partial", "none")
    assert not [text for text in rows.values() if "_" in text], "graded outcomes in words, not codes"
    assert not {"True", "False", "None"} & {word for text in rows.values() for word in re.findall(r"\w+", text)}


@pytest.fixture
def language_restored():
    """The language of this thread as it was: a request in Chinese activates Chinese here too."""
    language = translation.get_language()
    yield
    translation.activate(language)


def test_computed_outcomes_in_chinese_say_yes_or_no_in_chinese(client, language_restored, clinical, coordinator):
    visit = recorded_m1(clinical)
    client.force_login(coordinator)
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/admin/"})
    rows = outcome_rows(client.get(change_url(visit)).content.decode())
    assert rows["SRI-4 (simplified)"].startswith("是 – ")
    assert rows["复发"] == "否"
    assert rows["病情复燃"] in ("无", "轻度或中度", "重度")


def test_results_table_shows_values_without_trailing_zeros_and_stores_them_unchanged(client, clinical, coordinator):
    visit = recorded_m1(clinical)
    client.force_login(coordinator)
    table = results_table(client.get(change_url(visit)).content.decode())
    cells = {
        (name, text.strip()) for name, text in re.findall(r'<td class="field-(\w+)">\s*<p>(.*?)</p>', table, flags=re.S)
    }
    assert {("shown_value", "79.56"), ("shown_entered_value", "0.9")} <= cells, cells
    assert {("shown_value", "2.505"), ("shown_entered_value", "2505")} <= cells, cells
    assert ("shown_value", "8") in cells  # SLEDAI-2K, computed from the items
    assert ("shown_entered_value", "-") in cells  # eGFR is computed, not entered
    assert not re.search(r"\d\.\d*0<", table), "a value is shown with trailing zeros"
    assert "None" not in table
    creat = Result.objects.get(visit=visit, code="CREAT")
    assert (creat.value, creat.entered_value) == (D("79.5600"), D("0.9000"))
    assert str(creat.value) == "79.5600"  # what is stored keeps its places


def test_results_table_keeps_its_column_headings_and_help(client, clinical, coordinator):
    visit = recorded_m1(clinical)
    client.force_login(coordinator)
    table = results_table(client.get(change_url(visit)).content.decode())
    headings = [" ".join(re.sub(r"<[^>]+>", " ", th).split()) for th in re.findall(r"<th[^>]*>(.*?)</th>", table, re.S)]
    assert headings == ["", "Code", "Value", "Unit", "Entered value", "Entered unit", "Derived"]
    assert 'title="In the catalogue&#x27;s canonical unit."' in table


def test_results_table_has_no_caption_line_above_each_row(client, clinical, coordinator):
    visit = recorded_m1(clinical)
    client.force_login(coordinator)
    table = results_table(client.get(change_url(visit)).content.decode())
    text = " ".join(re.sub(r"<[^>]+>", " ", table).split())
    for caption in ("CREAT 79.56", "PROT24H 2.505", "EGFR 85.5", "SLEDAI2K 8"):
        assert caption not in text, caption
    assert "has_original" not in table
    assert text.count("CREAT – Serum creatinine") == 1


def test_results_table_posts_back_as_shown(client, clinical, coordinator):
    visit = recorded_m1(clinical)
    client.force_login(coordinator)
    data = as_shown(client.get(change_url(visit)))
    assert data["results-TOTAL_FORMS"] == 4  # CREAT, EGFR, PROT24H, SLEDAI2K
    data.update(reason="re-saved unchanged", _save="Save")
    response = client.post(change_url(visit), data)
    assert response.status_code == 302, field_errors(response)
    assert stored(visit)["CREAT"] == D("79.56")


def test_sledai_items_are_labelled_once_with_their_weight_only_in_the_group_heading(client, clinical, coordinator):
    client.force_login(coordinator)
    html = client.get(change_url(clinical.visit("M1"))).content.decode()
    row = row_of(html, "sledai_items")
    labels = [
        " ".join(label.split()) for label in re.findall(r"<label for=\"id_sledai_items_[^>]*>(.*?)</label>", row, re.S)
    ]
    labels = [re.sub(r"<input[^>]*>", "", label).strip() for label in labels]
    assert "Arthritis" in labels and "Vasculitis" in labels and "Fever (&gt;38 °C)" in labels
    assert not [label for label in labels if re.search(r"\(\d+\)$", label)], labels
    assert "4 points each" in row


def test_graded_outcomes_are_named_in_words():
    from followup.admin import outcome_grade

    assert outcome_grade("mild_moderate") == "mild or moderate"
    assert outcome_grade("not_applicable") == "not applicable (no renal involvement at baseline)"
    assert outcome_grade("complete") == "complete"
    assert outcome_grade("") == "—"


def test_visit_page_in_chinese_shows_its_sections_labels_and_items_in_chinese(
    client, language_restored, clinical, coordinator
):
    visit = recorded_m1(clinical)
    client.force_login(coordinator)
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/admin/"})
    html = client.get(change_url(visit)).content.decode()
    for chinese in (
        "记录本次随访",  # Record the visit
        "计算所得疗效指标",  # Computed outcomes
        "已评估 SLEDAI-2K",  # SLEDAI-2K assessed
        "存在的 SLEDAI-2K 条目",  # SLEDAI-2K items present
        "每项 8 分",  # 8 points each
        "每项 1 分",  # 1 point each
        "狼疮性头痛",  # Lupus headache
        "CREAT: 血肌酐",  # the code stays, the name is translated
        "补体 C3",
        "修改原因",  # Reason for change
        'data-sledai-total-text="SLEDAI-2K 总分：%(total)s / %(max)s"',
    ):
        assert chinese in html, chinese
    for english in (
        "Record the visit",
        "Computed outcomes",
        "SLEDAI-2K items present",
        "points each",
        "1 point each",
        "Lupus headache",
        "Serum creatinine",
        "Reason for change",
        "Missed visit",
    ):
        assert english not in html, english


def test_visit_page_in_english_keeps_its_english_text(client, clinical, coordinator):
    visit = recorded_m1(clinical)
    client.force_login(coordinator)
    html = client.get(change_url(visit)).content.decode()
    for english in ("Record the visit", "8 points each", "1 point each", "Lupus headache", "CREAT: Serum creatinine"):
        assert english in html, english
    assert 'data-sledai-total-text="SLEDAI-2K total: %(total)s / %(max)s"' in html
