"""Factories of the patients app. Patients are enrolled through `patient_enroll` (consent given)."""

from __future__ import annotations

import datetime as dt

import factory
from factory.django import DjangoModelFactory

from patients import constants as c
from patients.models import Patient
from registry.constants import Sex
from tests.registry.factories import StudyFactory


class PatientFactory(DjangoModelFactory):
    """An enrolled patient (consent 2025-12-15) at the first site of the study."""

    class Meta:
        model = Patient

    study = factory.SubFactory(StudyFactory)
    site = factory.LazyAttribute(lambda o: o.study.sites.order_by("pk").first())
    subject_code = factory.Sequence(lambda n: f"S{n:04d}")
    sex = Sex.FEMALE
    birth_year = 1988
    diagnosis_date = dt.date(2019, 4, 10)
    classification_criteria = c.ClassificationCriteria.SLICC_2012
    consent_date = dt.date(2025, 12, 15)
    refractory_to = factory.LazyFunction(lambda: [c.Drug.CYCLOPHOSPHAMIDE, c.Drug.PREDNISONE])

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        from patients.services import patient_enroll

        return patient_enroll(**kwargs)
