"""Recording infusions: every rule of docs/clinical-rules.md, "Transplant events", and nothing saved when one fails."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from followup.models import Visit
from patients.models import Patient, TransplantEvent
from patients.services import patient_record_death, patient_update, patient_withdraw, transplant_record
from registry import constants as rc
from tests.factories import CellProductFactory, PatientFactory
from tests.helpers import refused

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_now")]

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
HistoricalTransplantEvent = TransplantEvent.history.model
PatientHistory = Patient.history.model
WRITES = (TransplantEvent, HistoricalTransplantEvent, Visit)


def shanghai(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=SHANGHAI)


@pytest.fixture
def patient(study, site_a):
    """Enrolled at site A (Asia/Shanghai) with consent on 2025-12-15."""
    return PatientFactory(study=study, site=site_a, subject_code="A-001")


@pytest.fixture
def lot(study, site_a):
    """Released, 10 units x 100 million cells, usable 2025-12-01 to 2027-12-01."""
    return CellProductFactory(study=study, site=site_a, lot_number="UC-A-01")


def infuse(patient, lot, when, *, weight="60.0", dose=1_000_000, **kwargs):
    return transplant_record(
        patient=patient, lot=lot, infused_at=when, weight_kg=Decimal(weight), dose_cells_per_kg=dose, **kwargs
    )


# Success paths -----------------------------------------------------------------------------------------


def test_total_cells_is_dose_times_weight(patient, lot, coordinator_a):
    event = infuse(patient, lot, shanghai(2026, 1, 15, 10, 0), weight="62.5", dose=1_000_000, actor=coordinator_a)

    event.refresh_from_db()
    assert event.total_cells == 62_500_000  # 62.5 kg x 1,000,000 cells/kg
    assert event.infusion_number == 1


def test_total_cells_with_a_fractional_weight_and_a_higher_dose(patient, lot):
    event = infuse(patient, lot, shanghai(2026, 1, 15, 10, 0), weight="48.3", dose=1_200_000)

    assert event.total_cells == 57_960_000  # 48.3 kg x 1,200,000 cells/kg


def test_second_infusion_is_numbered_two(patient, lot):
    infuse(patient, lot, shanghai(2026, 1, 15, 10, 0))

    second = infuse(patient, lot, shanghai(2026, 1, 22, 10, 0))

    assert second.infusion_number == 2


def test_lot_used_by_several_patients_answers_who_received_it(study, site_a, patient, lot):
    other = PatientFactory(study=study, site=site_a, subject_code="A-002")
    infuse(patient, lot, shanghai(2026, 1, 15, 10, 0))
    infuse(other, lot, shanghai(2026, 1, 16, 10, 0))

    assert set(lot.transplants.values_list("patient__subject_code", flat=True)) == {"A-001", "A-002"}


# Bad input (docs/clinical-rules.md, "Transplant events") -------------------------------------------------


def test_transplant_before_consent_is_refused(patient, lot):
    with refused("infused_at", "before consent", *WRITES):
        infuse(patient, lot, shanghai(2025, 12, 14, 10, 0))


def test_consent_day_counts_in_the_site_time_zone(patient, lot):
    # 2025-12-14 20:00 UTC is already 2025-12-15, the consent date, in Shanghai.
    event = infuse(patient, lot, dt.datetime(2025, 12, 14, 20, 0, tzinfo=dt.UTC))

    assert event.pk is not None


def test_transplant_for_a_patient_without_consent_is_refused(study, site_a, lot):
    screening = PatientFactory(study=study, site=site_a, consent_date=None)

    with refused("infused_at", "no consent", *WRITES):
        infuse(screening, lot, shanghai(2026, 1, 15, 10, 0))


def test_transplant_after_death_is_refused(patient, lot):
    patient_record_death(patient=patient, on_date=dt.date(2026, 3, 1), cause="pneumonia")

    with refused("patient", "deceased since 2026-03-01", *WRITES):
        infuse(patient, lot, shanghai(2026, 3, 5, 10, 0))


def test_transplant_on_the_day_of_withdrawal_or_later_is_refused(patient, lot):
    patient_withdraw(patient=patient, on_date=dt.date(2026, 3, 1), reason="consent withdrawn")

    for day in (1, 20):
        with refused("patient", "withdrawn since 2026-03-01", *WRITES):
            infuse(patient, lot, shanghai(2026, 3, day, 10, 0))


def test_lot_that_failed_release_is_refused_naming_the_criterion(study, site_a, patient):
    failed = CellProductFactory(study=study, site=site_a, release_tests={"cd105_pct": Decimal("90.00")})
    assert failed.release_status == rc.ReleaseStatus.FAILED

    with refused("lot", "failed release", *WRITES) as excinfo:
        infuse(patient, failed, shanghai(2026, 1, 15, 10, 0))

    message = " ".join(excinfo.value.message_dict["lot"])
    assert "cd105_pct" in message
    assert "CD105 must be >= 95%" in message


def test_lot_with_a_missing_test_is_refused_as_not_released(study, site_a, patient):
    pending = CellProductFactory(study=study, site=site_a, release_tests={"sterility": ""})

    with refused("lot", "not released", *WRITES) as excinfo:
        infuse(patient, pending, shanghai(2026, 1, 15, 10, 0))

    assert "sterility: not tested" in " ".join(excinfo.value.message_dict["lot"])


def test_expired_lot_is_refused(study, site_a, patient):
    expired = CellProductFactory(study=study, site=site_a, expires_on=dt.date(2026, 6, 30))

    with refused("lot", "expired on 2026-06-30", *WRITES):
        infuse(patient, expired, shanghai(2026, 7, 1, 10, 0))


def test_lot_expiry_is_judged_on_the_local_date(study, site_a, patient):
    expired = CellProductFactory(study=study, site=site_a, expires_on=dt.date(2026, 6, 30))

    # 17:00 UTC on the expiry date is already 2026-07-01 in Shanghai.
    with refused("lot", "expired on 2026-06-30", *WRITES):
        infuse(patient, expired, dt.datetime(2026, 6, 30, 17, 0, tzinfo=dt.UTC))

    assert infuse(patient, expired, shanghai(2026, 6, 30, 23, 0)).pk is not None


def test_lot_of_another_study_is_refused(site_a, patient):
    from tests.factories import StudyFactory

    foreign = CellProductFactory(study=StudyFactory(code="OTHER", sites=[site_a]), site=site_a)

    with refused("lot", "belongs to another study", *WRITES):
        infuse(patient, foreign, shanghai(2026, 1, 15, 10, 0))


def test_dose_times_weight_above_the_whole_lot_is_refused(study, site_a, patient):
    small = CellProductFactory(study=study, site=site_a, cells_per_unit=50_000_000, units=1)

    # 60 kg x 1,000,000 cells/kg = 60,000,000 cells > 50,000,000 in the lot.
    with refused("dose_cells_per_kg", "more than lot", *WRITES) as excinfo:
        infuse(patient, small, shanghai(2026, 1, 15, 10, 0), weight="60.0", dose=1_000_000)

    assert "60,000,000" in " ".join(excinfo.value.message_dict["dose_cells_per_kg"])


def test_second_patient_may_use_only_what_the_lot_still_holds(study, site_a, patient):
    lot = CellProductFactory(study=study, site=site_a, cells_per_unit=50_000_000, units=2)  # 100,000,000 cells
    second = PatientFactory(study=study, site=site_a, subject_code="A-002")
    third = PatientFactory(study=study, site=site_a, subject_code="A-003")
    infuse(patient, lot, shanghai(2026, 1, 15, 10, 0), weight="60.0")  # 60,000,000 used, 40,000,000 left

    # 50 kg x 1,000,000 = 50,000,000 cells, more than the 40,000,000 left.
    with refused("dose_cells_per_kg", "still holds (40,000,000 of 100,000,000 cells)", *WRITES):
        infuse(second, lot, shanghai(2026, 1, 16, 10, 0), weight="50.0")

    # 40 kg x 1,000,000 = 40,000,000 cells: exactly what is left.
    assert infuse(third, lot, shanghai(2026, 1, 16, 10, 0), weight="40.0").total_cells == 40_000_000


@pytest.mark.parametrize("weight", ["1.9", "0.5", "300.1", "450.0"])
def test_weight_outside_2_to_300_kg_is_refused(patient, lot, weight):
    with refused("weight_kg", "outside the plausible range", *WRITES):
        infuse(patient, lot, shanghai(2026, 1, 15, 10, 0), weight=weight)


@pytest.mark.parametrize("weight", ["2.0", "300.0"])
def test_weight_at_the_limits_is_accepted(patient, lot, weight):
    assert infuse(patient, lot, shanghai(2026, 1, 15, 10, 0), weight=weight).pk is not None


@pytest.mark.parametrize("dose", [0, 99_999, 20_000_001, 50_000_000])
def test_dose_outside_the_plausible_range_is_refused(patient, lot, dose):
    with refused("dose_cells_per_kg", "outside the plausible range", *WRITES):
        infuse(patient, lot, shanghai(2026, 1, 15, 10, 0), weight="40.0", dose=dose)


def test_infusion_number_out_of_sequence_is_refused(patient, lot):
    infuse(patient, lot, shanghai(2026, 1, 15, 10, 0))

    with refused("infusion_number", "next infusion is number 2, not 3", *WRITES):
        infuse(patient, lot, shanghai(2026, 1, 22, 10, 0), infusion_number=3)


def test_second_infusion_before_the_first_is_refused(patient, lot):
    infuse(patient, lot, shanghai(2026, 1, 15, 10, 0))

    with refused("infused_at", "must come after infusion 1", *WRITES):
        infuse(patient, lot, shanghai(2026, 1, 14, 10, 0))


def test_infusion_in_the_future_is_refused(patient, lot):
    with refused("infused_at", "in the future", *WRITES):
        infuse(patient, lot, dt.datetime(2026, 9, 1, 9, 1, tzinfo=dt.UTC))


def test_infusion_time_without_a_time_zone_is_refused(patient, lot):
    with refused("infused_at", "time zone", *WRITES):
        infuse(patient, lot, dt.datetime(2026, 1, 15, 10, 0))  # naive on purpose: that is the bad input


def test_death_dated_before_a_recorded_infusion_is_refused(patient, lot):
    infuse(patient, lot, shanghai(2026, 3, 5, 10, 0))

    with refused("status_date", "infusion", PatientHistory, Visit):
        patient_record_death(patient=patient, on_date=dt.date(2026, 3, 1), cause="pneumonia")

    patient.refresh_from_db()
    assert patient.status == "enrolled"


def test_withdrawal_dated_before_a_recorded_infusion_is_refused(patient, lot):
    infuse(patient, lot, shanghai(2026, 3, 5, 10, 0))

    with refused("status_date", "infusion", PatientHistory, Visit):
        patient_withdraw(patient=patient, on_date=dt.date(2026, 3, 4), reason="consent withdrawn")

    assert set(Visit.objects.filter(patient=patient).values_list("outcome", flat=True)) == {"open"}


def test_moving_consent_after_a_recorded_infusion_is_refused(patient, lot):
    infuse(patient, lot, shanghai(2026, 1, 15, 10, 0))

    with refused("consent_date", "infusion", PatientHistory):
        patient_update(patient=patient, reason="consent date corrected", consent_date=dt.date(2026, 1, 20))

    patient.refresh_from_db()
    assert patient.consent_date == dt.date(2025, 12, 15)


def test_coordinator_of_site_b_cannot_record_an_infusion_at_site_a(patient, lot, coordinator_b):
    with refused("patient", "writing role", *WRITES):
        infuse(patient, lot, shanghai(2026, 1, 15, 10, 0), actor=coordinator_b)


def test_monitor_cannot_record_an_infusion(patient, lot, monitor_a):
    with refused("patient", "writing role", *WRITES):
        infuse(patient, lot, shanghai(2026, 1, 15, 10, 0), actor=monitor_a)


# The database holds the rules even around the services --------------------------------------------------


def _raw_event(patient, lot, **overrides):
    fields = {
        "patient": patient,
        "lot": lot,
        "infused_at": shanghai(2026, 1, 15, 10, 0),
        "infusion_number": 1,
        "weight_kg": Decimal("60.0"),
        "dose_cells_per_kg": 1_000_000,
        "total_cells": 60_000_000,
        **overrides,
    }
    return TransplantEvent.objects.create(**fields)


def test_database_refuses_a_duplicate_infusion_number(patient, lot):
    _raw_event(patient, lot)

    with pytest.raises(IntegrityError), transaction.atomic():
        _raw_event(patient, lot, infused_at=shanghai(2026, 1, 22, 10, 0))


@pytest.mark.parametrize(
    "overrides",
    [
        {"weight_kg": Decimal("1.0")},
        {"weight_kg": Decimal("301.0")},
        {"dose_cells_per_kg": 10},
        {"total_cells": 0},
        {"infusion_number": 0},
    ],
    ids=["weight-low", "weight-high", "dose-low", "no-cells", "infusion-zero"],
)
def test_database_refuses_implausible_infusions(patient, lot, overrides):
    with pytest.raises(IntegrityError), transaction.atomic():
        _raw_event(patient, lot, **overrides)

    assert not TransplantEvent.objects.exists()
