"""Importing a historical cohort (docs/import.md): preview first, then all or nothing, idempotent, audited."""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal

import pytest

from followup.models import AdverseEvent, Result, Visit
from intake.services import cohort_import
from patients.models import ConcomitantMedication, Patient, TransplantEvent
from tests.intake.cohort import INFUSIONS, PATIENTS, REQUIRED, VISITS, cohort_files

pytestmark = pytest.mark.django_db


def _import(study, files=None, **kwargs):
    return cohort_import(study=study, files=files or cohort_files(), **kwargs)


def _where(report):
    return {(p.file, p.row, p.column, p.rule) for p in report.problems}


def test_preview_checks_every_row_and_writes_nothing(frozen_now, study, lot):
    report = _import(study, dry_run=True)

    assert report.problems == []
    assert report.written is False
    assert report.counts["patients"]["created"] == 2
    assert report.counts["visits"]["created"] == 5
    assert not Patient.objects.exists() and not TransplantEvent.objects.exists() and not Visit.objects.exists()


def test_import_writes_the_cohort_through_the_services(frozen_now, study, lot):
    report = _import(study)

    assert report.problems == [] and report.written
    assert set(Patient.objects.values_list("subject_code", flat=True)) == {"NJ-001", "NJ-002"}
    assert Patient.objects.get(subject_code="NJ-002").diagnosis_date == dt.date(2018, 3, 9)  # year first
    assert TransplantEvent.objects.count() == 3
    baseline = Visit.objects.get(patient__subject_code="NJ-001", code="BL")
    assert baseline.outcome == "completed" and baseline.actual_date == dt.date(2025, 3, 1)
    creat = Result.objects.get(visit=baseline, code="CREAT")
    assert (creat.value, creat.entered_value, creat.entered_unit) == (Decimal("88.4"), Decimal("1.0"), "mg/dL")
    assert Result.objects.filter(visit=baseline, code="EGFR", derived=True).exists()  # computed, as at every door
    censored = Result.objects.get(visit=baseline, code="ADSDNA")
    assert (censored.value, censored.comparator) == (Decimal("10"), "<")
    m3 = Visit.objects.get(patient__subject_code="NJ-001", code="M3")
    assert m3.sledai_items == ["arthritis", "rash"]
    assert Result.objects.get(visit=m3, code="SLEDAI2K").value == 6  # the total from the items
    assert Visit.objects.get(patient__subject_code="NJ-001", code="M1").actual_date == dt.date(2025, 4, 3)  # label
    by_day = Visit.objects.get(patient__subject_code="NJ-002", actual_date=dt.date(2025, 4, 5))
    assert by_day.code == "M1"  # day 33 after the first infusion: the nearest window
    assert ConcomitantMedication.objects.get().ongoing is True
    assert AdverseEvent.objects.get().pre_treatment is False


def test_every_change_is_attributed_to_the_import_and_the_file(frozen_now, study, lot):
    files = cohort_files()
    _import(study, files=files)

    digest = hashlib.sha256(dict(files)["patients.csv"]).hexdigest()
    history = Patient.history.all()
    assert {h.history_door for h in history} == {"import"}
    assert {h.history_actor for h in history if h.history_type == "+"} == {f"import sha256:{digest}"}
    visits_digest = hashlib.sha256(dict(files)["visits.csv"]).hexdigest()
    recorded = Visit.history.filter(actual_date__isnull=False)
    assert recorded.exists()
    assert {h.history_actor for h in recorded} == {f"import sha256:{visits_digest}"}
    assert {h.history_door for h in Result.history.all()} == {"import"}


def test_importing_the_same_files_again_changes_nothing(frozen_now, study, lot):
    _import(study)
    histories = [m.history.count() for m in (Patient, TransplantEvent, Visit, Result, ConcomitantMedication)]

    again = _import(study)

    assert again.problems == [] and again.changes == 0
    assert again.counts["visits"]["unchanged"] == 5 and again.counts["patients"]["unchanged"] == 2
    assert [m.history.count() for m in (Patient, TransplantEvent, Visit, Result, ConcomitantMedication)] == histories


def test_a_changed_value_is_a_correction_that_needs_the_imports_reason(frozen_now, study, lot):
    _import(study)
    visits = [dict(row) for row in VISITS]
    visits[0]["CREAT [mg/dL]"] = "1.2"
    files = cohort_files(visits=visits)

    refused = _import(study, files=files)

    assert ("visits.csv", 2, "", "correction_reason") in _where(refused)
    assert not refused.written
    assert Result.objects.get(visit__patient__subject_code="NJ-001", visit__code="BL", code="CREAT").entered_value == 1

    corrected = _import(study, files=files, reason="Transcription error in the 2019 ledger")

    assert corrected.problems == [] and corrected.changes == 1
    creat = Result.objects.get(visit__patient__subject_code="NJ-001", visit__code="BL", code="CREAT")
    assert creat.entered_value == Decimal("1.2")
    last = creat.history.first()
    assert last.history_door == "import" and last.history_change_reason == "Transcription error in the 2019 ledger"


def test_dry_run_reports_every_planted_error_by_file_row_column_and_rule(frozen_now, study, lot):
    patients = [*PATIENTS, {**PATIENTS[0], "subject_code": "NJ-003", "diagnosis_date": "03/04/2010"}]
    patients.append({**PATIENTS[0], "subject_code": "NJ-004", "consent_date": "2027-01-01"})
    infusions = [
        *INFUSIONS,
        {**INFUSIONS[0], "infusion_number": "3"},  # NJ-001 has no infusion 2
        {**INFUSIONS[1], "subject_code": "NJ-005"},  # no such patient
        {**INFUSIONS[0], "subject_code": "NJ-001", "infusion_number": "2", "infused_at": "2025-03-08 10:00",
         "lot": "NO-SUCH-LOT"},
    ]  # fmt: skip
    visits = [
        *VISITS,
        {"subject_code": "NJ-002", "visit_code": "M3", "visit_date": "2025-06-01", "SLEDAI2K": "8",
         "sledai_items": "arthritis", **REQUIRED, "CREAT [mg/dL]": "1.0", "C3 [g/L]": "30"},
        {"subject_code": "NJ-002", "visit_code": "M6", "visit_date": "2025-08-01", **REQUIRED},
        {"subject_code": "NJ-002", "visit_code": "M9", "visit_date": "2030-01-01"},
        {"subject_code": "NJ-002", "visit_code": "M99", "visit_date": "2025-06-01"},
        {"subject_code": "NJ-001", "visit_code": "M6", "visit_date": "2025-09-01", "PROT24H [g/24h]": "2.5",
         "CREAT [mg/dL]": "1.0"},
    ]  # fmt: skip
    visits[1] = {**visits[1], "CREAT [mg/dL]": ""}
    header = [*dict.fromkeys(k for row in visits for k in row), "CREAT_unit"]
    visits.append({"subject_code": "NJ-001", "visit_code": "M12", "visit_date": "2026-03-03", "CREAT [mg/dL]": "1",
                   "CREAT_unit": "mmol/L"})  # fmt: skip
    files = cohort_files(patients=patients, infusions=infusions)
    from tests.intake.cohort import csv_bytes

    files[2] = ("visits.csv", csv_bytes(visits, header))

    study.visit_definitions.filter(code="M6").update(required_items=["C3"])

    report = cohort_import(study=study, files=files, dry_run=True)

    where = _where(report)
    assert ("patients.csv", 4, "diagnosis_date", "ambiguous_date") in where
    assert any(p[:3] == ("patients.csv", 5, "consent_date") for p in where)  # in the future
    assert ("infusions.csv", 5, "infusion_number", "infusion_number") in where
    assert ("infusions.csv", 6, "subject_code", "unknown_patient") in where
    assert ("infusions.csv", 7, "lot", "unknown_lot") in where
    assert ("visits.csv", 7, "SLEDAI2K", "SLEDAI2K") in where  # the total disagrees with the items
    assert ("visits.csv", 7, "C3 [g/L]", "C3") in where  # outside the plausible range
    assert ("visits.csv", 8, "visit_date", "actual_date") in where  # outside M6's window, no deviation reason
    assert ("visits.csv", 9, "visit_date", "actual_date") in where  # in the future
    assert ("visits.csv", 10, "visit_code", "visit_code") in where
    assert ("visits.csv", 11, "C3 [g/L]", "C3") in where  # required at M6 to complete it
    assert ("visits.csv", 12, "CREAT [mg/dL]", "unit") in where  # the header and the unit column disagree
    assert not Patient.objects.exists()


def test_a_locked_record_is_refused_per_item(frozen_now, study, lot, site_a):
    from quality.services.review import lock_patient
    from registry.constants import Role
    from tests.factories import make_user

    _import(study)
    manager = make_user("dm_a", site_a, role=Role.DATA_MANAGER)
    lock_patient(patient=Patient.objects.get(subject_code="NJ-001"), reason="database lock", actor=manager)
    visits = [dict(row) for row in VISITS]
    visits[1]["CREAT [mg/dL]"] = "0.8"  # NJ-001 (locked)
    visits[4]["PRED"] = "15"  # NJ-002 (not locked)

    report = _import(study, files=cohort_files(visits=visits), reason="source check")

    assert _where(report) == {("visits.csv", 3, "visit_code", "locked")}  # NJ-002's row is not refused
    assert not report.written


def test_sledai_items_as_columns_and_a_file_saved_as_gb18030(frozen_now, study, lot):
    from tests.intake.cohort import ADVERSE_EVENTS, csv_bytes

    visits = [{**row, "SLEDAI:arthritis": "", "SLEDAI:rash": ""} for row in VISITS]
    visits[2] = {**visits[2], "sledai_items": "", "SLEDAI:arthritis": "1", "SLEDAI:rash": "0"}
    events = [{**ADVERSE_EVENTS[0], "term": "带状疱疹"}]
    files = cohort_files(visits=visits)
    files[4] = ("不良事件.csv", csv_bytes(events).decode().encode("gb18030"))

    report = _import(study, files=files)

    assert report.problems == []
    assert Visit.objects.get(patient__subject_code="NJ-001", code="M3").sledai_items == ["arthritis"]
    assert AdverseEvent.objects.get().term == "带状疱疹"


def test_a_second_import_costs_a_fixed_number_of_queries(frozen_now, study, lot, django_assert_num_queries):
    _import(study)

    with django_assert_num_queries(16):  # the study read once, each infusion, medication and event looked up by key
        again = _import(study)

    assert again.changes == 0


def test_a_status_is_applied_after_the_visits_and_a_second_import_leaves_it(frozen_now, study, lot):
    patients = [dict(row) for row in PATIENTS]
    patients[0].update(status="deceased", status_date="2025-07-01", status_reason="Renal failure")
    files = cohort_files(patients=patients)

    first = _import(study, files=files)

    assert first.problems == []
    patient = Patient.objects.get(subject_code="NJ-001")
    assert (patient.status, patient.status_date) == ("deceased", dt.date(2025, 7, 1))
    assert Visit.objects.get(patient=patient, code="M3").outcome == "completed"  # recorded before the death
    assert Visit.objects.get(patient=patient, code="M12").outcome == "not_required"
    assert _import(study, files=files).changes == 0


def test_unscheduled_visits_are_added_in_their_order_and_a_gap_is_refused(frozen_now, study, lot):
    extra = [
        {"subject_code": "NJ-001", "visit_code": "U01", "visit_label": "Flare work-up", "visit_date": "2025-05-20",
         "CREAT [umol/L]": "90"},
        {"subject_code": "NJ-002", "visit_code": "U02", "visit_label": "", "visit_date": "2025-05-21",
         "CREAT [umol/L]": "91"},
    ]  # fmt: skip

    report = _import(study, cohort_files(visits=[*VISITS, *extra]), dry_run=True)

    assert _where(report) == {("visits.csv", len(VISITS) + 3, "visit_code", "visit_code")}
    assert "U01" in report.problems[0].message

    report = _import(study, cohort_files(visits=[*VISITS, extra[0]]))

    assert report.problems == [] and report.counts["visits"]["created"] == len(VISITS) + 1
    visit = Visit.objects.get(patient__subject_code="NJ-001", code="U01")
    assert (visit.label, visit.definition_id, str(visit.results.get(code="CREAT").value)) == (
        "Flare work-up",
        None,
        "90.0000",
    )
    again = _import(study, cohort_files(visits=[*VISITS, extra[0]]))
    assert again.changes == 0 and Visit.objects.filter(definition__isnull=True).count() == 1


def test_an_empty_cell_keeps_the_stored_result_and_says_so_and_remove_removes_it_with_the_reason(
    frozen_now, study, lot
):
    assert _import(study).written
    month_1 = Visit.objects.get(patient__subject_code="NJ-001", code="M1")
    assert set(month_1.results.values_list("code", flat=True)) >= {"CREAT", "EGFR"}
    emptied = [dict(row) for row in VISITS]
    emptied[1]["CREAT [mg/dL]"] = ""

    kept = _import(study, cohort_files(visits=emptied))

    assert kept.problems == [] and kept.changes == 0
    assert [(n.file, n.row, n.column, n.rule) for n in kept.notes] == [("visits.csv", 3, "CREAT [mg/dL]", "kept")]
    assert 'Write "remove"' in kept.notes[0].message and "0.9" in kept.notes[0].message
    assert month_1.results.filter(code="CREAT").exists()

    emptied[1]["CREAT [mg/dL]"] = "remove"
    refused = _import(study, cohort_files(visits=emptied))
    assert {p.rule for p in refused.problems} == {"correction_reason"}
    assert month_1.results.filter(code="CREAT").exists()

    removed = _import(study, cohort_files(visits=emptied), reason="Creatinine was from another patient")

    assert removed.problems == [] and removed.counts["visits"]["changed"] == 1
    assert not month_1.results.filter(code__in=["CREAT", "EGFR"]).exists()  # eGFR goes with its creatinine
    history = Result.history.filter(visit_id=month_1.pk, code="CREAT", history_type="-").get()
    assert history.history_change_reason == "Creatinine was from another patient"
    assert history.history_door == "import"
    again = _import(study, cohort_files(visits=emptied), reason="Creatinine was from another patient")
    assert again.problems == [] and again.changes == 0  # removed already: nothing left to change
