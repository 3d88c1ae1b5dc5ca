"""Every service that writes clinical data announces the write before and after it (core/signals.py): a
receiver of `record_changing` that raises refuses the write and nothing is stored; `record_changed` names
the record written, inside the same transaction."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from core.signals import record_changed, record_changing, records_changed, records_changing
from followup.models import AdverseEvent, Result, Visit
from followup.services import VisitEntry, ae_record, visit_mark_missed, visit_record, visits_record_batch
from patients.models import ConcomitantMedication, Patient, TransplantEvent
from patients.services import medication_record, patient_change_status, patient_update, transplant_record
from tests.factories import DAY_ZERO, local_datetime, make_clinical, make_patient

pytestmark = pytest.mark.django_db

M3 = DAY_ZERO + dt.timedelta(days=91)


@pytest.fixture
def heard():
    seen = {"changing": [], "changed": []}

    def on_changing(sender, instance, patient_id, study_id, **kwargs):
        seen["changing"].append((sender, patient_id, study_id))
        if seen.get("refuse"):
            raise ValidationError({"record": "refused"})

    def on_changed(sender, instance, patient_id, study_id, **kwargs):
        seen["changed"].append((sender, instance.pk, patient_id, study_id))

    def on_batch_changing(sender, instances, patient_ids, study_id, **kwargs):
        seen["changing"] += [(sender, p, study_id) for p in patient_ids]
        if seen.get("refuse"):
            return {i.pk: ValidationError({"record": "refused"}) for i in instances}
        return {}

    def on_batch(sender, instances, patient_ids, study_id, **kwargs):
        seen["changed"] += [(sender, i.pk, p, study_id) for i, p in zip(instances, patient_ids, strict=True)]
        seen["batches"] = seen.get("batches", 0) + 1

    record_changing.connect(on_changing, dispatch_uid="test-changing")
    record_changed.connect(on_changed, dispatch_uid="test-changed")
    records_changed.connect(on_batch, dispatch_uid="test-batch")
    records_changing.connect(on_batch_changing, dispatch_uid="test-batch-changing")
    yield seen
    records_changing.disconnect(dispatch_uid="test-batch-changing")
    record_changing.disconnect(dispatch_uid="test-changing")
    record_changed.disconnect(dispatch_uid="test-changed")
    records_changed.disconnect(dispatch_uid="test-batch")


def _writes(clinical):
    patient, study = clinical.patient, clinical.study
    return {
        "patient update": (Patient, lambda: patient_update(patient=patient, reason="typo", birth_year=1991)),
        "patient status": (
            Patient,
            lambda: patient_change_status(patient=patient, status="withdrawn", on_date=M3, reason="moved away"),
        ),
        "infusion": (
            Patient,
            lambda: transplant_record(
                patient=patient,
                lot=clinical.lot,
                infused_at=local_datetime(DAY_ZERO + dt.timedelta(days=7), clinical.site),
                weight_kg=Decimal("60"),
                dose_cells_per_kg=1_000_000,
            ),
        ),
        "medication": (
            ConcomitantMedication,
            lambda: medication_record(
                patient=patient, drug="prednisone", dose=Decimal("10"), unit="mg", frequency="bid", start_date=M3
            ),
        ),
        "adverse event": (
            AdverseEvent,
            lambda: ae_record(
                patient=patient,
                transplant=None,
                term="Herpes zoster",
                category="infection",
                onset_date=M3,
                grade=2,
                relatedness="possible",
                expected=False,
                aware_date=M3,
            ),
        ),
        "visit": (Visit, lambda: visit_record(visit=clinical.visit("M3"), actual_date=M3, results={"CREAT": "70"})),
        "visit batch": (
            Visit,
            lambda: visits_record_batch(
                site=clinical.site,
                study_code=study.code,
                entries=[(patient.subject_code, "M3", VisitEntry(M3, {"CREAT": "70"}))],
            ),
        ),
        "visit missed": (Visit, lambda: visit_mark_missed(visit=clinical.visit("M3"), reason="no show")),
    }


WRITES = [
    "patient update",
    "patient status",
    "infusion",
    "medication",
    "adverse event",
    "visit",
    "visit batch",
    "visit missed",
]


@pytest.mark.parametrize("name", WRITES)
def test_a_refusing_receiver_stops_the_write_and_nothing_is_stored(heard, name, time_machine):
    time_machine.move_to(dt.datetime(2025, 7, 1, 12, tzinfo=dt.UTC))
    clinical = make_clinical()
    _, write = _writes(clinical)[name]
    before = (
        list(Patient.objects.values_list("birth_year", "status")),
        TransplantEvent.objects.count(),
        ConcomitantMedication.objects.count(),
        AdverseEvent.objects.count(),
        list(Visit.objects.values_list("outcome", flat=True).order_by("pk")),
        Result.objects.count(),
    )
    heard["refuse"] = True
    heard["changed"].clear()
    with pytest.raises(ValidationError):
        write()
    after = (
        list(Patient.objects.values_list("birth_year", "status")),
        TransplantEvent.objects.count(),
        ConcomitantMedication.objects.count(),
        AdverseEvent.objects.count(),
        list(Visit.objects.values_list("outcome", flat=True).order_by("pk")),
        Result.objects.count(),
    )
    assert after == before
    assert heard["changed"] == []


@pytest.mark.parametrize("name", WRITES)
def test_every_write_names_its_record_patient_and_study(heard, name, time_machine):
    time_machine.move_to(dt.datetime(2025, 7, 1, 12, tzinfo=dt.UTC))
    clinical = make_clinical()
    model, write = _writes(clinical)[name]
    heard["changing"].clear()
    heard["changed"].clear()
    written = write()
    record = written[0] if isinstance(written, list) else written
    assert heard["changing"][0] == (model, clinical.patient.pk, clinical.study.pk)
    assert (type(record), record.pk, clinical.patient.pk, clinical.study.pk) in heard["changed"]


def test_enrolling_announces_the_study_before_the_patient_exists(heard):
    clinical = make_clinical()
    heard["changing"].clear()
    patient = make_patient(clinical.study, clinical.site)
    assert heard["changing"] == [(Patient, None, clinical.study.pk)]
    assert heard["changed"][-1] == (Patient, patient.pk, patient.pk, clinical.study.pk)


def test_a_batch_announces_its_visits_once_after_the_write(heard, time_machine):
    time_machine.move_to(dt.datetime(2025, 7, 1, 12, tzinfo=dt.UTC))
    clinical = make_clinical()
    other = make_patient(clinical.study, clinical.site)
    transplant_record(
        patient=other,
        lot=clinical.lot,
        infused_at=local_datetime(DAY_ZERO, clinical.site),
        weight_kg=Decimal("60"),
        dose_cells_per_kg=1_000_000,
    )
    heard["changed"].clear()
    visits = visits_record_batch(
        site=clinical.site,
        study_code=clinical.study.code,
        entries=[(p.subject_code, "M3", VisitEntry(M3, {"CREAT": "70"})) for p in (clinical.patient, other)],
    )
    assert heard["batches"] == 1
    assert heard["changed"] == [(Visit, v.pk, v.patient_id, clinical.study.pk) for v in visits]
