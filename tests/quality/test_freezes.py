"""A freeze keeps the export and the cohort report of the moment it was taken: asked for later, after new
data, they are the same bytes, while a fresh export and report show the new data."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from followup.services import visit_record
from quality.services import freezes
from reporting.cohort import cohort_report
from reporting.exports import export_file, export_job_request, export_job_run
from reporting.rendering import render_csv
from tests.factories import make_patient, make_transplant

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def export_dir(settings, tmp_path) -> Path:
    settings.EXPORT_DIR = tmp_path / "exports"
    return settings.EXPORT_DIR


def _fresh_export(study, user) -> bytes:
    job = export_job_request(study=study, user=user)
    return export_file(export_job_run(job_id=job.pk)).read_bytes()


@pytest.mark.slow
def test_a_freeze_reproduces_its_export_and_report_after_new_data(clinical, data_manager_a, study, site_a):
    freeze = freezes.freeze_create(study=study, name="Interim 2026", actor=data_manager_a)
    kept_export = freezes.freeze_export_bytes(freeze)
    kept_report = freeze.report_csv
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(kept_export)).read("manifest.json"))
    assert manifest["freeze"] == freeze.pk and manifest["sites"] == [site_a.code]
    assert hashlib.sha256(kept_export).hexdigest() == freeze.export_sha256

    # New data after the freeze: a second patient, infused, with a recorded visit.
    later = make_patient(study, site_a)
    make_transplant(later, clinical.lot)
    visit_record(visit=later.visits.get(code="BL"), actual_date=later.visits.get(code="BL").target_date)

    freeze.refresh_from_db()
    assert freezes.freeze_verify(freeze) == {"export": True, "report": True}
    assert freezes.freeze_export_bytes(freeze) == kept_export
    assert freeze.report_csv == kept_report
    now_report = render_csv(cohort_report(study=study, site_ids=freeze.site_ids))
    assert now_report != kept_report  # the new patient counts now, not in the freeze
    fresh = zipfile.ZipFile(io.BytesIO(_fresh_export(study, data_manager_a)))
    kept = zipfile.ZipFile(io.BytesIO(kept_export))
    assert fresh.read("tidy/patients.csv").count(b"\n") == kept.read("tidy/patients.csv").count(b"\n") + 1


def test_a_tampered_freeze_fails_verification(clinical, data_manager_a, study):
    freeze = freezes.freeze_create(study=study, name="Final", actor=data_manager_a)
    Path(freeze.export_path).write_bytes(b"not the export")
    assert freezes.freeze_verify(freeze)["export"] is False


def test_only_a_data_manager_freezes_and_names_are_unique(clinical, coordinator_a, data_manager_a, study):
    with pytest.raises(PermissionDenied):
        freezes.freeze_create(study=study, name="Interim", actor=coordinator_a)
    with pytest.raises(ValidationError) as refused:
        freezes.freeze_create(study=study, name=" ", actor=data_manager_a)
    assert "name" in refused.value.message_dict
    freezes.freeze_create(study=study, name="Interim", actor=data_manager_a)
    with pytest.raises(ValidationError):
        freezes.freeze_create(study=study, name="Interim", actor=data_manager_a)


def test_freezes_are_seen_only_by_users_of_their_sites(clinical, data_manager_a, coordinator_a, coordinator_b, study):
    freezes.freeze_create(study=study, name="Interim", actor=data_manager_a)
    assert freezes.freezes_for_user(coordinator_a).count() == 1
    assert freezes.freezes_for_user(coordinator_b).count() == 0


def test_unchanged_data_give_the_same_report_numbers(clinical, data_manager_a, study):
    freeze = freezes.freeze_create(study=study, name="Interim", actor=data_manager_a)
    again = render_csv(cohort_report(study=study, site_ids=freeze.site_ids))
    assert again == freeze.report_csv
