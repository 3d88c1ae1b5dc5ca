"""The visit schedule: made at the first infusion from the local day 0, moved with it, ended on leaving."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

import pytest

from followup.constants import VisitOutcome
from followup.models import Visit
from patients import constants as pc
from patients.services import (
    day_zero,
    patient_record_death,
    patient_withdraw,
    transplant_correct,
    transplant_record,
)
from tests.factories import CellProductFactory, PatientFactory
from tests.helpers import refused

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_now")]

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
LONDON = zoneinfo.ZoneInfo("Europe/London")
D = dt.date


@pytest.fixture
def patient(study, site_a):
    return PatientFactory(study=study, site=site_a, subject_code="A-001")


@pytest.fixture
def lot(study, site_a):
    return CellProductFactory(study=study, site=site_a)


def infuse(patient, lot, when, **kwargs):
    return transplant_record(
        patient=patient, lot=lot, infused_at=when, weight_kg=Decimal("55.0"), dose_cells_per_kg=1_000_000, **kwargs
    )


@pytest.fixture
def transplanted(patient, lot):
    """Patient A-001, first infusion 2026-01-15 10:00 in Shanghai: day 0 is 2026-01-15."""
    infuse(patient, lot, dt.datetime(2026, 1, 15, 10, 0, tzinfo=SHANGHAI))
    return patient


def schedule(patient) -> dict[str, tuple[dt.date, dt.date, dt.date]]:
    return {v.code: (v.window_start, v.target_date, v.window_end) for v in Visit.objects.filter(patient=patient)}


def outcomes(patient) -> dict[str, str]:
    return dict(Visit.objects.filter(patient=patient).values_list("code", "outcome"))


# Scheduling at the first infusion ------------------------------------------------------------------------


def test_first_infusion_creates_the_twelve_visits_from_day_zero(transplanted):
    visits = schedule(transplanted)

    assert list(Visit.objects.filter(patient=transplanted).order_by("target_date").values_list("code", flat=True)) == [
        "BL", "D7", "M1", "M3", "M6", "M9", "M12", "M18", "M24", "M36", "M48", "M60",
    ]  # fmt: skip
    # (window start, target, window end); target = 2026-01-15 + offset.
    assert visits["BL"] == (D(2026, 1, 1), D(2026, 1, 15), D(2026, 1, 15))  # day 0, 14 days before / 0 after
    assert visits["D7"] == (D(2026, 1, 20), D(2026, 1, 22), D(2026, 1, 24))  # day 7 +/- 2
    assert visits["M1"] == (D(2026, 2, 7), D(2026, 2, 14), D(2026, 2, 21))  # day 30 +/- 7
    assert visits["M3"] == (D(2026, 4, 2), D(2026, 4, 16), D(2026, 4, 30))  # day 91 +/- 14
    assert visits["M6"] == (D(2026, 7, 2), D(2026, 7, 16), D(2026, 7, 30))  # day 182 +/- 14
    assert visits["M12"] == (D(2026, 12, 16), D(2027, 1, 15), D(2027, 2, 14))  # day 365 +/- 30
    assert visits["M60"] == (D(2030, 12, 15), D(2031, 1, 14), D(2031, 2, 13))  # day 1825 +/- 30
    assert set(outcomes(transplanted).values()) == {VisitOutcome.OPEN}


def test_visits_copy_their_definition(transplanted, study):
    for visit in Visit.objects.filter(patient=transplanted).select_related("definition"):
        assert visit.definition.study == study
        assert visit.definition.code == visit.code
        assert visit.label == visit.definition.label
        assert (visit.target_date - D(2026, 1, 15)).days == visit.definition.offset_days


def test_second_infusion_on_day_seven_keeps_day_zero_and_adds_no_visits(transplanted, lot):
    before = schedule(transplanted)

    second = infuse(transplanted, lot, dt.datetime(2026, 1, 22, 10, 0, tzinfo=SHANGHAI))

    assert second.infusion_number == 2
    assert day_zero(transplanted) == D(2026, 1, 15)
    assert Visit.objects.filter(patient=transplanted).count() == 12
    assert schedule(transplanted) == before


def test_refused_first_infusion_schedules_nothing(patient, study, site_a):
    expired = CellProductFactory(study=study, site=site_a, expires_on=D(2026, 1, 1))

    with refused("lot", "expired", Visit):
        infuse(patient, expired, dt.datetime(2026, 1, 15, 10, 0, tzinfo=SHANGHAI))


# Day 0 is the local date of the first infusion -----------------------------------------------------------


def test_day_zero_on_the_dst_switch_day_in_london(study, site_b):
    patient = PatientFactory(study=study, site=site_b, subject_code="B-001")
    lot = CellProductFactory(study=study, site=site_b)
    infused_at = dt.datetime(2026, 3, 29, 0, 30, tzinfo=LONDON)
    assert infused_at.astimezone(dt.UTC) == dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.UTC)  # still GMT at 00:30

    infuse(patient, lot, infused_at)

    assert day_zero(patient) == D(2026, 3, 29)
    assert Visit.objects.get(patient=patient, code="BL").target_date == D(2026, 3, 29)
    assert Visit.objects.get(patient=patient, code="M1").target_date == D(2026, 4, 28)


def test_day_zero_after_the_dst_switch_is_the_london_date_not_the_utc_date(study, site_b):
    patient = PatientFactory(study=study, site=site_b, subject_code="B-002")
    lot = CellProductFactory(study=study, site=site_b)

    # 23:30 UTC on 29 March is 00:30 BST on 30 March (in winter it would still be the 29th).
    infuse(patient, lot, dt.datetime(2026, 3, 29, 23, 30, tzinfo=dt.UTC))

    assert day_zero(patient) == D(2026, 3, 30)
    assert Visit.objects.get(patient=patient, code="M1").target_date == D(2026, 4, 29)


def test_day_zero_in_shanghai_is_the_next_day_for_a_late_utc_infusion(patient, lot):
    # 2026-03-08 23:30 UTC is 2026-03-09 07:30 in Shanghai.
    infuse(patient, lot, dt.datetime(2026, 3, 8, 23, 30, tzinfo=dt.UTC))

    assert day_zero(patient) == D(2026, 3, 9)
    assert Visit.objects.get(patient=patient, code="BL").target_date == D(2026, 3, 9)
    assert Visit.objects.get(patient=patient, code="M1").target_date == D(2026, 4, 8)


# Correcting the first infusion ---------------------------------------------------------------------------


def test_correcting_the_first_infusion_moves_open_visits_but_not_completed_ones(transplanted):
    Visit.objects.filter(patient=transplanted, code="BL").update(
        outcome=VisitOutcome.COMPLETED, actual_date=D(2026, 1, 14)
    )
    first = transplanted.transplants.get(infusion_number=1)

    transplant_correct(
        transplant=first,
        reason="infusion date transcribed wrongly",
        infused_at=dt.datetime(2026, 1, 18, 10, 0, tzinfo=SHANGHAI),
    )

    assert day_zero(transplanted) == D(2026, 1, 18)
    visits = schedule(transplanted)
    assert visits["BL"] == (D(2026, 1, 1), D(2026, 1, 15), D(2026, 1, 15))  # completed: as recorded
    assert visits["D7"] == (D(2026, 1, 23), D(2026, 1, 25), D(2026, 1, 27))
    assert visits["M1"] == (D(2026, 2, 10), D(2026, 2, 17), D(2026, 2, 24))
    assert visits["M3"] == (D(2026, 4, 5), D(2026, 4, 19), D(2026, 5, 3))
    assert Visit.objects.get(patient=transplanted, code="BL").outcome == VisitOutcome.COMPLETED


def test_moved_visits_record_why_in_their_history(transplanted):
    first = transplanted.transplants.get(infusion_number=1)

    transplant_correct(
        transplant=first, reason="wrong date", infused_at=dt.datetime(2026, 1, 18, 10, 0, tzinfo=SHANGHAI)
    )

    m1 = Visit.objects.get(patient=transplanted, code="M1")
    assert m1.history.latest().history_change_reason == "day 0 moved to 2026-01-18"


def test_correcting_the_time_within_the_same_local_day_moves_nothing(transplanted):
    before = schedule(transplanted)
    first = transplanted.transplants.get(infusion_number=1)

    # 01:00 in Shanghai on the 15th is still the 14th in UTC: the local day, hence day 0, is unchanged.
    transplant_correct(
        transplant=first, reason="time corrected", infused_at=dt.datetime(2026, 1, 15, 1, 0, tzinfo=SHANGHAI)
    )

    assert day_zero(transplanted) == D(2026, 1, 15)
    assert schedule(transplanted) == before


def test_correcting_an_infusion_without_a_reason_is_refused(transplanted):
    first = transplanted.transplants.get(infusion_number=1)
    before = schedule(transplanted)

    with refused("reason", "Give a reason", Visit):
        transplant_correct(transplant=first, reason=" ", infused_at=dt.datetime(2026, 1, 18, 10, 0, tzinfo=SHANGHAI))

    assert schedule(transplanted) == before
    first.refresh_from_db()
    assert first.infused_at == dt.datetime(2026, 1, 15, 10, 0, tzinfo=SHANGHAI)


# Leaving follow-up ---------------------------------------------------------------------------------------


def test_withdrawal_takes_out_visits_whose_window_has_not_closed(transplanted):
    # Withdrawn on 2026-02-20 (day 36): BL and D7 windows closed before; M1's window (to 02-21) is still open.
    patient_withdraw(patient=transplanted, on_date=D(2026, 2, 20), reason="moved abroad")

    transplanted.refresh_from_db()
    assert transplanted.status == pc.PatientStatus.WITHDRAWN
    assert outcomes(transplanted) == {
        "BL": VisitOutcome.OPEN,
        "D7": VisitOutcome.OPEN,
        **{
            code: VisitOutcome.NOT_REQUIRED
            for code in ("M1", "M3", "M6", "M9", "M12", "M18", "M24", "M36", "M48", "M60")
        },
    }
    for visit in Visit.objects.filter(patient=transplanted, outcome=VisitOutcome.NOT_REQUIRED):
        assert "Withdrawn on 2026-02-20" in visit.outcome_reason
        assert "moved abroad" in visit.outcome_reason
    assert Visit.objects.get(patient=transplanted, code="D7").outcome_reason == ""


@pytest.mark.parametrize(
    ("on_date", "m1_outcome"),
    [(D(2026, 2, 21), VisitOutcome.NOT_REQUIRED), (D(2026, 2, 22), VisitOutcome.OPEN)],
    ids=["on-the-last-day-of-the-window", "the-day-after-it-closed"],
)
def test_withdrawal_on_the_edge_of_a_window(transplanted, on_date, m1_outcome):
    patient_withdraw(patient=transplanted, on_date=on_date, reason="consent withdrawn")

    assert outcomes(transplanted)["M1"] == m1_outcome
    assert outcomes(transplanted)["M3"] == VisitOutcome.NOT_REQUIRED


def test_death_takes_out_future_visits_and_keeps_recorded_ones(transplanted):
    Visit.objects.filter(patient=transplanted, code="BL").update(
        outcome=VisitOutcome.COMPLETED, actual_date=D(2026, 1, 15)
    )

    # Died 2026-05-10 (day 115): M3's window closed on 04-30, M6's opens on 07-02.
    patient_record_death(patient=transplanted, on_date=D(2026, 5, 10), cause="pneumonia, judged unrelated")

    transplanted.refresh_from_db()
    assert transplanted.status == pc.PatientStatus.DECEASED
    states = outcomes(transplanted)
    assert states["BL"] == VisitOutcome.COMPLETED
    assert [states[code] for code in ("D7", "M1", "M3")] == [VisitOutcome.OPEN] * 3
    assert {states[code] for code in ("M6", "M9", "M12", "M18", "M24", "M36", "M48", "M60")} == {
        VisitOutcome.NOT_REQUIRED
    }
    m6 = Visit.objects.get(patient=transplanted, code="M6")
    assert "Deceased on 2026-05-10" in m6.outcome_reason
    assert "pneumonia" in m6.outcome_reason


def test_first_infusion_entered_after_withdrawal_schedules_only_visits_before_it(patient, lot):
    patient_withdraw(patient=patient, on_date=D(2026, 3, 1), reason="moved abroad")

    # Entered late: the infusion took place before the withdrawal.
    infuse(patient, lot, dt.datetime(2026, 1, 15, 10, 0, tzinfo=SHANGHAI))

    states = outcomes(patient)
    assert len(states) == 12
    assert [states[code] for code in ("BL", "D7", "M1")] == [VisitOutcome.OPEN] * 3
    assert states["M3"] == VisitOutcome.NOT_REQUIRED
    assert states["M60"] == VisitOutcome.NOT_REQUIRED


# Audit of the schedule -----------------------------------------------------------------------------------


def test_scheduled_visits_leave_a_creation_history_row(transplanted):
    visit = Visit.objects.get(patient=transplanted, code="M3")

    assert visit.history.filter(history_type="+").count() == 1


def test_visits_taken_out_record_why_in_their_history(transplanted):
    patient_withdraw(patient=transplanted, on_date=D(2026, 2, 20), reason="moved abroad")

    m3 = Visit.objects.get(patient=transplanted, code="M3")
    latest = m3.history.latest()
    assert latest.outcome == VisitOutcome.NOT_REQUIRED
    assert "moved abroad" in latest.history_change_reason
