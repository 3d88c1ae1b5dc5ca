"""`manage.py check_data`: stored records that break a time rule (written before the rules held, or around
them) are listed for a data manager, one line each, naming the rule; a clean registry lists none."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from followup.models import AdverseEvent, Visit
from followup.services import ae_record, visit_record
from patients.models import ConcomitantMedication
from patients.services import medication_record
from tests.factories import CONSENT, DAY_ZERO, make_clinical

pytestmark = pytest.mark.django_db


def check(**options) -> tuple[int, list[str]]:
    out = StringIO()
    try:
        call_command("check_data", stdout=out, **options)
        status = 0
    except SystemExit as exc:
        status = exc.code
    return status, out.getvalue().splitlines()


@pytest.fixture
def clinical():
    clinical = make_clinical()
    visits = {v.code: v for v in Visit.objects.filter(patient=clinical.patient)}
    visit_record(visit=visits["BL"], actual_date=DAY_ZERO, results={"PLT": "210"})
    visit_record(visit=visits["M1"], actual_date=DAY_ZERO + dt.timedelta(days=30), results={"PLT": "220"})
    medication_record(
        patient=clinical.patient,
        drug="prednisone",
        dose=Decimal("10"),
        unit="mg",
        frequency="daily",
        start_date=CONSENT + dt.timedelta(days=5),
    )
    ae_record(
        patient=clinical.patient,
        transplant=None,
        term="Herpes zoster",
        category="infection",
        onset_date=DAY_ZERO + dt.timedelta(days=40),
        grade=2,
        relatedness="unlikely",
        expected=False,
        aware_date=DAY_ZERO + dt.timedelta(days=41),
    )
    clinical.visits = visits
    return clinical


def test_a_clean_registry_lists_nothing(clinical):
    assert check() == (0, ["0 record(s) break a time rule."])


def test_records_stored_against_the_rules_are_each_listed_with_the_rule(clinical):
    subject, site = clinical.patient.subject_code, clinical.site.code
    Visit.objects.filter(pk=clinical.visits["M1"].pk).update(actual_date=DAY_ZERO - dt.timedelta(days=5))
    Visit.objects.filter(pk=clinical.visits["BL"].pk).update(actual_date=CONSENT - dt.timedelta(days=2))
    ConcomitantMedication.objects.filter(patient=clinical.patient).update(start_date=dt.date(2099, 1, 14))
    AdverseEvent.objects.filter(patient=clinical.patient).update(onset_date=CONSENT - dt.timedelta(days=3))
    medication = ConcomitantMedication.objects.get(patient=clinical.patient)
    ae = AdverseEvent.objects.get(patient=clinical.patient)

    status, lines = check(study=clinical.study.code)
    assert status == 1
    assert lines == [
        f"{site}\t{subject}\tadverse event {ae.pk}\t2025-01-12\tbefore consent (2025-01-15)",
        f"{site}\t{subject}\tvisit BL\t2025-01-13\tbefore consent (2025-01-15)",
        f"{site}\t{subject}\tvisit M1\t2025-02-26\ton or before day 0 (2025-03-03)",
        f"{site}\t{subject}\tmedication {medication.pk}\t2099-01-14\tin the future",
        "4 record(s) break a time rule.",
    ]


def test_a_study_without_breaches_lists_nothing_and_an_unknown_study_is_refused(clinical):
    Visit.objects.filter(pk=clinical.visits["M1"].pk).update(actual_date=DAY_ZERO - dt.timedelta(days=5))
    other = make_clinical()
    assert check(study=other.study.code) == (0, ["0 record(s) break a time rule."])
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No study NOPE"):
        check(study="NOPE")
