"""The admin's import page: a check or an import is a job run by a worker as the user who asked, followed on
its own page (progress while it runs, then the report); a clean check's files import without being given
again; jobs are the asker's only; the template download; Chinese."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.cache import caches
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from followup.models import Visit
from intake.constants import ImportState
from intake.models import ImportFile, ImportJob
from intake.services import import_job_run, import_jobs_resume, jobs
from patients.models import Patient
from registry.constants import Role
from tests.factories import make_user
from tests.intake.cohort import PATIENTS, cohort_files

pytestmark = pytest.mark.django_db


def _uploads(**kwargs):
    return [SimpleUploadedFile(name, content, content_type="text/csv") for name, content in cohort_files(**kwargs)]


def _page(study):
    return reverse("admin:intake_cohortimport_change", args=[study.pk])


def _job_page(job):
    return reverse("admin:intake_cohortimport_job", args=[job.study_id, job.pk])


def _progress(job):
    return reverse("admin:intake_cohortimport_job_progress", args=[job.study_id, job.pk])


def _post(client, study, action, django_capture_on_commit_callbacks, **kwargs):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_page(study), {"files": _uploads(**kwargs), action: "1"})
    assert response.status_code == 302, response.content.decode()[:500]
    job = ImportJob.objects.latest("pk")
    assert response["Location"] == _job_page(job)
    return job


def test_a_check_is_queued_runs_as_the_user_and_writes_nothing_then_its_files_import(
    client, frozen_now, study, lot, site_a, queued, django_capture_on_commit_callbacks
):
    user = make_user("coord_import", site_a, role=Role.COORDINATOR)
    client.force_login(user)

    check = _post(client, study, "check", django_capture_on_commit_callbacks)

    assert queued == [check.pk] and check.state == ImportState.QUEUED and check.dry_run
    waiting = client.get(_job_page(check)).content.decode()
    assert "intake/import_progress.js" in waiting and "Waiting for a worker" in waiting
    assert client.get(_progress(check)).json() == {
        "state": "queued", "state_label": "Waiting for a worker", "finished": False, "file": "", "done": 0,
        "total": 0,
    }  # fmt: skip

    import_job_run(job_id=check.pk)

    page = client.get(_job_page(check)).content.decode()
    assert "no problem found; nothing was written" in page and "import_progress.js" not in page
    assert "Import these files" in page
    assert not Patient.objects.exists()
    assert client.get(_progress(check)).json()["finished"] is True

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_job_page(check), {"import": "1"})
    imported = ImportJob.objects.latest("pk")
    assert response["Location"] == _job_page(imported) and queued == [check.pk, imported.pk]
    assert not imported.dry_run and ImportFile.objects.filter(job=imported).count() == 5

    import_job_run(job_id=imported.pk)

    assert "Imported:" in client.get(_job_page(imported)).content.decode()
    assert Visit.objects.filter(outcome="completed").count() == 5
    history = Patient.history.filter(history_type="+")
    assert {(h.history_door, h.history_user_id) for h in history} == {("import", user.pk)}
    assert all(h.history_actor.startswith("coord_import sha256:") for h in history)
    assert not ImportFile.objects.exists()  # an import's files are not kept once used
    check.refresh_from_db()
    assert check.imported_as_id == imported.pk
    again = client.post(_job_page(check), {"import": "1"}, follow=True).content.decode()
    assert "These files were already imported." in again and ImportJob.objects.count() == 2


def test_a_check_with_problems_lists_each_by_file_row_column_and_rule_and_cannot_be_imported(
    client, frozen_now, study, lot, site_a, queued, django_capture_on_commit_callbacks
):
    client.force_login(make_user("coord_bad", site_a, role=Role.COORDINATOR))
    bad = [*PATIENTS, {**PATIENTS[0], "subject_code": "NJ-9", "sex": ""}]

    check = _post(client, study, "check", django_capture_on_commit_callbacks, patients=bad)
    import_job_run(job_id=check.pk)

    page = client.get(_job_page(check)).content.decode()
    assert "1 problem; nothing was written." in page
    problem = ImportJob.objects.get(pk=check.pk).report["problems"][0]
    assert (problem["file"], problem["column"]) == ("patients.csv", "sex") and problem["row"] == 4
    assert "Import these files" not in page
    refused = client.post(_job_page(check), {"import": "1"}, follow=True).content.decode()
    assert "Only a finished check that found no problem can be imported." in refused
    assert ImportJob.objects.count() == 1


def test_the_progress_view_shows_the_rows_read_while_the_import_runs(
    client, frozen_now, study, lot, site_a, queued, django_capture_on_commit_callbacks, monkeypatch
):
    client.force_login(make_user("coord_prog", site_a, role=Role.COORDINATOR))
    job = _post(client, study, "import", django_capture_on_commit_callbacks)
    seen = []
    run_import = jobs.cohort_import

    def watched(**kwargs):
        def progress(file, done, total):
            kwargs_progress(file, done, total)
            seen.append(client.get(_progress(job)).json())

        kwargs_progress = kwargs["progress"]
        return run_import(**{**kwargs, "progress": progress})

    monkeypatch.setattr(jobs, "cohort_import", watched)

    import_job_run(job_id=job.pk)

    assert {"state": "running", "file": "visits.csv", "done": 5, "total": 5} in [
        {k: s[k] for k in ("state", "file", "done", "total")} for s in seen
    ]
    assert all(not s["finished"] for s in seen)
    assert caches["progress"].get(jobs._progress_key(job.pk)) is None
    assert client.get(_progress(job)).json()["state"] == "done"


def test_a_job_is_seen_by_its_asker_only(client, frozen_now, study, lot, site_a, queued,
                                         django_capture_on_commit_callbacks):  # fmt: skip
    client.force_login(make_user("coord_one", site_a, role=Role.COORDINATOR))
    job = _post(client, study, "check", django_capture_on_commit_callbacks)
    client.force_login(make_user("coord_two", site_a, role=Role.COORDINATOR))

    assert client.get(_job_page(job)).status_code == 404
    assert client.get(_progress(job)).status_code == 404
    assert client.post(_job_page(job), {"import": "1"}).status_code == 404
    assert "Your checks and imports" not in client.get(_page(study)).content.decode()


def test_another_sites_user_can_import_nothing_into_site_a(
    client, frozen_now, study, lot, site_b, queued, django_capture_on_commit_callbacks
):
    client.force_login(make_user("coord_other", site_b, role=Role.COORDINATOR))

    job = _post(client, study, "import", django_capture_on_commit_callbacks)
    import_job_run(job_id=job.pk)

    text = client.get(_job_page(job)).content.decode()
    assert "nothing was written" in text
    assert "You can only enter data for the sites where you hold a writing role." in text
    assert not Patient.objects.exists()


def test_a_site_outside_the_users_writing_sites_is_refused(client, study, lot, site_a, site_b, queued):
    client.force_login(make_user("coord_site", site_a, role=Role.COORDINATOR))

    response = client.post(_page(study), {"files": _uploads(), "check": "1", "site": site_b.code})

    assert response.status_code == 403 and not ImportJob.objects.exists()


def test_no_files_is_refused_on_the_page(client, study, site_a, queued):
    client.force_login(make_user("coord_none", site_a, role=Role.COORDINATOR))

    response = client.post(_page(study), {"check": "1"})

    assert response.status_code == 200
    assert "Choose the files to import." in response.content.decode() and not ImportJob.objects.exists()


def test_the_job_is_queued_by_task_name_after_commit(study, site_a, django_capture_on_commit_callbacks,
                                                     monkeypatch):  # fmt: skip
    from celery import current_app

    from intake import tasks

    sent = []
    monkeypatch.setattr(current_app, "send_task", lambda name, args: sent.append((name, *args)))
    assert tasks.run_import.name == jobs.RUN_IMPORT_TASK
    user = make_user("coord_q", site_a, role=Role.COORDINATOR)

    with django_capture_on_commit_callbacks(execute=True):
        job = jobs.import_job_request(study=study, user=user, files=cohort_files())
        assert sent == []

    assert sent == [(jobs.RUN_IMPORT_TASK, job.pk)]


def test_a_job_runs_once_and_a_stalled_one_is_taken_again(frozen_now, study, lot, site_a, queued):
    user = make_user("coord_twice", site_a, role=Role.COORDINATOR)
    job = jobs.import_job_request(study=study, user=user, files=cohort_files(), dry_run=False)

    assert import_job_run(job_id=job.pk).state == ImportState.DONE
    assert ImportJob.objects.get(pk=job.pk).report["changes"] > 0
    finished_at = ImportJob.objects.get(pk=job.pk).finished_at
    assert import_job_run(job_id=job.pk).finished_at == finished_at  # a second task finds nothing to do

    # A job left running by a worker that died (its transaction rolled back) is queued and run again.
    stalled = jobs.import_job_request(study=study, user=user, files=cohort_files(), dry_run=True)
    ImportJob.objects.filter(pk=stalled.pk).update(
        state=ImportState.RUNNING, updated_at=dt.datetime(2026, 9, 1, 8, 0, tzinfo=dt.UTC)
    )
    assert import_jobs_resume() == [stalled.pk]
    assert import_job_run(job_id=stalled.pk).state == ImportState.DONE


def test_a_running_job_whose_progress_moves_is_left_alone(frozen_now, study, site_a, queued):
    user = make_user("coord_moving", site_a, role=Role.COORDINATOR)
    job = jobs.import_job_request(study=study, user=user, files=cohort_files())
    ImportJob.objects.filter(pk=job.pk).update(
        state=ImportState.RUNNING, updated_at=dt.datetime(2026, 9, 1, 8, 0, tzinfo=dt.UTC)
    )
    caches["progress"].set(
        jobs._progress_key(job.pk), {"file": "visits.csv", "done": 50, "total": 500, "at": "2026-09-01T08:58:00+00:00"}
    )

    assert import_jobs_resume() == []
    assert import_job_run(job_id=job.pk).state == ImportState.RUNNING
    caches["progress"].delete(jobs._progress_key(job.pk))


def test_a_checks_files_are_forgotten_a_day_after_it_ended(frozen_now, study, site_a, queued):
    user = make_user("coord_old", site_a, role=Role.COORDINATOR)
    old = jobs.import_job_request(study=study, user=user, files=cohort_files())
    import_job_run(job_id=old.pk)
    frozen_now.shift(dt.timedelta(days=1, minutes=1))

    jobs.import_job_request(study=study, user=user, files=cohort_files())

    assert not ImportFile.objects.filter(job=old).exists()
    assert ImportFile.objects.count() == 5


def test_the_template_downloads_as_a_workbook(client, study, site_a):
    client.force_login(make_user("coord_tpl", site_a, role=Role.COORDINATOR))

    response = client.get(_page(study), {"template": "xlsx"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.openxmlformats")
    assert response.content[:2] == b"PK"


def test_the_pages_speak_chinese(client, frozen_now, study, lot, site_a, queued, django_capture_on_commit_callbacks):
    client.force_login(make_user("coord_zh", site_a, role=Role.COORDINATOR))

    response = client.get(_page(study), HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert "下载空白模板" in response.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        client.post(_page(study), {"files": _uploads(), "check": "1"}, HTTP_ACCEPT_LANGUAGE="zh-hans")
    job = ImportJob.objects.get()
    assert job.language == "zh-hans"
    assert "等待" in client.get(_job_page(job), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    import_job_run(job_id=job.pk)
    assert "未发现问题" in client.get(_job_page(job), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()


def test_the_list_of_jobs_never_reads_their_reports(client, study, site_a, queued, django_capture_on_commit_callbacks):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(make_user("coord_list", site_a, role=Role.COORDINATOR))
    job = _post(client, study, "check", django_capture_on_commit_callbacks)
    problems = [
        {"file": "visits.csv", "row": n, "column": "C3", "rule": "C3", "message": "x" * 100} for n in range(5000)
    ]
    jobs._finish(job, report={"problems": problems, "counts": {}, "files": {"visits.csv": "ab"}, "written": False})

    with CaptureQueriesContext(connection) as seen:
        page = client.get(_page(study)).content.decode()

    assert "visits.csv" in page and "5000 problems" in page
    listed = [q["sql"] for q in seen.captured_queries if "intake_importjob" in q["sql"]]
    assert listed and not any('"report"' in sql for sql in listed), listed
