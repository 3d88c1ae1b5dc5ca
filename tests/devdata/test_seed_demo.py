"""`manage.py seed_demo`: a demonstration study made through the services, idempotent and audited.

The demo is seeded once for the module (8 patients) inside a transaction that is rolled back at the end,
so the tests read the same data and leave the database as they found it.
"""

from __future__ import annotations

import random
from decimal import Decimal
from io import StringIO
from statistics import mean

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import transaction
from django.db.models import Count

from devdata.demo import FAILED_LOT_NUMBER, STUDY_CODE, plan_course, plan_visit
from followup.models import AdverseEvent, ComputedOutcome, Result, Visit
from patients.constants import PatientStatus
from patients.models import Patient, TransplantEvent
from registry.constants import ReleaseStatus
from registry.models import CellProduct, Site, Study
from tests.helpers import row_counts

pytestmark = pytest.mark.django_db

PATIENTS = 8


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", patients=PATIENTS, quiet=True, stdout=out)
    return out.getvalue()


@pytest.fixture(scope="module")
def seeded(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), transaction.atomic():
        yield seed()
        transaction.set_rollback(True)


def sledai_mean(visit_code: str) -> float:
    values = Result.objects.filter(code="SLEDAI2K", visit__code=visit_code).values_list("value", flat=True)
    assert values, f"no SLEDAI-2K recorded at {visit_code}"
    return mean(float(v) for v in values)


def test_study_with_two_sites_and_staff(seeded, django_user_model):
    study = Study.objects.get(code=STUDY_CODE)

    assert study.registration_id == "NCT01741857"
    assert study.target_enrolment == 40
    assert set(study.sites.values_list("code", flat=True)) == {"NJDT", "JSPH"}
    assert Site.objects.count() == 2
    assert Patient.objects.filter(study=study).count() == PATIENTS
    assert set(Patient.objects.values_list("site__code", flat=True)) == {"NJDT", "JSPH"}
    staff = django_user_model.objects.filter(username__in=["coordinator.njdt", "coordinator.jsph", "investigator.njdt"])
    assert staff.count() == 3
    assert all(user.is_staff and not user.has_usable_password() for user in staff)
    assert staff.get(username="investigator.njdt").memberships.get().role == "investigator"


def test_failed_lot_exists_and_nobody_received_it(seeded):
    lot = CellProduct.objects.get(lot_number=FAILED_LOT_NUMBER)

    assert lot.release_status == ReleaseStatus.FAILED
    assert any("cd34_pct" in failure for failure in lot.release_failures)
    assert not TransplantEvent.objects.filter(lot=lot).exists()
    assert not TransplantEvent.objects.exclude(lot__release_status=ReleaseStatus.RELEASED).exists()


def test_single_and_double_infusions_from_both_sources(seeded):
    per_patient = set(Patient.objects.annotate(n=Count("transplants")).values_list("n", flat=True))

    assert per_patient == {1, 2}
    assert set(TransplantEvent.objects.values_list("lot__tissue_source", flat=True)) == {
        "umbilical_cord",
        "bone_marrow",
    }
    assert set(TransplantEvent.objects.values_list("dose_cells_per_kg", flat=True)) == {1_000_000}


def test_disease_activity_falls_by_twelve_months(seeded):
    assert sledai_mean("BL") - sledai_mean("M12") >= 4


def test_results_entered_in_alternative_units_are_converted(seeded):
    factors = {
        ("PROT24H", "mg/24h"): Decimal("0.001"),
        ("CREAT", "mg/dL"): Decimal("88.4"),
        ("C3", "mg/dL"): Decimal("0.01"),
    }

    for (code, unit), factor in factors.items():
        rows = Result.objects.filter(code=code, entered_unit=unit)
        assert rows.exists(), f"no {code} entered in {unit}"
        assert all(row.value == row.entered_value * factor for row in rows)


def test_relapse_death_and_withdrawal(seeded):
    assert ComputedOutcome.objects.filter(relapse=True).exists()
    deceased = Patient.objects.get(status=PatientStatus.DECEASED)
    death = AdverseEvent.objects.get(patient=deceased, grade=5)
    assert death.serious_death and death.outcome == "fatal"
    assert death.resolution_date == deceased.status_date
    assert death.relatedness == "unrelated"
    assert Patient.objects.filter(status=PatientStatus.WITHDRAWN).exists()
    # Leaving follow-up took the later visits out of the schedule.
    left = Visit.objects.filter(patient__status__in=[PatientStatus.DECEASED, PatientStatus.WITHDRAWN])
    assert not left.filter(outcome="open").exists()
    assert left.filter(outcome="not_required").exists()


def test_second_run_adds_nothing(seeded):
    models = (Patient, Visit, Result, AdverseEvent, TransplantEvent, CellProduct)
    before = row_counts(*models)

    output = seed()

    assert row_counts(*models) == before
    assert "Nothing added" in output


def test_every_history_row_is_attributed_to_the_command(seeded):
    history = [m for m in apps.get_models() if m.__name__.startswith("Historical") and hasattr(m, "history_door")]
    rows = 0
    for model in history:
        assert set(model.objects.values_list("history_door", flat=True)) <= {"command"}, model.__name__
        rows += model.objects.count()
    assert rows > 0


def test_a_patient_depends_on_the_seed_and_the_subject_code_only():
    codes = ["BL", "D7", "M1", "M3", "M6", "M9", "M12", "M18", "M24"]
    units = {"PROT24H": "g/24h", "CREAT": "umol/L", "C3": "g/L"}

    def course_and_baseline(seed: int, subject: str):
        rng = random.Random(f"{seed}:{subject}")
        course = plan_course(number=2, rng=rng, codes=codes, sex="F")
        return course, plan_visit(code="BL", course=course, previous_items=[], rng=rng, units=units)

    assert course_and_baseline(2007, "NJDT-002") == course_and_baseline(2007, "NJDT-002")
    assert course_and_baseline(2007, "NJDT-002") != course_and_baseline(2008, "NJDT-002")
