import logging

from django.core.management.base import BaseCommand

from followup import safety
from notifications import ledger

logger = logging.getLogger("notifications.safety_checks")


class Command(BaseCommand):
    help = (
        "Record new safety findings, queue expedited-report warnings, and send what is due (as Celery beat "
        "does); one run at a time."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what would be raised and sent; change nothing."
        )

    def handle(self, *args, dry_run=False, **options):
        with safety.single_run() as held:
            if not held:
                message = "skipped: another run of the safety checks is in progress"
                logger.warning("run_safety_checks %s", message)
                self.stdout.write(message)
                return
            self._run(dry_run)

    def _run(self, dry_run: bool) -> None:
        signals = safety.safety_sweep(dry_run=dry_run)
        reports = ledger.safety_reports_sweep(dry_run=dry_run)
        notices = ledger.signals_notify_sweep(dry_run=dry_run)
        verb = "would raise" if dry_run else "raised"
        self.stdout.write(f"{verb} {signals.raised} new signal(s) of {signals.findings} finding(s)")
        if signals.imported:
            verb = "would record" if dry_run else "recorded"
            self.stdout.write(
                f"{verb} {signals.imported} finding(s) as reviewed at import (first run for "
                f"{', '.join(signals.first_run_studies)}; not announced)"
            )
        if dry_run:
            for row in reports.rows + notices.rows:
                self.stdout.write(f"  would queue {row.key}")
            return
        sent = ledger.notifications_send_due()
        self.stdout.write(
            f"safety notices queued: {reports.inserted + notices.inserted}; e-mails sent: {sent.emails}; "
            f"cancelled: {sent.cancelled}; to retry: {sent.retried}; failed: {sent.failed}"
        )
