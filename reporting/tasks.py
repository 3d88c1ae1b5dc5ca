"""Celery tasks of the exports: each calls a service that a management command or beat also runs."""

from celery import shared_task

from reporting import exports


@shared_task(acks_late=True)
def build_export(job_id: int) -> str | None:
    job = exports.export_job_run(job_id=job_id)
    return job.state if job is not None else None


@shared_task(acks_late=True)
def resume_exports() -> int:
    return len(exports.export_jobs_resume())
