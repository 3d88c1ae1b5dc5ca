"""Celery tasks of the imports: each calls a service."""

from celery import shared_task

from intake import services


@shared_task(acks_late=True)
def run_import(job_id: int) -> str | None:
    job = services.import_job_run(job_id=job_id)
    return job.state if job is not None else None


@shared_task(acks_late=True)
def resume_imports() -> int:
    return len(services.import_jobs_resume())
