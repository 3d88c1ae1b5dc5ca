"""Celery tasks of the notification ledger: each calls a service that a management command also runs."""

import logging

from celery import shared_task
from django.db import transaction

from followup import safety
from notifications import ledger

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def sweep_reminders() -> int:
    report = ledger.reminders_sweep()
    transaction.on_commit(send_notifications.delay)
    return report.inserted


@shared_task(acks_late=True)
def run_safety_checks() -> int:
    with safety.single_run() as held:
        if not held:
            logger.warning("run_safety_checks skipped: another run of the safety checks is in progress")
            return 0
        return _safety_checks()


def _safety_checks() -> int:
    raised = safety.safety_sweep().raised
    inserted = ledger.safety_reports_sweep().inserted + ledger.signals_notify_sweep().inserted
    transaction.on_commit(send_notifications.delay)
    return raised + inserted


@shared_task(acks_late=True)
def send_notifications() -> int:
    return ledger.notifications_send_due().emails
