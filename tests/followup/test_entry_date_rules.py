"""The time rules of adverse events and medications (docs/clinical-rules.md, "Adverse events"): nothing before
consent or after death, nothing in the future; an event before the first infusion is allowed and flagged
pre-treatment (not treatment-emergent), and the flag follows day 0 when infusion 1 is corrected.

Default timeline: consent 2025-01-15, day 0 2025-03-03 (tests/factories.py)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from followup import constants as c
from followup.integrity import time_rule_breaches
from followup.models import AdverseEvent
from followup.services import ae_record
from patients.constants import PatientStatus
from patients.models import ConcomitantMedication
from patients.services import medication_record, patient_change_status
from tests.factories import CONSENT, DAY_ZERO, make_clinical

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinical():
    return make_clinical()


def ae(clinical, onset: dt.date, **fields) -> AdverseEvent:
    values = {
        "term": "Herpes zoster",
        "category": c.AECategory.INFECTION,
        "onset_date": onset,
        "grade": 2,
        "relatedness": c.Relatedness.UNLIKELY,
        "expected": True,
        "aware_date": onset,
        **fields,
    }
    return ae_record(patient=clinical.patient, **values)


def medication(clinical, start: dt.date):
    return medication_record(
        patient=clinical.patient,
        drug="hydroxychloroquine",
        dose=Decimal("200"),
        unit="mg",
        frequency="bid",
        start_date=start,
    )


def test_an_event_before_consent_is_refused(clinical):
    with pytest.raises(ValidationError) as excinfo:
        ae(clinical, CONSENT - dt.timedelta(days=1))
    assert "before patient" in excinfo.value.message_dict["onset_date"][0]
    assert not AdverseEvent.objects.exists()


def test_an_event_between_consent_and_the_first_infusion_is_flagged_pre_treatment(clinical):
    before = ae(clinical, DAY_ZERO - dt.timedelta(days=2))
    on_day_zero = ae(clinical, DAY_ZERO, term="Fever")
    assert (before.pre_treatment, on_day_zero.pre_treatment) == (True, False)


def test_the_flag_follows_day_zero_when_infusion_1_is_corrected(clinical):
    from patients.services import transplant_correct

    event = ae(clinical, DAY_ZERO + dt.timedelta(days=1))
    assert not event.pre_treatment
    transplant = clinical.transplant
    transplant_correct(
        transplant=transplant,
        reason="infusion date transcribed wrongly",
        infused_at=transplant.infused_at + dt.timedelta(days=3),
    )
    event.refresh_from_db()
    assert event.pre_treatment
    assert event.history.first().history_change_reason.startswith("day 0 moved to")


def test_nothing_starts_after_death(clinical):
    patient_change_status(
        patient=clinical.patient,
        status=PatientStatus.DECEASED,
        on_date=DAY_ZERO + dt.timedelta(days=40),
        reason="sepsis",
    )
    with pytest.raises(ValidationError) as excinfo:
        ae(clinical, DAY_ZERO + dt.timedelta(days=41))
    assert "died on" in excinfo.value.message_dict["onset_date"][0]
    with pytest.raises(ValidationError) as excinfo:
        medication(clinical, DAY_ZERO + dt.timedelta(days=41))
    assert "died on" in excinfo.value.message_dict["start_date"][0]


def test_a_medication_taken_since_before_consent_is_kept_as_given_and_not_a_breach(clinical):
    taken = medication(clinical, CONSENT - dt.timedelta(days=400))
    assert ConcomitantMedication.objects.get(pk=taken.pk).start_date == CONSENT - dt.timedelta(days=400)
    assert [b for b in time_rule_breaches() if b.record.startswith("medication")] == []


def test_an_event_after_withdrawal_is_still_recorded_and_not_a_breach(clinical):
    patient_change_status(
        patient=clinical.patient,
        status=PatientStatus.WITHDRAWN,
        on_date=DAY_ZERO + dt.timedelta(days=40),
        reason="moved away",
    )
    ae(clinical, DAY_ZERO + dt.timedelta(days=45))
    assert [b for b in time_rule_breaches() if b.record.startswith("adverse event")] == []
