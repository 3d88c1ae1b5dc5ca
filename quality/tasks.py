"""Celery tasks of the data quality app: each calls a service that a management command also runs."""

from celery import shared_task

from quality.services.edit_checks import run_edit_checks


@shared_task(acks_late=True)
def run_study_edit_checks() -> int:
    """Every study's edit checks (the `run_edit_checks` command's work), as beat runs it nightly."""
    report = run_edit_checks()
    return report.opened + report.closed + report.reopened
