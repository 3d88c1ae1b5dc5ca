"""The time rules of a visit, absolute whatever the deviation reason (docs/clinical-rules.md, "Follow-up
schedule"): nothing before consent, in the future or after the patient died, withdrew or was lost to follow-up;
a baseline visit on or before day 0, every later scheduled visit after it. And every error of a visit at once.

Default timeline: consent 2025-01-15, day 0 2025-03-03 (tests/factories.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from followup.constants import VisitOutcome
from followup.models import Visit
from followup.services import VisitEntry, visit_record, visits_record_batch
from patients.constants import PatientStatus
from patients.services import patient_change_status
from tests.factories import CONSENT, DAY_ZERO, make_clinical

pytestmark = pytest.mark.django_db

REASON = "seen early for a family reason"


@pytest.fixture
def clinical():
    return make_clinical()


def visit(clinical, code: str) -> Visit:
    return Visit.objects.get(patient=clinical.patient, code=code)


def refused(code_or_visit, clinical=None, **entry) -> dict[str, str]:
    target = visit(clinical, code_or_visit) if clinical else code_or_visit
    with pytest.raises(ValidationError) as excinfo:
        visit_record(visit=target, **entry)
    target.refresh_from_db()
    assert target.outcome == VisitOutcome.OPEN and target.actual_date is None, "nothing is stored"
    return {key: " ".join(value) for key, value in excinfo.value.message_dict.items()}


def test_a_month_visit_before_day_zero_is_refused_even_with_a_deviation_reason(clinical):
    errors = refused("M1", clinical, actual_date=DAY_ZERO - dt.timedelta(days=5), deviation_reason=REASON)
    assert "after day 0 (2025-03-03)" in errors["actual_date"]
    errors = refused("D7", clinical, actual_date=DAY_ZERO, deviation_reason=REASON)
    assert "after day 0 (2025-03-03)" in errors["actual_date"]


def test_a_baseline_after_day_zero_is_refused_even_with_a_deviation_reason(clinical):
    errors = refused("BL", clinical, actual_date=DAY_ZERO + dt.timedelta(days=1), deviation_reason=REASON)
    assert "on or before day 0 (2025-03-03)" in errors["actual_date"]
    recorded = visit_record(visit=visit(clinical, "BL"), actual_date=DAY_ZERO)  # day 0 itself is baseline
    assert recorded.outcome == VisitOutcome.COMPLETED


def test_nothing_before_consent_even_with_a_deviation_reason(clinical):
    errors = refused("BL", clinical, actual_date=CONSENT - dt.timedelta(days=1), deviation_reason=REASON)
    assert "before patient" in errors["actual_date"] and "consented (2025-01-15)" in errors["actual_date"]
    visit_record(visit=visit(clinical, "BL"), actual_date=CONSENT, deviation_reason=REASON)


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (PatientStatus.DECEASED, "died on 2025-05-01"),
        (PatientStatus.WITHDRAWN, "withdrew on 2025-05-01"),
        (PatientStatus.LOST, "was lost to follow-up on 2025-05-01"),
    ],
)
def test_no_visit_after_death_withdrawal_or_loss_to_follow_up(clinical, status, words):
    m3 = visit(clinical, "M3")
    patient_change_status(patient=clinical.patient, status=status, on_date=dt.date(2025, 5, 1), reason="ended")
    m3.refresh_from_db()
    m3.outcome, m3.outcome_reason = VisitOutcome.OPEN, ""  # as a visit left open before the change
    m3.save(update_fields=["outcome", "outcome_reason"])
    m3 = Visit.objects.select_related("patient__site").get(pk=m3.pk)
    errors = refused(m3, actual_date=dt.date(2025, 6, 2), deviation_reason=REASON)
    assert words in errors["actual_date"]


def test_every_error_of_a_visit_comes_at_once(clinical):
    errors = refused(
        "M3",
        clinical,
        actual_date=DAY_ZERO - dt.timedelta(days=5),
        deviation_reason=REASON,
        results={"CREAT": ("99999", "umol/L"), "C3": ("0.9", "furlongs")},
    )
    assert set(errors) == {"actual_date", "CREAT", "C3"}, errors


def test_the_batch_applies_the_same_rules_visit_by_visit(clinical):
    early = VisitEntry(DAY_ZERO - dt.timedelta(days=5), {"PLT": "210"}, deviation_reason=REASON)
    with pytest.raises(ValidationError) as excinfo:
        visits_record_batch(
            site=clinical.site, study_code=clinical.study.code, entries=[(clinical.patient.subject_code, "M1", early)]
        )
    assert "after day 0 (2025-03-03)" in " ".join(excinfo.value.message_dict["visits.0.actual_date"])
