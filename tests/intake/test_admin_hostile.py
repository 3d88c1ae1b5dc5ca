"""The admin's import page and jobs against careless or hostile input: text no column can store, file names
the column cannot hold, a site that is no site, a body sent without its CSRF token, files already purged,
a user who lost the site after asking, and an import that keeps meeting another's records. Each is a clear
refusal, never a 500."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, OperationalError
from django.test import Client
from django.urls import reverse
from django.utils import translation

from intake.constants import ImportState
from intake.models import ImportFile, ImportJob
from intake.services import import_job_from_check, import_job_run, jobs
from patients.models import Patient
from registry.constants import Role
from registry.models import Membership
from tests.factories import make_site, make_study, make_user
from tests.intake.cohort import PATIENTS, cohort_files

pytestmark = pytest.mark.django_db


@pytest.fixture
def coordinator(client, site_a):
    user = make_user("coord_hostile", site_a, role=Role.COORDINATOR)
    client.force_login(user)
    return user


def _page(study):
    return reverse("admin:intake_cohortimport_change", args=[study.pk])


def _job_page(job):
    return reverse("admin:intake_cohortimport_job", args=[job.study_id, job.pk])


def _upload(name="patients.csv", content=b"subject_code\nX\n"):
    return SimpleUploadedFile(name, content, content_type="text/csv")


def _error(response) -> str:
    assert response.status_code == 200, response.status_code
    text = response.content.decode()
    return text[text.index('class="errorlist"') :].split("</li>")[0]


def test_a_reason_holding_a_nul_character_is_refused_on_the_page(client, study, coordinator, queued):
    response = client.post(_page(study), {"files": [_upload()], "check": "1", "reason": "late\x00entry"})

    assert "The reason may not hold a NUL character." in _error(response)
    assert not ImportJob.objects.exists() and queued == []


def test_a_site_code_holding_a_nul_character_is_no_site_of_the_user(client, study, coordinator, queued):
    response = client.post(_page(study), {"files": [_upload()], "check": "1", "site": "NJDT\x00"})

    assert response.status_code == 403 and not ImportJob.objects.exists()


@pytest.mark.parametrize("name", ["x" * 252 + ".csv", "pati\x00ents.csv"])
def test_a_file_name_no_column_can_hold_is_refused_by_the_service(study, site_a, name):
    user = make_user("coord_names", site_a, role=Role.COORDINATOR)

    with pytest.raises(ValidationError) as refused:
        jobs.import_job_request(study=study, user=user, files=[(name, b"subject_code\nX\n")])

    assert refused.value.message_dict == {
        "files": ["A file name may not be longer than 255 characters or hold a NUL character."]
    }
    assert not ImportJob.objects.exists()


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("../../patients.csv", "patients.csv"),
        ("p" * 300 + ".csv", "p" * 251 + ".csv"),
        ("pa\x00tients.csv", "patients.csv"),
    ],
)
def test_the_page_keeps_only_the_base_name_of_an_upload_within_255_characters(
    client, study, coordinator, queued, name, stored
):
    response = client.post(_page(study), {"files": [_upload(name)], "check": "1"})

    assert response.status_code == 302
    assert list(ImportFile.objects.values_list("name", flat=True)) == [stored]


def test_an_empty_file_and_a_formula_reason_are_checked_not_crashed(client, study, coordinator, queued):
    response = client.post(_page(study), {"files": [_upload(content=b"")], "check": "1", "reason": "=cmd|'/C calc'!A0"})
    job = import_job_run(job_id=ImportJob.objects.get().pk)

    assert response.status_code == 302 and job.state == ImportState.DONE
    assert job.reason == "=cmd|'/C calc'!A0"
    assert [p["message"] for p in job.report["problems"]] == [
        "patients.csv: the file is empty; the first row names the columns."
    ]


def test_files_over_50_mb_together_are_refused_on_the_page(client, study, coordinator, queued):
    half = b"a" * (25 * 1024 * 1024)
    response = client.post(_page(study), {"files": [_upload(content=half), _upload("visits.csv", half + b"a")],
                                          "check": "1"})  # fmt: skip

    assert "The files are larger than 50 MB together; import them in parts." in _error(response)
    assert not ImportJob.objects.exists()


def test_uploads_over_50_mb_together_are_refused_before_any_is_read():
    class Upload:
        def __init__(self, name, size):
            self.name, self.size = name, size

        def read(self):
            raise AssertionError(f"{self.name} was read")

    with pytest.raises(ValidationError) as refused:
        jobs.import_uploads_read([Upload("patients.csv", 1024), Upload("visits.csv", 2 * 1024**3)])

    assert refused.value.message_dict == {"files": ["The files are larger than 50 MB together; import them in parts."]}


def test_posts_without_the_csrf_token_are_refused(study, coordinator, queued, lot):
    check = import_job_run(job_id=jobs.import_job_request(study=study, user=coordinator, files=cohort_files()).pk)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(coordinator)

    assert browser.post(_page(study), {"files": [_upload()], "check": "1"}).status_code == 403
    assert browser.post(_job_page(check), {"import": "1"}).status_code == 403
    assert ImportJob.objects.count() == 1


def test_a_check_whose_files_were_purged_cannot_be_imported(client, frozen_now, study, lot, coordinator, queued):
    check = import_job_run(job_id=jobs.import_job_request(study=study, user=coordinator, files=cohort_files()).pk)
    frozen_now.shift(dt.timedelta(days=1, minutes=1))
    jobs.import_job_request(study=study, user=coordinator, files=[("visits.csv", b"subject_code\n")])
    client.force_login(coordinator)  # the day's shift ended the session

    page = client.get(_job_page(check)).content.decode()
    response = client.post(_job_page(check), {"import": "1"}, follow=True)

    assert 'name="import"' not in page
    assert "The checked files are no longer kept; give them again." in response.content.decode()
    assert ImportJob.objects.filter(dry_run=False).count() == 0


def test_a_user_who_lost_the_site_after_asking_imports_nothing(study, lot, site_a, queued):
    user = make_user("coord_gone", site_a, role=Role.COORDINATOR)
    job = jobs.import_job_request(study=study, user=user, files=cohort_files(), dry_run=False)
    Membership.objects.filter(user=user).delete()

    job = import_job_run(job_id=job.pk)

    assert job.state == ImportState.DONE and not job.report["written"]
    refused = [p for p in job.report["problems"] if p["file"] == "patients.csv"]
    assert [(p["row"], p["column"], p["rule"]) for p in refused] == [(2, "site", "site"), (3, "site", "site")]
    assert not Patient.objects.exists() and not ImportFile.objects.filter(job=job).exists()


def test_an_inactive_users_job_fails_with_a_reason(study, lot, site_a, queued):
    user = make_user("coord_inactive", site_a, role=Role.COORDINATOR)
    job = jobs.import_job_request(study=study, user=user, files=cohort_files(), dry_run=False)
    user.is_active = False
    user.save(update_fields=["is_active"])

    job = import_job_run(job_id=job.pk)

    assert job.state == ImportState.FAILED and job.error == "The person who asked for the import is no longer active."
    assert not Patient.objects.exists()


def test_an_import_meeting_another_imports_records_runs_again_then_fails_with_a_reason(
    study, lot, site_a, queued, monkeypatch
):
    user = make_user("coord_raced", site_a, role=Role.COORDINATOR)
    job = jobs.import_job_request(study=study, user=user, files=cohort_files(), dry_run=False)
    calls = []

    def raced(**kwargs):
        calls.append(kwargs["study"])
        raise IntegrityError('duplicate key value violates unique constraint "patient_subject_code_unique_per_study"')

    monkeypatch.setattr(jobs, "cohort_import", raced)

    job = import_job_run(job_id=job.pk)

    assert len(calls) == jobs.IMPORT_ATTEMPTS == 3
    assert job.state == ImportState.FAILED and job.error.startswith(jobs.RACED + " IntegrityError: duplicate key")


def test_importing_a_check_twice_in_a_row_makes_one_import(client, study, lot, coordinator, queued):
    check = import_job_run(job_id=jobs.import_job_request(study=study, user=coordinator, files=cohort_files()).pk)
    first = client.post(_job_page(check), {"import": "1"})
    second = client.post(_job_page(check), {"import": "1"}, follow=True)

    assert first.status_code == 302 and "These files were already imported." in second.content.decode()
    with pytest.raises(ValidationError):
        import_job_from_check(check=check, user=coordinator)
    assert ImportJob.objects.filter(dry_run=False).count() == 1


def test_a_study_outside_the_users_sites_and_a_job_under_another_study_are_refused(
    client, study, lot, coordinator, queued
):
    elsewhere = make_study(make_site("GZDT", time_zone="Asia/Shanghai"), code="OTHER-1")
    job = jobs.import_job_request(study=study, user=coordinator, files=cohort_files())
    under_other = reverse("admin:intake_cohortimport_job", args=[elsewhere.pk, job.pk])
    progress_under_other = reverse("admin:intake_cohortimport_job_progress", args=[elsewhere.pk, job.pk])

    assert client.get(_page(elsewhere)).status_code == 403
    assert client.post(_page(elsewhere), {"files": [_upload()], "check": "1"}).status_code == 403
    assert client.get(under_other).status_code == 403 and client.get(progress_under_other).status_code == 403
    assert ImportJob.objects.count() == 1


@pytest.mark.parametrize(("column", "value"), [("refractory_notes", "a\x00b"), ("birth_year", "19\x0085")])
def test_a_cell_holding_a_nul_character_is_a_problem_of_its_file_not_a_database_error(
    study, lot, site_a, queued, column, value
):
    user = make_user("coord_nul", site_a, role=Role.COORDINATOR)
    files = cohort_files(patients=[PATIENTS[0], {**PATIENTS[1], column: value}])

    job = import_job_run(job_id=jobs.import_job_request(study=study, user=user, files=files, dry_run=False).pk)

    assert job.state == ImportState.DONE and job.error == "" and not job.report["written"]
    assert [p["message"] for p in job.report["problems"]] == [
        "patients.csv: line 3 holds a NUL character, which the registry cannot store; remove it."
    ]
    assert not Patient.objects.exists()


def test_a_failure_quoting_a_nul_character_is_kept_as_the_jobs_error(study, site_a, queued, monkeypatch):
    user = make_user("coord_quoted", site_a, role=Role.COORDINATOR)
    job = jobs.import_job_request(study=study, user=user, files=cohort_files(), dry_run=False)

    def failing(**kwargs):
        raise ValueError("cannot read 'a\x00b'")

    monkeypatch.setattr(jobs, "cohort_import", failing)

    job = import_job_run(job_id=job.pk)

    assert job.state == ImportState.FAILED and job.error == "ValueError: cannot read 'a\ufffdb'"


def test_why_a_job_could_not_run_is_kept_in_the_language_of_its_request(client, study, lot, site_a, queued):
    user = make_user("coord_zh", site_a, role=Role.COORDINATOR)
    with translation.override("zh-hans"):
        job = jobs.import_job_request(study=study, user=user, files=cohort_files(), dry_run=False)
    User.objects.filter(pk=user.pk).update(is_active=False)

    assert import_job_run(job_id=job.pk).error == "提出导入的用户已不再有效。"


def test_a_database_error_other_than_meeting_another_import_fails_at_once(study, site_a, queued, monkeypatch):
    user = make_user("coord_dberror", site_a, role=Role.COORDINATOR)
    job = jobs.import_job_request(study=study, user=user, files=cohort_files(), dry_run=False)
    calls = []

    def failing(**kwargs):
        calls.append(kwargs["study"])
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(jobs, "cohort_import", failing)

    job = import_job_run(job_id=job.pk)

    assert len(calls) == 1
    assert (
        job.state == ImportState.FAILED and job.error == "OperationalError: server closed the connection unexpectedly"
    )
