"""An import asked for in the admin, run by a real `celery -A config worker` on PostgreSQL and a private Redis.

1. The progress the job's page reads moves while the worker imports (the worker writes it to Redis; this
   process reads it through `import_job_progress`, as the web server's progress view does), and the
   import ends with every row written once.
2. The worker is SIGKILLed in the middle of the import: nothing of it is written (one transaction). Once its
   progress has aged, `import_jobs_resume` queues the job again, a new worker claims it, and the cohort is
   written exactly once, whatever the broker redelivers as well.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.cache.backends.redis import RedisCache
from django.utils import timezone

from devdata.historical import as_workbook, large_cohort
from followup.models import Visit
from intake.constants import ImportState
from intake.models import ImportJob
from intake.services import import_job_progress, import_job_request, import_jobs_resume, jobs
from patients.models import Patient
from registry import constants as rc
from tests.factories import make_lot, make_user
from tests.integration.support import (
    Worker,
    free_port,
    private_redis,
    process_env,
    queue_task,
    report,
    wait_until,
    workers_cleanup,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PATIENTS = 40  # 480 visits: a progress report every 50 rows, and a few seconds of work


@pytest.fixture
def cohort(study, site_a):
    make_lot(
        study, site_a, lot_number="UC-HIST", cryopreserved_on=dt.date(2014, 6, 1), expires_on=dt.date(2030, 6, 1),
        units=PATIENTS,
    )  # fmt: skip
    manager = make_user("import.worker", site_a, role=rc.Role.DATA_MANAGER)
    return manager, as_workbook(large_cohort(PATIENTS, site=site_a.code, lot="UC-HIST"))


def ask(study, user, workbook, redis, monkeypatch) -> ImportJob:
    """Ask for the import as the admin page does; the task goes to the private Redis the workers read."""
    monkeypatch.setattr(jobs, "_queue", lambda job_id: queue_task(redis.url, jobs.RUN_IMPORT_TASK, job_id))
    monkeypatch.setattr(jobs, "caches", {"progress": RedisCache(redis.url, {})})
    return import_job_request(study=study, user=user, files=[("historical.xlsx", workbook)], dry_run=False)


def test_the_progress_moves_while_a_worker_imports_and_every_row_is_written_once(study, cohort, tmp_path, monkeypatch):
    manager, workbook = cohort
    with private_redis(tmp_path) as redis, workers_cleanup() as workers:
        env = process_env(redis_url=redis.url, smtp_port=free_port(), var_dir=tmp_path)
        workers.append(Worker("importer", env, tmp_path).start().wait_ready())

        job = ask(study, manager, workbook, redis, monkeypatch)
        seen: list[tuple[str, int, int]] = []

        def finished():
            job.refresh_from_db()
            progress = import_job_progress(job)
            if progress["state"] == "running" and progress["total"]:
                seen.append((progress["file"], progress["done"], progress["total"]))
            return progress["finished"]

        wait_until(finished, timeout=120, interval=0.02, what="the import to finish")

    assert job.state == ImportState.DONE, job.error
    assert job.report["problems"] == [] and job.report["written"]
    assert Patient.objects.filter(study=study).count() == PATIENTS
    assert Visit.objects.filter(patient__study=study, outcome="completed").count() == PATIENTS * 12
    visits_seen = sorted({done for file, done, total in seen if total == PATIENTS * 12})
    report(f"import worker: {len(seen)} progress readings, visit rows seen {visits_seen}")
    assert len(visits_seen) >= 2, f"the progress did not move while the worker imported: {seen}"
    assert all(0 < done <= total for _, done, total in seen)


def test_a_worker_killed_mid_import_leaves_nothing_and_the_job_is_run_again_once(study, cohort, tmp_path, monkeypatch):
    manager, workbook = cohort
    with private_redis(tmp_path) as redis, workers_cleanup() as workers:
        env = process_env(redis_url=redis.url, smtp_port=free_port(), var_dir=tmp_path)
        first = Worker("first", env, tmp_path).start().wait_ready()
        workers.append(first)

        job = ask(study, manager, workbook, redis, monkeypatch)

        def importing_visits():
            job.refresh_from_db()
            progress = import_job_progress(job)
            return progress["state"] == "running" and progress["done"] >= 100 and progress["total"] > 100

        wait_until(importing_visits, timeout=120, interval=0.02, what="the worker to be importing visits")
        first.kill()

        job.refresh_from_db()
        assert job.state == ImportState.RUNNING
        assert not Patient.objects.filter(study=study).exists(), "the killed import's transaction was rolled back"
        # The dead worker's progress ages: ten minutes later the job is nobody's and is queued again.
        later = timezone.now() + jobs.STALE_AFTER + dt.timedelta(minutes=1)
        assert import_jobs_resume(now=later) == [job.pk]
        ImportJob.objects.filter(pk=job.pk).update(updated_at=timezone.now() - jobs.STALE_AFTER * 2)
        jobs.caches["progress"].delete(jobs._progress_key(job.pk))

        second = Worker("second", env, tmp_path).start().wait_ready()
        workers.append(second)

        def finished():
            job.refresh_from_db()
            return job.state in (ImportState.DONE, ImportState.FAILED)

        wait_until(finished, timeout=120, interval=0.1, what="the second worker to import")

    assert job.state == ImportState.DONE, job.error
    assert job.report["problems"] == [] and job.report["changes"] > 0
    assert Patient.objects.filter(study=study).count() == PATIENTS
    assert Visit.objects.filter(patient__study=study, outcome="completed").count() == PATIENTS * 12
    assert Patient.history.filter(study=study, history_type="+").count() == PATIENTS
