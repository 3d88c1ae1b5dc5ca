from django.core.management.base import BaseCommand

from notifications import ledger


class Command(BaseCommand):
    help = "Insert today's visit reminders in the ledger and send every due notification (as Celery beat does)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what would be inserted and sent; change nothing."
        )

    def handle(self, *args, dry_run=False, **options):
        sweep = ledger.reminders_sweep(dry_run=dry_run)
        if dry_run:
            self.stdout.write(f"would insert {sweep.inserted} reminder(s) for {sweep.considered} visit stage(s):")
            for row in sweep.rows:
                self.stdout.write(f"  {row.key}")
            planned = ledger.notifications_send_due(dry_run=True).planned
            self.stdout.write(f"already queued and due: {len(planned)}")
            for line in planned:
                self.stdout.write(f"  {line}")
            return
        sent = ledger.notifications_send_due()
        self.stdout.write(
            f"reminders inserted: {sweep.inserted}; e-mails sent: {sent.emails} ({sent.sent} item(s)); "
            f"cancelled: {sent.cancelled}; to retry: {sent.retried}; failed: {sent.failed}"
        )
