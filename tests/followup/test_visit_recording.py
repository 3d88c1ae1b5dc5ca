"""Recording visits with `visit_record`: all or nothing, windows, dates, corrections with a reason,
removals, unscheduled and missed visits, and the visit state across the DST change in London."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import ValidationError

from followup.constants import VisitOutcome, VisitState
from followup.models import Result, Visit
from followup.services import visit_mark_missed, visit_record, visit_record_unscheduled
from followup.states import site_today
from patients.services import patient_record_death
from tests.factories import (
    make_clinical,
    make_lot,
    make_patient,
    make_site,
    make_study,
    make_transplant,
    make_user,
)

pytestmark = pytest.mark.django_db

D = Decimal
M1_START, M1_TARGET, M1_END = dt.date(2025, 3, 26), dt.date(2025, 4, 2), dt.date(2025, 4, 9)


@pytest.fixture
def clinical():
    return make_clinical()


def stored(visit) -> dict[str, Decimal]:
    return dict(Result.objects.filter(visit=visit).values_list("code", "value"))


def messages_of(excinfo) -> dict[str, str]:
    return {key: " ".join(value) for key, value in excinfo.value.message_dict.items()}


GOOD = {
    "CREAT": ("0.9", "mg/dL"),  # 79.56 umol/L
    "PROT24H": ("2505", "mg/24h"),  # 2.505 g/24h
    "ALB": ("3.5", "g/dL"),  # 35 g/L
    "C3": ("90", "mg/dL"),  # 0.9 g/L
    "WBC": ("4500", "/uL"),  # 4.5 x 10^9/L
    "PRED": "10",
}


# Recording -------------------------------------------------------------------------------------------


def test_recorded_visit_is_completed_with_results_in_canonical_units(clinical):
    visit = visit_record(visit=clinical.visit("M1"), actual_date=M1_TARGET, results=GOOD)
    visit.refresh_from_db()
    assert visit.outcome == VisitOutcome.COMPLETED
    assert visit.actual_date == M1_TARGET
    assert visit.current_state() == VisitState.COMPLETED
    assert stored(visit) == {
        "CREAT": D("79.56"),
        "EGFR": D("85.5"),  # derived from creatinine (woman, 35)
        "PROT24H": D("2.505"),
        "ALB": D("35"),
        "C3": D("0.9"),
        "WBC": D("4.5"),
        "PRED": D("10"),
    }


def test_results_may_be_given_as_value_tuple_or_mapping(clinical):
    visit = visit_record(
        visit=clinical.visit("M1"),
        actual_date=M1_TARGET,
        results={"HGB": "118", "PLT": ("150000", "/uL"), "ALB": {"value": "3.2", "unit": "g/dL"}},
    )
    assert stored(visit) == {"HGB": D("118"), "PLT": D("150"), "ALB": D("32")}


def test_one_bad_value_among_good_ones_stores_nothing(clinical):
    visit = clinical.visit("M1")
    results = {**GOOD, "ALB": ("7", "g/dL")}  # 70 g/L, above 60
    with pytest.raises(ValidationError) as excinfo:
        visit_record(visit=visit, actual_date=M1_TARGET, results=results, sledai_items=["rash"])
    errors = messages_of(excinfo)
    assert set(errors) == {"ALB"}
    assert "ALB" in errors["ALB"] and "7 g/dL" in errors["ALB"]
    assert stored(visit) == {}
    visit.refresh_from_db()
    assert visit.outcome == VisitOutcome.OPEN
    assert visit.actual_date is None
    assert visit.sledai_items is None


def test_every_bad_value_is_named_at_once(clinical):
    visit = clinical.visit("M1")
    results = {**GOOD, "HGB": ("12", "mmol/L"), "WBC": "250", "XYZ": "1"}
    with pytest.raises(ValidationError) as excinfo:
        visit_record(visit=visit, actual_date=M1_TARGET, results=results)
    assert set(messages_of(excinfo)) == {"HGB", "WBC", "XYZ"}
    assert stored(visit) == {}


def test_a_bad_correction_leaves_the_recorded_values_as_they_were(clinical):
    visit = visit_record(visit=clinical.visit("M1"), actual_date=M1_TARGET, results=GOOD)
    before = stored(visit)
    with pytest.raises(ValidationError):
        visit_record(
            visit=visit,
            actual_date=M1_TARGET,
            results={"C3": "0.8", "PLT": "0"},  # PLT below 1
            reason="lab re-run",
        )
    assert stored(visit) == before


def test_actor_of_another_site_cannot_record_the_visit(clinical):
    other_site = make_site(time_zone="Europe/London", country="GB")
    outsider = make_user("coord_elsewhere", other_site)
    visit = clinical.visit("M1")
    with pytest.raises(ValidationError) as excinfo:
        visit_record(visit=visit, actual_date=M1_TARGET, results=GOOD, actor=outsider)
    assert "visit" in excinfo.value.message_dict
    assert stored(visit) == {}


def test_coordinator_of_the_site_can_record_the_visit(clinical):
    coordinator = make_user("coord_here", clinical.site)
    visit = visit_record(visit=clinical.visit("M1"), actual_date=M1_TARGET, results=GOOD, actor=coordinator)
    assert visit.outcome == VisitOutcome.COMPLETED


# Window and dates ------------------------------------------------------------------------------------


@pytest.mark.parametrize("day", [M1_START, M1_TARGET, M1_END])
def test_visit_on_either_edge_of_its_window_is_accepted(clinical, day):
    visit = visit_record(visit=clinical.visit("M1"), actual_date=day, results={"PRED": "10"})
    assert visit.actual_date == day
    assert visit.deviation_reason == ""


@pytest.mark.parametrize("day", [M1_START - dt.timedelta(days=1), M1_END + dt.timedelta(days=1)])
def test_visit_outside_its_window_is_refused_without_a_deviation_reason(clinical, day):
    visit = clinical.visit("M1")
    with pytest.raises(ValidationError) as excinfo:
        visit_record(visit=visit, actual_date=day, results={"PRED": "10"})
    message = messages_of(excinfo)["actual_date"]
    assert day.isoformat() in message
    assert "2025-03-26" in message and "2025-04-09" in message
    assert stored(visit) == {}
    visit.refresh_from_db()
    assert visit.outcome == VisitOutcome.OPEN


def test_visit_outside_its_window_is_accepted_with_a_deviation_reason(clinical):
    day = M1_END + dt.timedelta(days=3)
    visit = visit_record(
        visit=clinical.visit("M1"),
        actual_date=day,
        results={"PRED": "7.5"},
        deviation_reason="patient travelling; seen on return",
    )
    visit.refresh_from_db()
    assert visit.outcome == VisitOutcome.COMPLETED
    assert visit.actual_date == day
    assert visit.deviation_reason == "patient travelling; seen on return"
    assert stored(visit) == {"PRED": D("7.5")}


def test_blank_deviation_reason_does_not_count(clinical):
    with pytest.raises(ValidationError) as excinfo:
        visit_record(
            visit=clinical.visit("M1"), actual_date=M1_END + dt.timedelta(days=1), results={}, deviation_reason="  "
        )
    assert "actual_date" in excinfo.value.message_dict


def test_visit_date_in_the_future_is_refused():
    # 2025-04-05 12:00 UTC is 20:00 in Nanjing: today is 2025-04-05 at the site.
    with time_machine.travel(dt.datetime(2025, 4, 5, 12, 0, tzinfo=dt.UTC), tick=False):
        clinical = make_clinical()
        visit = clinical.visit("M1")
        with pytest.raises(ValidationError) as excinfo:
            visit_record(visit=visit, actual_date=dt.date(2025, 4, 6), results={"PRED": "10"})
        assert "future" in messages_of(excinfo)["actual_date"]
        assert stored(visit) == {}
        # Today itself is fine.
        visit_record(visit=visit, actual_date=dt.date(2025, 4, 5), results={"PRED": "10"})


def test_future_is_judged_by_the_date_at_the_site():
    # 2025-04-05 17:00 UTC is already 2025-04-06 01:00 in Nanjing (UTC+8): the 6th is today there.
    with time_machine.travel(dt.datetime(2025, 4, 5, 17, 0, tzinfo=dt.UTC), tick=False):
        clinical = make_clinical(time_zone="Asia/Shanghai")
        assert site_today(clinical.site) == dt.date(2025, 4, 6)
        visit = visit_record(visit=clinical.visit("M1"), actual_date=dt.date(2025, 4, 6), results={"PRED": "10"})
        assert visit.outcome == VisitOutcome.COMPLETED


def test_visit_after_the_patient_died_is_refused(clinical):
    patient_record_death(patient=clinical.patient, on_date=dt.date(2025, 3, 20), cause="pneumonia")
    visit = clinical.visit("D7")  # window 2025-03-08 .. 2025-03-12 closed before the death: still open
    assert visit.outcome == VisitOutcome.OPEN
    with pytest.raises(ValidationError) as excinfo:
        visit_record(
            visit=visit, actual_date=dt.date(2025, 3, 21), results={"PRED": "10"}, deviation_reason="late entry"
        )
    assert "2025-03-20" in messages_of(excinfo)["actual_date"]


# Corrections -----------------------------------------------------------------------------------------


def test_correcting_a_completed_visit_needs_a_reason(clinical):
    visit = visit_record(visit=clinical.visit("M1"), actual_date=M1_TARGET, results={"C3": "0.6"})
    with pytest.raises(ValidationError) as excinfo:
        visit_record(visit=visit, actual_date=M1_TARGET, results={"C3": "0.65"})
    assert "M1" in messages_of(excinfo)["reason"]
    assert stored(visit) == {"C3": D("0.6")}
    with pytest.raises(ValidationError):
        visit_record(visit=visit, actual_date=M1_TARGET, results={"C3": "0.65"}, reason="   ")


def test_correction_keeps_the_old_value_in_the_history_with_the_reason(clinical):
    visit = visit_record(visit=clinical.visit("M1"), actual_date=M1_TARGET, results={"C3": ("60", "mg/dL")})
    visit_record(visit=visit, actual_date=M1_TARGET, results={"C3": ("65", "mg/dL")}, reason="lab corrected the report")
    row = Result.objects.get(visit=visit, code="C3")
    assert row.value == D("0.65")
    history = list(row.history.order_by("history_date", "history_id"))
    assert [h.value for h in history] == [D("0.6"), D("0.65")]
    assert [h.entered_value for h in history] == [D("60"), D("65")]
    assert history[-1].history_change_reason == "lab corrected the report"
    assert history[-1].history_type == "~"


def test_correcting_the_visit_date_keeps_the_reason_in_the_visit_history(clinical):
    visit = visit_record(visit=clinical.visit("M1"), actual_date=M1_TARGET, results={"C3": "0.6"})
    visit_record(visit=visit, actual_date=M1_TARGET - dt.timedelta(days=2), reason="date typed wrong")
    visit.refresh_from_db()
    assert visit.actual_date == dt.date(2025, 3, 31)
    latest = visit.history.order_by("-history_date", "-history_id").first()
    assert latest.history_change_reason == "date typed wrong"
    assert stored(visit) == {"C3": D("0.6")}  # results not mentioned stay


def test_unchanged_result_gets_no_new_history_row(clinical):
    visit = visit_record(visit=clinical.visit("M1"), actual_date=M1_TARGET, results={"C3": "0.6", "C4": "0.1"})
    visit_record(visit=visit, actual_date=M1_TARGET, results={"C3": "0.6", "C4": "0.12"}, reason="C4 re-run")
    assert Result.objects.get(visit=visit, code="C3").history.count() == 1
    assert Result.objects.get(visit=visit, code="C4").history.count() == 2


def test_remove_deletes_a_result_with_a_reason(clinical):
    visit = visit_record(visit=clinical.visit("M1"), actual_date=M1_TARGET, results={"C3": "0.6", "C4": "0.1"})
    c4_id = Result.objects.get(visit=visit, code="C4").pk
    visit_record(visit=visit, actual_date=M1_TARGET, remove=["C4"], reason="sample mislabelled")
    assert stored(visit) == {"C3": D("0.6")}
    deletion = Result.history.filter(id=c4_id).order_by("-history_date", "-history_id").first()
    assert deletion.history_type == "-"
    assert deletion.history_change_reason == "sample mislabelled"
    assert deletion.value == D("0.1")


def test_remove_without_a_reason_is_refused(clinical):
    # An open visit needs no correction reason, but removing a result does.
    visit = clinical.visit("M1")
    with pytest.raises(ValidationError) as excinfo:
        visit_record(visit=visit, actual_date=M1_TARGET, results={"C4": "0.1"}, remove=["C4"])
    assert "reason" in excinfo.value.message_dict
    assert stored(visit) == {}


def test_removing_a_result_that_is_not_there_is_refused(clinical):
    visit = visit_record(visit=clinical.visit("M1"), actual_date=M1_TARGET, results={"C3": "0.6"})
    with pytest.raises(ValidationError) as excinfo:
        visit_record(visit=visit, actual_date=M1_TARGET, remove=["C4"], reason="cleanup")
    assert "C4" in messages_of(excinfo)["remove"]
    assert stored(visit) == {"C3": D("0.6")}


# Unscheduled and missed visits -----------------------------------------------------------------------


def test_unscheduled_visits_are_numbered_u01_u02(clinical):
    first = visit_record_unscheduled(
        patient=clinical.patient, actual_date=dt.date(2025, 4, 20), results={"WBC": "2.5"}, label="Fever"
    )
    second = visit_record_unscheduled(patient=clinical.patient, actual_date=dt.date(2025, 5, 2), results={})
    assert (first.code, second.code) == ("U01", "U02")
    assert first.definition is None and first.label == "Fever"
    assert first.outcome == VisitOutcome.COMPLETED
    assert (first.window_start, first.target_date, first.window_end) == (dt.date(2025, 4, 20),) * 3
    assert stored(first) == {"WBC": D("2.5")}


def test_refused_unscheduled_visit_leaves_no_visit_behind(clinical):
    before = Visit.objects.filter(patient=clinical.patient).count()
    with pytest.raises(ValidationError):
        visit_record_unscheduled(patient=clinical.patient, actual_date=dt.date(2025, 4, 20), results={"WBC": "0"})
    assert Visit.objects.filter(patient=clinical.patient).count() == before
    visit = visit_record_unscheduled(patient=clinical.patient, actual_date=dt.date(2025, 4, 21), results={})
    assert visit.code == "U01"


def test_missed_visit_needs_a_reason(clinical):
    visit = clinical.visit("M1")
    with pytest.raises(ValidationError) as excinfo:
        visit_mark_missed(visit=visit, reason=" ")
    assert "outcome_reason" in excinfo.value.message_dict
    visit.refresh_from_db()
    assert visit.outcome == VisitOutcome.OPEN


def test_missed_visit_with_a_reason_is_missed(clinical):
    visit = visit_mark_missed(visit=clinical.visit("M1"), reason="patient in hospital elsewhere")
    visit.refresh_from_db()
    assert visit.outcome == VisitOutcome.MISSED
    assert visit.outcome_reason == "patient in hospital elsewhere"
    assert visit.current_state() == VisitState.MISSED
    with pytest.raises(ValidationError):
        visit_mark_missed(visit=visit, reason="again")


def test_recording_a_visit_marked_missed_is_a_correction_needing_a_reason(clinical):
    visit = visit_mark_missed(visit=clinical.visit("M1"), reason="no show")
    with pytest.raises(ValidationError) as excinfo:
        visit_record(visit=visit, actual_date=M1_TARGET, results={"PRED": "10"})
    assert "reason" in excinfo.value.message_dict
    visit = visit_record(
        visit=visit, actual_date=M1_TARGET, results={"PRED": "10"}, reason="visit found in paper chart"
    )
    assert visit.outcome == VisitOutcome.COMPLETED
    assert visit.outcome_reason == ""


# State across the DST change in London ---------------------------------------------------------------


def test_visit_whose_window_ends_on_the_dst_change_day_is_overdue_in_london_but_due_in_utc():
    # Day 0 2025-02-27; M12 = day 365 = 2026-02-27, window 30 days after: ends 2026-03-29, the day British
    # Summer Time begins (01:00 UTC). At 2026-03-29 23:30 UTC it is 2026-03-30 00:30 in London (UTC+1),
    # so the window has closed there; in UTC it is still the 29th, the last day of the window.
    day_zero = dt.date(2025, 2, 27)
    london = make_site(time_zone="Europe/London", country="GB")
    utc_site = make_site(time_zone="UTC", country="GB")
    study = make_study(london, utc_site)
    lot = make_lot(study, london)
    in_london = make_patient(study, london)
    in_utc = make_patient(study, utc_site)
    make_transplant(in_london, lot, day=day_zero)
    make_transplant(in_utc, lot, day=day_zero)
    m12 = Visit.objects.get(patient=in_london, code="M12")
    assert m12.window_end == dt.date(2026, 3, 29)
    assert Visit.objects.get(patient=in_utc, code="M12").window_end == dt.date(2026, 3, 29)

    now = dt.datetime(2026, 3, 29, 23, 30, tzinfo=dt.UTC)
    states = {
        v.patient_id: (v.site_today, v.state)
        for v in Visit.objects.filter(code="M12", patient__in=[in_london, in_utc]).with_state(now=now)
    }
    assert states[in_london.pk] == (dt.date(2026, 3, 30), VisitState.OVERDUE)
    assert states[in_utc.pk] == (dt.date(2026, 3, 29), VisitState.DUE)
    # The Python rule agrees with the SQL one.
    assert m12.current_state(today=site_today(london, now)) == VisitState.OVERDUE
    assert m12.current_state(today=now.date()) == VisitState.DUE


def test_an_hour_earlier_the_london_visit_is_still_due():
    # 2026-03-29 22:30 UTC is 23:30 BST on the 29th: the last day of the window in London.
    day_zero = dt.date(2025, 2, 27)
    london = make_site(time_zone="Europe/London", country="GB")
    study = make_study(london)
    patient = make_patient(study, london)
    make_transplant(patient, make_lot(study, london), day=day_zero)
    now = dt.datetime(2026, 3, 29, 22, 30, tzinfo=dt.UTC)
    visit = Visit.objects.filter(patient=patient, code="M12").with_state(now=now).get()
    assert (visit.site_today, visit.state) == (dt.date(2026, 3, 29), VisitState.DUE)


def test_before_the_change_london_midnight_is_utc_midnight():
    # On 2026-03-28 London is on GMT (UTC+0): 23:30 UTC is still the 28th there.
    london = make_site(time_zone="Europe/London", country="GB")
    assert site_today(london, dt.datetime(2026, 3, 28, 23, 30, tzinfo=dt.UTC)) == dt.date(2026, 3, 28)
    assert site_today(london, dt.datetime(2026, 3, 29, 23, 30, tzinfo=dt.UTC)) == dt.date(2026, 3, 30)
