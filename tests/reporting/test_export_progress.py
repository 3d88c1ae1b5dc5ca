"""Study exports in the admin update their progress while the page is open: the list and the job's page carry
each unfinished job's progress URL (read by reporting/static/reporting/export_progress.js), a small JSON view
scoped as the page is. The world is that of tests/reporting/test_exports.py."""

from __future__ import annotations

import pytest

from reporting import exports
from reporting.constants import ExportState
from reporting.models import ExportJob
from tests.reporting import test_exports
from tests.reporting.test_exports import run_export

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.reporting.test_exports")]

world = test_exports.world  # the exports' world fixture


def progress_url(job) -> str:
    return f"/admin/reporting/exportjob/{job.pk}/progress/"


def test_the_list_and_the_page_poll_an_unfinished_jobs_progress(client, world):
    job = exports.export_job_request(study=world.study, user=world.user_a)
    ExportJob.objects.filter(pk=job.pk).update(state=ExportState.RUNNING, progress=40)
    client.force_login(world.user_a)
    for page in ("/admin/reporting/exportjob/", f"/admin/reporting/exportjob/{job.pk}/change/"):
        html = client.get(page).content.decode()
        assert f'data-progress-url="{progress_url(job)}">40%</span>' in html, page
        assert "reporting/export_progress.js" in html, page


def test_progress_view_answers_the_jobs_state_and_progress(client, world):
    job = exports.export_job_request(study=world.study, user=world.user_a)
    ExportJob.objects.filter(pk=job.pk).update(state=ExportState.RUNNING, progress=65)
    client.force_login(world.user_a)
    response = client.get(progress_url(job))
    assert response.status_code == 200
    assert response.json() == {
        "id": job.pk,
        "state": "running",
        "state_label": "Running",
        "progress": 65,
        "finished": False,
        "download_url": None,
    }


def test_a_finished_job_gives_its_download_link_and_is_no_longer_polled(client, world):
    job, _ = run_export(world, world.user_a)
    client.force_login(world.user_a)
    answer = client.get(progress_url(job)).json()
    assert answer["finished"] is True and answer["progress"] == 100
    assert answer["download_url"] == f"/admin/reporting/exportjob/{job.pk}/download/"
    assert "data-progress-url" not in client.get("/admin/reporting/exportjob/").content.decode()


def test_progress_of_another_sites_job_is_not_found(client, world):
    job = exports.export_job_request(study=world.study, user=world.user_b)
    client.force_login(world.user_a)
    assert client.get(progress_url(job)).status_code == 404
    client.logout()
    assert client.get(progress_url(job)).status_code == 302  # to the sign-in page
