"""The registry's own tidy CSV export, imported into an empty study, gives the same cohort report."""

from __future__ import annotations

import io

import pytest
from django.utils import timezone

from core.spreadsheets import SpreadsheetSafeWriter
from intake.services import cohort_import
from reporting.cohort import cohort_report
from reporting.exports.common import Context
from reporting.exports.tidy import TIDY_TABLES
from tests.factories import make_lot, make_study
from tests.intake.cohort import LOT, cohort_files

pytestmark = pytest.mark.django_db
CARRIED = ["patients", "infusions", "visits", "results", "medications", "adverse_events"]


def _tidy_files(study, sites) -> list[tuple[str, bytes]]:
    ctx = Context(
        job=None,
        study=study,
        site_ids=[s.pk for s in sites],
        sites={s.pk: s for s in sites},
        generated_at=timezone.now(),
    )
    files = []
    for table in TIDY_TABLES:
        name = table.name.removeprefix("tidy/").removesuffix(".csv")
        if name not in CARRIED:
            continue
        buffer = io.StringIO()
        writer = SpreadsheetSafeWriter(buffer, lineterminator="\n")
        writer.writerow([column.name for column in table.columns])
        writer.writerows(table.rows(ctx))
        files.append((f"{name}.csv", buffer.getvalue().encode()))
    return files


def _comparable(report: dict) -> dict:
    """The report without what names the study or says when it was made."""
    drop = {"study", "generated_at", "filter", "patient_ids"}
    if isinstance(report, dict):
        return {k: _comparable(v) for k, v in report.items() if k not in drop}
    if isinstance(report, list):
        return [_comparable(v) for v in report]
    return report


def test_the_tidy_export_imports_into_an_empty_study_and_gives_the_same_report(frozen_now, study, site_a):
    make_lot(study, site_a, lot_number=LOT)
    first = cohort_import(study=study, files=cohort_files())
    assert first.problems == [] and first.written
    empty = make_study(site_a, code="MSCT-COPY")
    make_lot(empty, site_a, lot_number="UC-COPY-001")  # lot numbers are unique across the registry
    files = [
        (n, c.replace(LOT.encode(), b"UC-COPY-001") if n == "infusions.csv" else c)
        for n, c in _tidy_files(study, [site_a])
    ]

    copied = cohort_import(study=empty, files=files)

    assert copied.problems == [] and copied.written
    before = cohort_report(study=study, site_ids=[site_a.pk])
    after = cohort_report(study=empty, site_ids=[site_a.pk])
    assert _comparable(after) == _comparable(before)
    assert before["n_patients"] == 2 and before["baseline"]["CREAT"]["mean"] == 88.4


def test_an_unscheduled_visit_travels_with_its_results_and_a_second_import_changes_nothing(frozen_now, study, site_a):
    import datetime as dt

    from followup.models import Visit
    from followup.services import visit_record_unscheduled
    from patients.models import Patient

    make_lot(study, site_a, lot_number=LOT)
    assert cohort_import(study=study, files=cohort_files()).written
    patient = Patient.objects.get(study=study, subject_code="NJ-001")
    visit_record_unscheduled(
        patient=patient, actual_date=dt.date(2025, 5, 20), results={"CREAT": "90"}, label="Flare work-up"
    )
    empty = make_study(site_a, code="MSCT-COPY")
    make_lot(empty, site_a, lot_number="UC-COPY-001")
    files = [
        (n, c.replace(LOT.encode(), b"UC-COPY-001") if n == "infusions.csv" else c)
        for n, c in _tidy_files(study, [site_a])
    ]

    copied = cohort_import(study=empty, files=files)

    assert copied.problems == [] and copied.written
    unscheduled = Visit.objects.get(patient__study=empty, patient__subject_code="NJ-001", definition__isnull=True)
    assert (unscheduled.code, unscheduled.label, unscheduled.actual_date) == (
        "U01",
        "Flare work-up",
        dt.date(2025, 5, 20),
    )
    assert str(unscheduled.results.get(code="CREAT").value) == "90.0000"
    again = cohort_import(study=empty, files=files)
    assert again.problems == [] and again.changes == 0
    assert Visit.objects.filter(patient__study=empty, definition__isnull=True).count() == 1
