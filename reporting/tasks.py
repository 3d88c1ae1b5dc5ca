"""Celery tasks of the exports and the cohort report: each takes ids and plain values and calls a service."""

from celery import shared_task

from reporting import exports, report_page


@shared_task(acks_late=True)
def build_export(job_id: int) -> str | None:
    job = exports.export_job_run(job_id=job_id)
    return job.state if job is not None else None


@shared_task(acks_late=True)
def resume_exports() -> int:
    return len(exports.export_jobs_resume())


# Acknowledged when received: a worker killed while computing (out of memory) does not get the same task back
# at every restart; the page's claim expires (REPORT_COMPUTE_SECONDS) and a later load queues it again.
@shared_task(acks_late=False)
def render_cohort_report(**question) -> None:
    """Render and keep a cohort report the report page asked for (reporting/report_page.py)."""
    report_page.report_compute(**question)
