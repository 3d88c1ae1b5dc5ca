"""The Celery task that builds a study export: takes the job id, calls the service, nothing else."""

from celery import shared_task

from followup import exports


@shared_task(acks_late=True)
def build_export(job_id: int) -> str | None:
    job = exports.export_job_run(job_id=job_id)
    return job.state if job is not None else None
