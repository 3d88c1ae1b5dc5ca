"""Celery tasks: each calls a service that a management command also runs. No rules here."""

from celery import shared_task
from django.db import transaction

from followup import exports, notifications, safety


@shared_task(acks_late=True)
def sweep_reminders() -> int:
    report = notifications.reminders_sweep()
    transaction.on_commit(send_notifications.delay)
    return report.inserted


@shared_task(acks_late=True)
def run_safety_checks() -> int:
    raised = safety.safety_sweep().raised
    inserted = notifications.safety_reports_sweep().inserted + notifications.signals_notify_sweep().inserted
    transaction.on_commit(send_notifications.delay)
    return raised + inserted


@shared_task(acks_late=True)
def send_notifications() -> int:
    return notifications.notifications_send_due().emails


@shared_task(acks_late=True)
def build_export(job_id: int) -> str | None:
    job = exports.export_job_run(job_id=job_id)
    return job.state if job is not None else None


@shared_task(acks_late=True)
def resume_exports() -> int:
    return len(exports.export_jobs_resume())
