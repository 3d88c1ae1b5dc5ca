"""Celery tasks of the notification ledger: each calls a service that a management command also runs."""

from celery import shared_task
from django.db import transaction

from followup import safety
from notifications import ledger


@shared_task(acks_late=True)
def sweep_reminders() -> int:
    report = ledger.reminders_sweep()
    transaction.on_commit(send_notifications.delay)
    return report.inserted


@shared_task(acks_late=True)
def run_safety_checks() -> int:
    raised = safety.safety_sweep().raised
    inserted = ledger.safety_reports_sweep().inserted + ledger.signals_notify_sweep().inserted
    transaction.on_commit(send_notifications.delay)
    return raised + inserted


@shared_task(acks_late=True)
def send_notifications() -> int:
    return ledger.notifications_send_due().emails
