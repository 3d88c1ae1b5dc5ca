"""Enrolling patients: who may, and the subject code rule, through the service and in the database."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, transaction

from patients import constants as c
from patients.models import Patient
from patients.services import patient_enroll, patient_update
from registry.constants import Sex
from tests.factories import PatientFactory, StudyFactory
from tests.helpers import refused

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_now")]

HistoricalPatient = Patient.history.model


def enrol(*, study, site, subject_code="S-001", actor=None, **overrides):
    fields = {
        "sex": Sex.FEMALE,
        "birth_year": 1990,
        "diagnosis_date": dt.date(2018, 6, 1),
        "classification_criteria": c.ClassificationCriteria.ACR_1997,
        "consent_date": dt.date(2026, 1, 5),
        "refractory_to": [c.Drug.CYCLOPHOSPHAMIDE],
        **overrides,
    }
    return patient_enroll(study=study, site=site, subject_code=subject_code, actor=actor, **fields)


def test_coordinator_enrols_a_patient_at_own_site(study, site_a, coordinator_a):
    patient = enrol(study=study, site=site_a, actor=coordinator_a)

    patient.refresh_from_db()
    assert patient.status == c.PatientStatus.ENROLLED
    assert patient.status_date == dt.date(2026, 1, 5)
    assert patient.site == site_a


def test_patient_without_consent_stays_in_screening(study, site_a):
    patient = enrol(study=study, site=site_a, consent_date=None)

    assert patient.status == c.PatientStatus.SCREENING
    assert patient.status_date is None


def test_duplicate_subject_code_in_a_study_is_refused(study, site_a, site_b):
    enrol(study=study, site=site_a, subject_code="S-001")

    with refused("subject_code", "is not available in this study", Patient, HistoricalPatient):
        enrol(study=study, site=site_b, subject_code="S-001")


def test_same_subject_code_in_another_study_is_accepted(study, site_a):
    other_study = StudyFactory(code="OTHER", sites=[site_a])
    enrol(study=study, site=site_a, subject_code="S-001")

    enrol(study=other_study, site=site_a, subject_code="S-001")

    assert Patient.objects.filter(subject_code="S-001").count() == 2


def test_coordinator_of_site_b_cannot_add_a_patient_to_site_a(study, site_a, coordinator_b):
    with refused("site", "writing role", Patient, HistoricalPatient):
        enrol(study=study, site=site_a, actor=coordinator_b)


def test_monitor_cannot_add_a_patient(study, site_a, monitor_a):
    with refused("site", "writing role", Patient, HistoricalPatient):
        enrol(study=study, site=site_a, actor=monitor_a)


@pytest.mark.parametrize("role", ["coordinator", "superuser"])
def test_inactive_user_cannot_add_a_patient(study, site_a, coordinator_a, superuser, role):
    user = {"coordinator": coordinator_a, "superuser": superuser}[role]
    user.is_active = False
    user.save()

    with refused("site", "writing role", Patient, HistoricalPatient):
        enrol(study=study, site=site_a, actor=user)


def test_site_outside_the_study_is_refused(study):
    from tests.factories import SiteFactory

    outsider = SiteFactory(code="ELSEWHERE")

    with refused("site", "does not take part in the study", Patient, HistoricalPatient):
        enrol(study=study, site=outsider)


def test_consent_in_the_future_is_refused(study, site_a):
    with refused("consent_date", "cannot be in the future", Patient, HistoricalPatient):
        enrol(study=study, site=site_a, consent_date=dt.date(2026, 9, 2))


def test_changing_a_patient_needs_a_reason(study, site_a):
    patient = PatientFactory(study=study, site=site_a)

    with refused("reason", "Give a reason", HistoricalPatient):
        patient_update(patient=patient, birth_year=1989)

    patient.refresh_from_db()
    assert patient.birth_year == 1988


def test_database_refuses_a_duplicate_subject_code_written_around_the_services(study, site_a, site_b):
    PatientFactory(study=study, site=site_a, subject_code="S-001")

    with pytest.raises(IntegrityError), transaction.atomic():
        Patient.objects.create(
            study=study,
            site=site_b,
            subject_code="S-001",
            sex=Sex.MALE,
            birth_year=1980,
            diagnosis_date=dt.date(2015, 1, 1),
            classification_criteria=c.ClassificationCriteria.ACR_1997,
            consent_date=dt.date(2026, 1, 1),
            status=c.PatientStatus.ENROLLED,
            status_date=dt.date(2026, 1, 1),
        )

    assert Patient.objects.filter(subject_code="S-001").count() == 1


def test_database_refuses_an_enrolled_patient_without_consent(study, site_a):
    with pytest.raises(IntegrityError), transaction.atomic():
        Patient.objects.create(
            study=study,
            site=site_a,
            subject_code="S-002",
            sex=Sex.MALE,
            birth_year=1980,
            diagnosis_date=dt.date(2015, 1, 1),
            classification_criteria=c.ClassificationCriteria.ACR_1997,
            consent_date=None,
            status=c.PatientStatus.ENROLLED,
        )


def test_database_refuses_a_withdrawn_patient_without_a_status_date(study, site_a):
    with pytest.raises(IntegrityError), transaction.atomic():
        Patient.objects.create(
            study=study,
            site=site_a,
            subject_code="S-003",
            sex=Sex.MALE,
            birth_year=1980,
            diagnosis_date=dt.date(2015, 1, 1),
            classification_criteria=c.ClassificationCriteria.ACR_1997,
            consent_date=dt.date(2026, 1, 1),
            status=c.PatientStatus.WITHDRAWN,
            status_date=None,
        )
