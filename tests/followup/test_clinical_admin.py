"""The admin pages of the clinical data: recording a visit (SLEDAI-2K items and results in any accepted
unit) as a site coordinator, refusals shown on the form, site scoping, and the lot look-back."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from followup.constants import VisitOutcome
from followup.models import Result, Visit
from followup.services import visit_record
from tests.followup.clinical_setup import make_clinical, make_patient, make_site, make_transplant, make_user

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


def visit_form(**fields) -> dict:
    data = {"actual_date": M1.isoformat(), "deviation_reason": "", "reason": "", "_save": "Save"}
    data.update(fields)
    return data


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
    form = client.get(change_url(visit)).context["adminform"].form
    # What a browser sends back: every field as the form shows it (unticked boxes and empty fields absent).
    data = {name: form[name].value() for name in form.fields}
    data = {name: value for name, value in data.items() if value not in (None, False, "")}
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
