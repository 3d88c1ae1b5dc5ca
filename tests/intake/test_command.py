"""`manage.py import_cohort`: templates, a dry run, an import from a workbook."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.management import CommandError, call_command

from followup.models import Visit
from intake.services import cohort_import, workbook_template
from patients.models import Patient
from tests.intake.cohort import PATIENTS, VISITS, cohort_files

pytestmark = pytest.mark.django_db


def test_template_writes_a_header_an_example_and_every_column_described_in_both_languages(tmp_path):
    call_command("import_cohort", template=str(tmp_path), stdout=io.StringIO())

    with (tmp_path / "visits.csv").open(encoding="utf-8-sig") as handle:
        header, example = list(csv.reader(handle))
    assert header[:3] == ["subject_code", "visit_code", "visit_date"]
    assert "CREAT [umol/L]" in header and example[0].startswith("#")
    with (tmp_path / "columns.csv").open(encoding="utf-8-sig") as handle:
        described = list(csv.DictReader(handle))
    assert {"patients.csv", "infusions.csv", "visits.csv", "medications.csv", "adverse_events.csv"} <= {
        row["file"] for row in described
    }
    visit_date = next(row for row in described if row["file"] == "visits.csv" and row["column"] == "visit_date")
    assert "ISO" in visit_date["description"] and "日期" in visit_date["说明"]


def test_an_empty_template_imports_nothing_and_finds_no_problem(tmp_path, study):
    from intake.services import templates_write

    files = [(path.name, path.read_bytes()) for path in templates_write(tmp_path) if path.name != "columns.csv"]

    report = cohort_import(study=study, files=files, dry_run=True)

    assert report.problems == [] and report.changes == 0


def test_command_dry_run_reports_and_writes_nothing(tmp_path, frozen_now, study, lot):
    paths = []
    for name, content in cohort_files(patients=[*PATIENTS, {**PATIENTS[0], "subject_code": "NJ-9", "sex": ""}]):
        (tmp_path / name).write_bytes(content)
        paths.append(str(tmp_path / name))
    out = io.StringIO()

    with pytest.raises(CommandError, match="1 problem"):
        call_command("import_cohort", *paths, study=study.code, dry_run=True, stdout=out, stderr=io.StringIO())

    assert "patients.csv, row 4, column sex [required]" in out.getvalue()
    assert not Patient.objects.exists()


def test_command_imports_and_prints_what_changed(tmp_path, frozen_now, study, lot, site_a):
    paths = []
    for name, content in cohort_files():
        (tmp_path / name).write_bytes(content)
        paths.append(str(tmp_path / name))
    out = io.StringIO()

    call_command("import_cohort", *paths, study=study.code, site=site_a.code, stdout=out, stderr=io.StringIO())

    assert "visits: created 5" in out.getvalue()
    assert Visit.objects.filter(outcome="completed").count() == 5


def test_a_filled_workbook_imports_like_the_csv_files(frozen_now, study, lot):
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(workbook_template()))
    for name, content in cohort_files():
        sheet = book[name.removesuffix(".csv")]
        rows = list(csv.reader(io.StringIO(content.decode())))
        sheet.delete_rows(1, sheet.max_row)
        for row in rows:
            sheet.append([value or None for value in row])
    buffer = io.BytesIO()
    book.save(buffer)

    report = cohort_import(study=study, files=[("cohort.xlsx", buffer.getvalue())])

    assert report.problems == [] and report.written
    assert Visit.objects.filter(outcome="completed").count() == len(VISITS)
    assert {p.file for p in report.problems} == set()
    assert "cohort.xlsx:visits" in report.files


def test_in_chunks_each_chunk_commits_and_a_failed_one_names_the_resume_point(frozen_now, study, lot, monkeypatch):
    from django.core.exceptions import ValidationError

    from intake.services import importing

    real = importing.visits_record_batch

    def refuse_nj002_alone(*, site, study_code, entries):
        if {subject for subject, _, _ in entries} == {"NJ-002"}:
            raise ValidationError({"visits.0.actual_date": ["refused for the test"]})
        return real(site=site, study_code=study_code, entries=entries)

    monkeypatch.setattr(importing, "visits_record_batch", refuse_nj002_alone)

    report = cohort_import(study=study, files=cohort_files(), chunk_patients=1)

    assert report.committed_through == "NJ-001" and report.resume_from == "NJ-002"
    assert [(p.file, p.row) for p in report.problems] == [("visits.csv", 5)]
    assert list(Patient.objects.values_list("subject_code", flat=True)) == ["NJ-001"]

    monkeypatch.setattr(importing, "visits_record_batch", real)
    resumed = cohort_import(study=study, files=cohort_files(), chunk_patients=1)

    assert resumed.problems == [] and resumed.committed_through == "NJ-002"
    assert resumed.counts["patients"] == {"unchanged": 1, "created": 1}
    assert Visit.objects.filter(outcome="completed").count() == len(VISITS)
