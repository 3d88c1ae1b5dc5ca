"""Celery tasks of the data quality app: each calls a service that a management command also runs."""

import logging

from celery import shared_task

from core.locks import single_run
from quality.services.edit_checks import LOCK_NAME, run_edit_checks

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def run_study_edit_checks() -> int:
    """Every study's edit checks (the `run_edit_checks` command's work), as beat runs it nightly; skipped while
    another run holds the lock (a second beat, or the command)."""
    with single_run(LOCK_NAME) as held:
        if not held:
            logger.warning("run_study_edit_checks skipped: another run of the edit checks is in progress")
            return 0
        report = run_edit_checks()
    return report.opened + report.closed + report.reopened
